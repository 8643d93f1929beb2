"""Tokenize preference pairs exactly as TRL 1.x ``DPOTrainer`` does, in batches.

TRL renders (or concatenates) prompt, prompt+chosen and prompt+rejected, tokenizes
the three, and lets the completion start where the tokenized prompt and the
tokenized full sequence first diverge (``trl.data_utils.common_prefix_length``).
Plain-text completions get the EOS token appended first when missing; chat
templates end the assistant turn themselves. We do the same, but through one
batched fast-tokenizer call per field instead of three calls per row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from transforms.errors import UserError
from transforms.formats import PreferencePair


@dataclass(frozen=True)
class TokenizedPair:
    """Token ids before any truncation; completions include their EOS."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]


def common_prefix_length(ids: Sequence[int], other: Sequence[int]) -> int:
    n = min(len(ids), len(other))
    for i in range(n):
        if ids[i] != other[i]:
            return i
    return n


def load_tokenizer(name_or_path: str):
    """Load a fast tokenizer from a local folder or a Hub id, with a one-line error on failure."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except Exception as err:  # transformers raises OSError, ValueError, HFValidationError...
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"cannot load tokenizer {name_or_path!r} ({first_line}); pass a local tokenizer folder or a Hub id"
        ) from None
    if tokenizer.eos_token is None:
        raise UserError(f"tokenizer {name_or_path!r} has no EOS token; POET needs one to mark completion ends")
    return tokenizer


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 over the tokenizer's files and chat template: provenance for the dataset card."""
    digest = hashlib.sha256()
    folder = Path(tokenizer.name_or_path)
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix in {".json", ".txt", ".model", ".jinja"}:
                digest.update(path.name.encode() + b"\0" + path.read_bytes())
    else:  # a Hub id resolved from the cache: hash what the tokenizer itself serialises
        digest.update(tokenizer.backend_tokenizer.to_str().encode())
    digest.update((tokenizer.chat_template or "").encode())
    return digest.hexdigest()


