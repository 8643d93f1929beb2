"""Deterministic, balanced shard assignment.

Rows are ordered by their source position ``(file_index, line)``. Counting kept
rows per block of source lines gives every row its exact rank in the split
without gathering the split on one worker; rank ``r`` of ``total`` rows goes to
shard ``r * n // total``, so shards are contiguous, differ by at most one row,
and do not depend on how the runner ordered or bundled the work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BLOCK_LINES = 4096

BlockKey = tuple  # (split, file_index, line // BLOCK_LINES)


def block_key(split: str, file_index: int, line: int) -> BlockKey:
    return (split, file_index, line // BLOCK_LINES)


def shard_file_name(split: str, index: int, count: int) -> str:
    return f"data/{split}-{index:05d}-of-{count:05d}.parquet"


@dataclass(frozen=True)
class ShardPlan:
    """How many shards each split gets and where each block of rows starts."""

    shard_counts: dict[str, int]
    totals: dict[str, int]
    block_offsets: dict[BlockKey, int]

    @classmethod
    def from_blocks(
        cls,
        splits: list[str],
        block_sizes: list[tuple[BlockKey, tuple[int, int]]],
        *,
        num_shards: int | None,
        max_shard_bytes: int,
    ) -> "ShardPlan":
        """``block_sizes`` holds ``(block, (rows, estimated_bytes))`` for every non-empty block."""
        totals = {split: 0 for split in splits}
        nbytes = {split: 0 for split in splits}
        offsets = {}
        for key, (rows, size) in sorted(block_sizes):
            split = key[0]
            offsets[key] = totals[split]
            totals[split] += rows
            nbytes[split] += size
        counts = {}
        for split in splits:
            wanted = num_shards or max(1, math.ceil(nbytes[split] / max_shard_bytes))
            counts[split] = max(1, min(wanted, totals[split]))
        return cls(counts, totals, offsets)

    def shard_of(self, key: BlockKey, position_in_block: int) -> int:
        split = key[0]
        rank = self.block_offsets[key] + position_in_block
        return rank * self.shard_counts[split] // self.totals[split]
