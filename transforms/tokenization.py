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
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from poet.transforms.deferred_import import deferred
from poet.transforms.errors import UserError, first_line
from poet.transforms.exact_shortcuts import ChatRenderer, plain_messages, rust_backend, split_point, split_safe_tokens
from poet.transforms.formats import PreferencePair, common_prefix_length
from poet.transforms.hub_ids import missing_local_path


@dataclass(frozen=True)
class TokenizedPair:
    """Token ids before any truncation; completions include their EOS."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]


def load_tokenizer(name_or_path: str):
    """Load a fast tokenizer from a local folder or a Hub id, with a one-line error on failure.

    transformers would import torch on the way (see :mod:`transforms.deferred_import`); a tokenizer never uses it.
    """
    if missing_local_path(name_or_path):
        raise UserError(f"no such tokenizer folder: {name_or_path}; pass a local tokenizer folder or a Hub id "
                        "like user/name")
    try:
        with deferred("torch"):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except Exception as err:  # transformers raises OSError, ValueError, HFValidationError...
        raise UserError(
            f"cannot load tokenizer {name_or_path!r} ({first_line(err)}); pass a local tokenizer folder or a Hub id"
        ) from None
    if tokenizer.eos_token is None:
        raise UserError(f"tokenizer {name_or_path!r} has no EOS token; POET needs one to mark completion ends")
    return tokenizer


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 over the tokenizer's files and chat template(s): provenance for the dataset card."""
    digest = hashlib.sha256()
    folder = Path(tokenizer.name_or_path)
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix in {".json", ".txt", ".model", ".jinja"}:
                digest.update(path.name.encode() + b"\0" + path.read_bytes())
    else:  # a Hub id resolved from the cache: hash what the tokenizer itself serialises
        digest.update(tokenizer.backend_tokenizer.to_str().encode())
    template = tokenizer.chat_template or ""
    if isinstance(template, dict):  # named templates (a list in tokenizer_config.json): all of them, by name
        template = json.dumps(template, sort_keys=True)
    digest.update(template.encode())
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
        self._backend = rust_backend(tokenizer)
        self._split_tokens = split_safe_tokens(tokenizer) if self._backend is not None else ()
        self._renderer = ChatRenderer.create(tokenizer)

    def _render(self, conversations: list[list[dict]], add_generation_prompt: bool,
                plain: bool | None = None) -> list[str]:
        """``apply_chat_template(tokenize=False)``; ``plain``: all messages are known to be plain role/content dicts."""
        if plain is None:
            plain = all(map(plain_messages, conversations))
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
            plain = all(plain_messages(p.prompt) and plain_messages(p.chosen) and plain_messages(p.rejected)
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
            k = split_point(p, c, r, self._split_tokens)
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