class PairTokenizer:
    """Turns :class:`PreferencePair` batches into TRL-identical token ids.

    Conversational pairs take a shortcut where it is provably exact (see
    :func:`split_safe_tokens`): the part of the rendered prompt that all three
    renderings share, up to the last special token they share, is encoded once
    instead of three times, and each rendering's remainder on its own.
    Everything else, and every tokenizer the proof does not cover, takes TRL's
    own three full encodings.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.eos_token = tokenizer.eos_token
        self.eos_token_id = tokenizer.eos_token_id
        self._backend = _rust_backend(tokenizer)
        self._split_tokens = split_safe_tokens(tokenizer) if self._backend is not None else ()
        self._renderer = _ChatRenderer.create(tokenizer)

    def has_chat_template(self) -> bool:
        return bool(self.tokenizer.chat_template)

    def _render(self, conversations: list[list[dict]], add_generation_prompt: bool,
                plain: bool | None = None) -> list[str]:
        """``apply_chat_template(tokenize=False)``; ``plain``: all messages are known to be plain role/content dicts."""
        if plain is None:
            plain = all(map(_plain_messages, conversations))
        if self._renderer is not None and plain:
            return self._renderer.render(conversations, add_generation_prompt)
        return self.tokenizer.apply_chat_template(
            conversations, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def _encode(self, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
        backend = self._backend
        if backend is not None and self._backend_as_transformers_calls_it():
            encodings = backend.encode_batch_fast(texts, add_special_tokens=add_special_tokens)
            return [encoding.ids for encoding in encodings]
        # transformers' own call (it also resets truncation, padding and special-token splitting on the backend)
        return self.tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"]

    def _backend_as_transformers_calls_it(self) -> bool:
        """``tokenizer(texts)`` runs ``encode_batch`` with no truncation, no padding and this special-token mode."""
        backend = self._backend
        return (backend.truncation is None and backend.padding is None
                and backend.encode_special_tokens == bool(self.tokenizer.split_special_tokens))

    def encode(self, pairs: Sequence[PreferencePair]) -> list[TokenizedPair]:
        """Tokenize one batch; all pairs must be of one kind (all conversational or all text)."""
        staged = self.stage(pairs)
        return self.assemble(staged, self.encode_staged(staged))

    # The three phases of :meth:`encode`, for callers that overlap them across batches:
    # ``stage`` and ``assemble`` are Python, ``encode_staged`` runs in the Rust tokenizer
    # (which releases the GIL), so it may run in another thread.

    def stage(self, pairs: Sequence[PreferencePair]) -> "_Staged":
        """Render (conversational) or concatenate (plain text) the texts to encode."""
        if not pairs:
            return _Staged("full", [], False, 0)
        if pairs[0].conversational:
            # apply_chat_template(tokenize=True) renders, then encodes without special tokens
            plain = all(_plain_messages(p.prompt) and _plain_messages(p.chosen) and _plain_messages(p.rejected)
                        for p in pairs)
            prompts = self._render([p.prompt for p in pairs], True, plain)
            chosen = self._render([p.prompt + p.chosen for p in pairs], False, plain)
            rejected = self._render([p.prompt + p.rejected for p in pairs], False, plain)
            if self._split_tokens and self._backend_as_transformers_calls_it():
                return self._stage_shared_prefix(prompts, chosen, rejected)
            return _Staged("full", prompts + chosen + rejected, False, len(pairs))
        eos = self.eos_token
        texts = ([p.prompt for p in pairs] + [p.prompt + _with_eos(p.chosen, eos) for p in pairs]
                 + [p.prompt + _with_eos(p.rejected, eos) for p in pairs])
        return _Staged("full", texts, True, len(pairs))

    def encode_staged(self, staged: "_Staged") -> list[list[int]]:
        """Encode the staged texts in one tokenizer call (one larger batch parallelises better)."""
        return self._encode(staged.texts, staged.add_special_tokens) if staged.texts else []

    def assemble(self, staged: "_Staged", ids: list[list[int]]) -> list[TokenizedPair]:
        """TRL's split: the completion starts where prompt and prompt+completion ids diverge."""
        n = staged.pairs
        if staged.kind == "shared":
            return self._assemble_shared_prefix(staged, ids)
        out = []
        for prompt_ids, full_chosen, full_rejected in zip(ids[:n], ids[n:2 * n], ids[2 * n:]):
            start = min(common_prefix_length(prompt_ids, full_chosen), common_prefix_length(prompt_ids, full_rejected))
            out.append(TokenizedPair(prompt_ids[:start], full_chosen[start:], full_rejected[start:]))
        return out

    def _stage_shared_prefix(self, prompts: list[str], chosen: list[str], rejected: list[str]) -> "_Staged":
        """Cut each rendering into a head shared by all three and its own tail.

        ``encode(head + tail) == encode(head) + encode(tail)`` when ``tail``
        starts with a split-safe special token (see :func:`split_safe_tokens`),
        so ``prompt_ids``, ``chosen_full`` and ``rejected_full`` are exactly the
        lists TRL gets, and so is the point where they diverge.
        """
        pieces = []  # per pair: head, prompt tail, chosen tail, rejected tail
        for p, c, r in zip(prompts, chosen, rejected):
            k = _split_point(p, c, r, self._split_tokens)
            pieces.extend((p[:k], p[k:], c[k:], r[k:]))
        unique = dict.fromkeys(pieces)  # e.g. the generation prompt's tail repeats in every pair
        position = {text: i for i, text in enumerate(unique)}
        return _Staged("shared", list(unique), False, len(prompts), [position[piece] for piece in pieces])

    @staticmethod
    def _assemble_shared_prefix(staged: "_Staged", ids: list[list[int]]) -> list[TokenizedPair]:
        out = []
        where = staged.positions
        for i in range(0, 4 * staged.pairs, 4):
            head, tail_p, tail_c, tail_r = ids[where[i]], ids[where[i + 1]], ids[where[i + 2]], ids[where[i + 3]]
            start = min(common_prefix_length(tail_p, tail_c), common_prefix_length(tail_p, tail_r))
            out.append(TokenizedPair(head + tail_p[:start], tail_c[start:], tail_r[start:]))
        return out


