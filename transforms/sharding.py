"""Deterministic, balanced shard assignment.

Rows are ordered by their source position ``(file_index, line)``. Prepared rows
are written in fragments of consecutive rows of one file; counting the rows of
every fragment gives each fragment's first rank in its split, hence every row's
exact rank, without gathering the split on one worker. Rank ``r`` of ``total``
rows goes to shard ``r * n // total``, so shards are contiguous, differ by at
most one row, and do not depend on how the runner ordered or bundled the work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FragmentKey = tuple  # (split, file_index, first line of the fragment)


@dataclass(frozen=True)
class ShardPlan:
    """How many shards each split gets and at which rank each fragment of rows starts."""

    shard_counts: dict[str, int]
    totals: dict[str, int]
    fragment_offsets: dict[FragmentKey, int]

    @classmethod
    def from_fragments(
        cls,
        splits: list[str],
        fragment_sizes: list[tuple[FragmentKey, tuple[int, int]]],
        *,
        num_shards: int | None,
        max_shard_bytes: int,
    ) -> "ShardPlan":
        """``fragment_sizes`` holds ``(fragment, (rows, estimated_bytes))`` for every non-empty fragment.

        A split gets ``num_shards`` shards, or as many as its estimated Arrow size
        needs, but never more than it has rows: every shard holds at least one row.
        """
        totals = {split: 0 for split in splits}
        nbytes = {split: 0 for split in splits}
        offsets = {}
        for key, (rows, size) in sorted(fragment_sizes):
            split = key[0]
            offsets[key] = totals[split]
            totals[split] += rows
            nbytes[split] += size
        counts = {}
        for split in splits:
            wanted = num_shards or max(1, math.ceil(nbytes[split] / max_shard_bytes))
            counts[split] = max(1, min(wanted, totals[split]))
        return cls(counts, totals, offsets)

    def rank_range(self, split: str, index: int) -> tuple[int, int]:
        """Ranks ``[lo, hi)`` of shard ``index``: exactly the ranks ``r`` with ``r * n // total == index``."""
        n, total = self.shard_counts[split], self.totals[split]
        return -(-index * total // n), -(-(index + 1) * total // n)
