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
    """Turns :class:`PreferencePair` batches into TRL-identical token ids."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.eos_token = tokenizer.eos_token
        self.eos_token_id = tokenizer.eos_token_id

    def has_chat_template(self) -> bool:
        return bool(self.tokenizer.chat_template)

    def _render(self, conversations: list[list[dict]], add_generation_prompt: bool) -> list[str]:
        return self.tokenizer.apply_chat_template(
            conversations, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def _encode(self, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"]

    def encode(self, pairs: Sequence[PreferencePair]) -> list[TokenizedPair]:
        """Tokenize one batch; all pairs must be of one kind (all conversational or all text)."""
        if not pairs:
            return []
        if pairs[0].conversational:
            # apply_chat_template(tokenize=True) renders, then encodes without special tokens
            prompts = self._encode(self._render([p.prompt for p in pairs], True), False)
            chosen = self._encode(self._render([p.prompt + p.chosen for p in pairs], False), False)
            rejected = self._encode(self._render([p.prompt + p.rejected for p in pairs], False), False)
        else:
            eos = self.eos_token
            prompts = self._encode([p.prompt for p in pairs], True)
            chosen = self._encode([p.prompt + _with_eos(p.chosen, eos) for p in pairs], True)
            rejected = self._encode([p.prompt + _with_eos(p.rejected, eos) for p in pairs], True)
        out = []
        for prompt_ids, full_chosen, full_rejected in zip(prompts, chosen, rejected):
            start = min(common_prefix_length(prompt_ids, full_chosen), common_prefix_length(prompt_ids, full_rejected))
            out.append(TokenizedPair(prompt_ids[:start], full_chosen[start:], full_rejected[start:]))
        return out


def _with_eos(text: str, eos: str) -> str:
    return text if text.endswith(eos) else text + eos

