"""Max-length truncation and POET equal-length prefix truncation, on token ids.

The order is that of the POET paper's official code: completions already end
with EOS (see :mod:`transforms.tokenization`); the usual per-sequence length
limit runs first (prompt keeps its last ``max_prompt_length`` tokens, then
prompt+completion keeps its first ``max_length`` tokens, like TRL's
``keep_start`` collator); then both completions are cut to
``L = min(len(chosen), len(rejected))`` (:mod:`transforms.poet_rule`). EOS counts in the lengths and is not
re-appended to the side that was cut; the prompt is never touched by POET.
"""

from __future__ import annotations

from dataclasses import dataclass

from poet.transforms.poet_rule import poet_length, poet_truncate
from poet.transforms.reasons import Reason, RowRejected
from poet.transforms.tokenization import TokenizedPair


@dataclass(frozen=True)
class TruncatedPair:
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    chosen_length_orig: int  # completion length before any truncation
    rejected_length_orig: int
    completion_room: int  # completion tokens that fit after the prompt (max_length cap)
    poet_length: int  # min of the two completion lengths after the max-length cap

    @property
    def prompt_length(self) -> int:
        return len(self.prompt_ids)


def truncate_pair(
    pair: TokenizedPair,
    *,
    max_length: int | None,
    max_prompt_length: int | None = None,
    poet: bool = True,
) -> TruncatedPair:
    """Apply the length limits, then POET; reject pairs left with no signal."""
    prompt = pair.prompt_ids
    if max_prompt_length is not None and len(prompt) > max_prompt_length:
        prompt = prompt[len(prompt) - max_prompt_length :]
    room = max(len(pair.chosen_ids), len(pair.rejected_ids))
    if max_length is not None:
        if len(prompt) >= max_length:
            raise RowRejected(
                Reason.PROMPT_TOO_LONG, f"prompt has {len(prompt)} tokens, max_length is {max_length}"
            )
        room = min(room, max_length - len(prompt))
    chosen, rejected = pair.chosen_ids[:room], pair.rejected_ids[:room]
    shared = poet_length(len(chosen), len(rejected))
    if poet:
        chosen, rejected = poet_truncate(chosen, rejected)
    if chosen == rejected:
        raise RowRejected(
            Reason.IDENTICAL_AFTER_TRUNCATION, f"both completions equal their first {len(chosen)} tokens"
        )
    return TruncatedPair(
        prompt_ids=prompt,
        chosen_ids=chosen,
        rejected_ids=rejected,
        chosen_length_orig=len(pair.chosen_ids),
        rejected_length_orig=len(pair.rejected_ids),
        completion_room=room,
        poet_length=shared,
    )