@dataclass(frozen=True)
class _Staged:
    """Texts of one batch ready for the tokenizer, and how their ids make the pairs."""

    kind: str  # "full": prompts, chosen and rejected texts; "shared": unique heads and tails
    texts: list[str]
    add_special_tokens: bool
    pairs: int
    positions: list[int] = ()  # "shared": per pair, indexes of head, prompt, chosen and rejected tails


def _with_eos(text: str, eos: str) -> str:
    return text if text.endswith(eos) else text + eos



# --------------------------------------------------------------------------- exact shortcuts

# Normalizers and pre-tokenizers that work on each piece of text between two
# added tokens without looking at its neighbours. Metaspace is the one that
# looks at where a piece starts (``prepend_scheme: first`` prepends only at
# offset 0); a tail that starts with an added token has no text piece at
# offset 0, so it is safe too. Anything not listed disables the shortcut.
_PIECEWISE_NORMALIZERS = {
    "Sequence", "NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Strip", "StripAccents", "Prepend", "Replace",
    "Precompiled", "BertNormalizer", "Nmt", "ByteLevel",
}
_PIECEWISE_PRE_TOKENIZERS = {
    "Sequence", "ByteLevel", "Digits", "Metaspace", "Split", "Whitespace", "WhitespaceSplit", "Punctuation",
    "BertPreTokenizer", "UnicodeScripts", "CharDelimiterSplit",
}


def _rust_backend(tokenizer):
    """The ``tokenizers.Tokenizer`` that ``tokenizer(texts)`` hands the texts to unchanged, or None."""
    try:
        from transformers.tokenization_utils_tokenizers import TokenizersBackend
    except ImportError:  # pragma: no cover - other transformers layouts take the slow, plain path
        return None
    if not isinstance(tokenizer, TokenizersBackend):
        return None
    if (type(tokenizer)._encode_plus is not TokenizersBackend._encode_plus
            or type(tokenizer).__call__ is not TokenizersBackend.__call__):
        return None  # a subclass that preprocesses text itself
    backend = getattr(tokenizer, "_tokenizer", None)
    return backend if hasattr(backend, "encode_batch_fast") else None


def _component_types(config) -> set[str]:
    if not config:
        return set()
    types = {config.get("type")}
    for child in config.get("normalizers", []) + config.get("pretokenizers", []):
        types |= _component_types(child)
    return types


def split_safe_tokens(tokenizer) -> tuple[str, ...]:
    """Added tokens ``t`` such that ``encode(a + t + b) == encode(a) + encode(t + b)`` for any texts ``a``, ``b``.

    Why it holds: the Rust tokenizer first cuts the text at added-token
    matches (leftmost-longest over the raw text for ``normalized=False``
    tokens), then normalizes, pre-tokenizes and models each piece between them
    on its own. So the encoding splits at position ``k`` when an added-token
    match starts at ``k`` in both ``a + t + b`` and ``t + b``, and nothing else
    reaches across ``k``. A match of ``t`` starts at ``k`` when no added token
    can start before ``k`` and overlap ``t`` (no proper suffix of any added
    token is prefix-compatible with ``t``); it takes nothing from before ``k``
    when neither ``t`` nor any longer added token starting with ``t`` strips
    whitespace on its left, or needs a word boundary; and a piece before ``k``
    cannot strip across it when ``t`` does not start with whitespace. With
    ``add_special_tokens=False`` the post-processor adds nothing. Tokenizers
    with other normalizers or pre-tokenizers, or that encode special tokens as
    text, get no shortcut.
    """
    import json

    if getattr(tokenizer, "split_special_tokens", False):
        return ()
    backend = _rust_backend(tokenizer)
    if backend is None or backend.encode_special_tokens:
        return ()
    config = json.loads(backend.to_str())
    if not _component_types(config.get("normalizer")) <= _PIECEWISE_NORMALIZERS:
        return ()
    if not _component_types(config.get("pre_tokenizer")) <= _PIECEWISE_PRE_TOKENIZERS:
        return ()
    added = list(backend.get_added_tokens_decoder().values())
    raw = [token.content for token in added if not token.normalized]
    try:  # only tokens the template can write are worth looking for; a user's text may hold any other
        template = tokenizer.get_chat_template(None, None) + " ".join(map(str, tokenizer.special_tokens_map.values()))
    except Exception:  # noqa: BLE001 - no or several templates: consider every added token
        template = None
    safe = []
    for token in added:
        t = token.content
        if token.normalized or not t or t[0].isspace() or (template is not None and t not in template):
            continue
        starting_with_t = [a for a in added if a.content.startswith(t)]
        if any(a.lstrip or a.single_word for a in starting_with_t):
            continue
        if any(other[i:].startswith(t) or t.startswith(other[i:]) for other in raw for i in range(1, len(other))):
            continue
        safe.append(t)
    return tuple(sorted(safe, key=len, reverse=True))


