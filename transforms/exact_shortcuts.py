"""Fast paths that give exactly what transformers' public calls give, or are not taken.

``PairTokenizer`` encodes the part of a prompt that all three renderings share
once instead of three times, calls the Rust tokenizer directly, and renders chat
templates without ``apply_chat_template``'s per-call overhead. Each shortcut is
taken only where it is provably identical (the reasoning is in each docstring)
and falls back to the public API otherwise; ``tests/test_tokenization_trl.py``
checks the result against TRL on every bundled tokenizer.
"""

from __future__ import annotations

import json

from poet.transforms.template_budget import RenderBudget

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


def rust_backend(tokenizer):
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


def _config(component) -> dict | None:
    """A normalizer's or pre-tokenizer's JSON, as in ``tokenizer.json`` (without serialising the whole vocabulary)."""
    return None if component is None else json.loads(component.__getstate__())


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
    if getattr(tokenizer, "split_special_tokens", False):
        return ()
    backend = rust_backend(tokenizer)
    if backend is None or backend.encode_special_tokens:
        return ()
    if not _component_types(_config(backend.normalizer)) <= _PIECEWISE_NORMALIZERS:
        return ()
    if not _component_types(_config(backend.pre_tokenizer)) <= _PIECEWISE_PRE_TOKENIZERS:
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


def split_point(prompt: str, chosen: str, rejected: str, tokens: tuple[str, ...]) -> int:
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


class ChatRenderer:
    """``apply_chat_template(tokenize=False)`` minus its per-call overhead, for plain role/content messages.

    transformers copies every message into plain JSON types, aliases reasoning
    fields and drops ``None`` values before rendering its cached, compiled
    template with ``tools=None, documents=None`` and the special tokens; our
    messages are already plain ``{"role": str, "content": str}`` dicts, so
    rendering the same template source in the same sandbox with the same
    variables gives the same text. Each render also skips what
    ``Template.render`` redoes every time: flattening the template's globals
    (a ``ChainMap``) into the context. The template renders in transformers'
    own jinja sandbox, as jinja ships it, each conversation within a
    :class:`~transforms.template_budget.RenderBudget` (hooked in through the
    sandbox's documented extension points). Falls back to
    ``apply_chat_template`` (unbounded) when those internals move.
    """

    def __init__(self, template, variables: dict, budget: RenderBudget):
        from jinja2.runtime import new_context

        self.template, self.variables, self.budget = template, variables, budget
        self._globals = dict(template.globals)  # what new_context would copy out of the ChainMap on every call
        self._new_context = new_context

    @classmethod
    def create(cls, tokenizer, budget: RenderBudget | None = None):
        """The renderer of the tokenizer's template (its default one, when it has several named ones, as
        ``apply_chat_template`` picks it), each conversation within ``budget``; None where it cannot be built."""
        if not tokenizer.chat_template:
            return None
        try:
            from transformers.utils.chat_template_utils import _compile_jinja_template, _plain_template_data

            source = tokenizer.get_chat_template(None, None)
            variables = _plain_template_data(dict(tokenizer.special_tokens_map))
            budget = budget or RenderBudget()
            overlay = _compile_jinja_template(source).environment.overlay()  # the same settings, hooked by the budget
            budget.install(overlay)
            template = budget.compile(overlay, source)
            renderer = cls(template, variables, budget)
            renderer.render([[{"role": "user", "content": "hi"}]], True)  # the internals used are all there
        except Exception:  # noqa: BLE001 - any change in transformers' or jinja's internals: use the public API
            return None
        return renderer

    def render(self, conversations: list[list[dict]], add_generation_prompt: bool) -> list[str]:
        """``template.render(messages=..., tools=None, documents=None, add_generation_prompt=..., **tokens)``."""
        template, variables, flat_globals = self.template, self.variables, self._globals
        environment, name, blocks = template.environment, template.name, template.blocks
        root, join, new_context = template.root_render_func, self.budget.render, self._new_context
        out = []
        try:
            for messages in conversations:
                context = new_context(environment, name, blocks, {
                    "messages": messages, "tools": None, "documents": None,
                    "add_generation_prompt": add_generation_prompt, **variables,
                }, False, flat_globals)
                out.append(join(root(context)))
        except Exception:
            environment.handle_exception()  # re-raises, as Template.render does
        return out


_PLAIN_KEYS = frozenset(("role", "content"))


def plain_messages(messages) -> bool:
    """Messages exactly as :func:`transforms.formats.normalize` makes them: ``{"role": str, "content": str}``."""
    return type(messages) is list and all(
        type(m) is dict and m.keys() == _PLAIN_KEYS and type(m["role"]) is str and type(m["content"]) is str
        for m in messages
    )
