"""``WriteShards``: deterministic, balanced Parquet shards in the Hub layout."""

from __future__ import annotations

import io

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from transforms.schema import estimate_nbytes
from transforms.sharding import ShardPlan, block_key, shard_file_name

ROW_GROUP_SIZE = 1000  # rows per Parquet row group: small enough for streaming reads


def _add_sizes(sizes):
    return tuple(map(sum, zip(*sizes)))


def write_parquet(path: str, rows: list[dict], schema: pa.Schema) -> int:
    """Write one shard (snappy, features in the schema metadata); return its Arrow size in bytes."""
    table = pa.Table.from_pylist(rows, schema=schema)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="snappy", row_group_size=ROW_GROUP_SIZE)
    with FileSystems.create(path) as handle:
        handle.write(buffer.getvalue())
    return table.nbytes


class _AssignShards(beam.DoFn):
    def process(self, block, plan: ShardPlan):
        key, rows = block
        for position, row in enumerate(sorted(rows, key=lambda r: r.origin.sort_key)):
            yield (key[0], plan.shard_of(key, position)), row


class _WriteShard(beam.DoFn):
    def __init__(self, folder: str, schema: pa.Schema):
        self.folder, self.schema = folder, schema

    def process(self, shard, plan: ShardPlan):
        (split, index), rows = shard
        rows = sorted(rows, key=lambda r: r.origin.sort_key)
        name = shard_file_name(split, index, plan.shard_counts[split])
        nbytes = write_parquet(f"{self.folder}/{name}", [r.row for r in rows], self.schema)
        yield split, name, len(rows), nbytes


class _WriteEmptyShard(_WriteShard):
    """A split whose every row was dead-lettered still gets one (empty) shard, so it loads."""

    def process(self, split, plan: ShardPlan):
        if plan.totals[split] == 0:
            name = shard_file_name(split, 0, 1)
            yield split, name, 0, write_parquet(f"{self.folder}/{name}", [], self.schema)


class WriteShards(beam.PTransform):
    """``PreparedRow`` → ``data/{split}-{i:05d}-of-{n:05d}.parquet``; outputs ``(split, file, rows, bytes)``.

    Rows keep their source order; shard boundaries come from a :class:`ShardPlan`
    built from per-block row counts, so the bytes do not depend on the runner.
    """

    def __init__(self, folder: str, splits: list[str], schema: pa.Schema, num_shards: int | None, max_shard_bytes: int):
        super().__init__()
        self.folder, self.splits, self.schema = folder, splits, schema
        self.num_shards, self.max_shard_bytes = num_shards, max_shard_bytes

    def _plan(self, block_sizes) -> ShardPlan:
        return ShardPlan.from_blocks(
            self.splits, block_sizes, num_shards=self.num_shards, max_shard_bytes=self.max_shard_bytes
        )

    def expand(self, rows):
        by_block = rows | "KeyByBlock" >> beam.Map(
            lambda r: (block_key(r.origin.split, r.origin.file_index, r.origin.line), r)
        )
        plan = beam.pvalue.AsSingleton(
            by_block
            | "RowSizes" >> beam.Map(lambda kv: (kv[0], (1, estimate_nbytes(kv[1].row))))
            | "BlockSizes" >> beam.CombinePerKey(_add_sizes)
            | "AllBlocks" >> beam.combiners.ToList()
            | "Plan" >> beam.Map(self._plan)
        )
        written = (
            by_block
            | "GroupBlocks" >> beam.GroupByKey()
            | "AssignShards" >> beam.ParDo(_AssignShards(), plan=plan)
            | "GroupShards" >> beam.GroupByKey()
            | "WriteParquet" >> beam.ParDo(_WriteShard(self.folder, self.schema), plan=plan)
        )
        empty = (
            rows.pipeline
            | "Splits" >> beam.Create(self.splits)
            | "WriteEmptySplits" >> beam.ParDo(_WriteEmptyShard(self.folder, self.schema), plan=plan)
        )
        return (written, empty) | "Manifest" >> beam.Flatten()