def _split_point(prompt: str, chosen: str, rejected: str, tokens: tuple[str, ...]) -> int:
    """The last position ``k`` where a split-safe token starts in all three texts, after a common head; 0 if none."""
    best = 0
    for token in tokens:
        k = prompt.rfind(token)
        while k > best:
            if (chosen.startswith(token, k) and rejected.startswith(token, k)
                    and chosen.startswith(prompt[:k]) and rejected.startswith(prompt[:k])):
                best = k
                break
            k = prompt.rfind(token, 0, k)
    return best


class _ChatRenderer:
    """``apply_chat_template(tokenize=False)`` minus its per-call overhead, for plain role/content messages.

    transformers copies every message into plain JSON types, aliases reasoning
    fields and drops ``None`` values before rendering its cached, compiled
    template with ``tools=None, documents=None`` and the special tokens; our
    messages are already plain ``{"role": str, "content": str}`` dicts, so
    rendering the same compiled template with the same variables gives the
    same text. Each render also skips what ``Template.render`` redoes every
    time: flattening the template's globals (a ``ChainMap``) into the context.
    Falls back to ``apply_chat_template`` when those internals move.
    """

    def __init__(self, template, variables: dict):
        from jinja2.runtime import new_context

        self.template, self.variables = template, variables
        self._globals = dict(template.globals)  # what new_context would copy out of the ChainMap on every call
        self._new_context = new_context

    @classmethod
    def create(cls, tokenizer):
        if not tokenizer.chat_template:
            return None
        try:
            from transformers.utils.chat_template_utils import _compile_jinja_template, _plain_template_data

            source = tokenizer.get_chat_template(None, None)
            variables = _plain_template_data(dict(tokenizer.special_tokens_map))
            template = _compile_jinja_template(source)
            renderer = cls(template, variables)
            renderer.render([[{"role": "user", "content": "hi"}]], True)  # the internals used are all there
        except Exception:  # noqa: BLE001 - any change in transformers' or jinja's internals: use the public API
            return None
        return renderer

    def render(self, conversations: list[list[dict]], add_generation_prompt: bool) -> list[str]:
        """``template.render(messages=..., tools=None, documents=None, add_generation_prompt=..., **tokens)``."""
        template, variables, flat_globals = self.template, self.variables, self._globals
        environment, name, blocks = template.environment, template.name, template.blocks
        root, concat, new_context = template.root_render_func, environment.concat, self._new_context
        out = []
        try:
            for messages in conversations:
                context = new_context(environment, name, blocks, {
                    "messages": messages, "tools": None, "documents": None,
                    "add_generation_prompt": add_generation_prompt, **variables,
                }, False, flat_globals)
                out.append(concat(root(context)))
        except Exception:
            environment.handle_exception()  # re-raises, as Template.render does
        return out


_PLAIN_KEYS = frozenset(("role", "content"))


def _plain_messages(messages) -> bool:
    """Messages exactly as :func:`transforms.formats.normalize` makes them: ``{"role": str, "content": str}``."""
    return type(messages) is list and all(
        type(m) is dict and m.keys() == _PLAIN_KEYS and type(m["role"]) is str and type(m["content"]) is str
        for m in messages
    )
