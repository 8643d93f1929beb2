"""The POET rule (arXiv 2506.09457), once: both completions of a pair are cut to the shorter one's length.

The pipeline cuts the token ids with :func:`poet_truncate` (``transforms.truncation``), the trainer scores the
first :func:`poet_length` completion tokens of untruncated pairs (``trainer.data.collate``), and the statistics
count what the rule removes from the :func:`poet_length` of every pair (``transforms.stats``), so the three
cannot disagree. Lengths count EOS; the prompt is never cut.
"""

from __future__ import annotations

from collections.abc import Sequence


def poet_length(chosen_length: int, rejected_length: int) -> int:
    """The length both completions keep under POET: the shorter one's."""
    return min(chosen_length, rejected_length)


def poet_truncate(chosen_ids: Sequence[int], rejected_ids: Sequence[int]) -> tuple[Sequence[int], Sequence[int]]:
    """Cut both completions to :func:`poet_length`."""
    length = poet_length(len(chosen_ids), len(rejected_ids))
    return chosen_ids[:length], rejected_ids[:length]
