"""``WriteShards``: deterministic, balanced Parquet shards in the Hub layout, written in bounded memory.

Rows never travel through a shuffle. Each batch of prepared rows is written
where it was prepared, as a small Arrow fragment in the staging folder (a
deterministic name and content per batch, so a retried bundle rewrites the
same file). Only a few numbers per fragment go through the runner: they give
the :class:`ShardPlan`, which tells every shard writer which fragments, and
which rows of them, make its shard. Writers stream fragments into Parquet row
groups, so memory holds one fragment and one row group, whatever the size of
the dataset or of a shard. The fragments are deleted once every shard exists.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterable
from dataclasses import dataclass

import apache_beam as beam
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from poet.transforms.schema import estimate_nbytes
from poet.transforms.contract import shard_file
from poet.transforms.sharding import ShardPlan

ROW_GROUP_SIZE = 1000  # rows per Parquet row group: small enough for streaming reads
FRAGMENTS = ".poet-fragments"  # inside the staging folder; removed before the folder is committed
_PARQUET = {"compression": "snappy"}


@dataclass(frozen=True)
class Fragment:
    """Consecutive kept rows of one input file, written to ``path``; ``key`` orders fragments like their rows."""

    split: str
    file_index: int
    first_line: int
    rows: int
    nbytes: int  # estimated Arrow size, for the shard count
    path: str

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.split, self.file_index, self.first_line)


def write_parquet(path: str, pieces: Iterable[pa.Table], schema: pa.Schema) -> int:
    """Write one shard from Arrow tables, in order; return its Arrow size in bytes.

    Snappy, features in the schema metadata, row groups of ``ROW_GROUP_SIZE``:
    the same bytes as ``pq.write_table(whole_table, row_group_size=ROW_GROUP_SIZE)``
    (each row group is written as one contiguous chunk), and the same Arrow
    size (a table's ``nbytes`` is the sum of its row groups'), but with one
    row group in memory at a time.
    """
    with FileSystems.create(path) as handle:
        stream = _ParquetStream(handle, schema)
        for piece in pieces:
            stream.write(piece)
        stream.close()
    return stream.nbytes


def _read_fragment(path: str) -> pa.Table:
    with FileSystems.open(path) as handle:
        return ipc.open_stream(handle.read()).read_all()


class _ParquetStream:
    def __init__(self, handle, schema: pa.Schema):
        self.handle, self.schema = handle, schema
        self.writer = None  # opened with the first row group (a shard always has rows: see ShardPlan)
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.nbytes = 0

    def write(self, table: pa.Table) -> None:
        while table.num_rows:
            take = min(ROW_GROUP_SIZE - self.pending_rows, table.num_rows)
            self.pending.append(table.slice(0, take))
            self.pending_rows += take
            table = table.slice(take)
            if self.pending_rows == ROW_GROUP_SIZE:
                self._flush()

    def _flush(self) -> None:
        group = pa.concat_tables(self.pending).combine_chunks()
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.handle, self.schema, **_PARQUET)
        self.writer.write_table(group, row_group_size=ROW_GROUP_SIZE)
        self.nbytes += group.nbytes
        self.pending, self.pending_rows = [], 0

    def close(self) -> None:
        if self.pending_rows:
            self._flush()
        self.writer.close()


class _WriteFragment(beam.DoFn):
    """A :class:`~pipeline.read.RowBatch` of ``PreparedRow`` (consecutive rows of one file) → one fragment."""

    def __init__(self, fragments: str, schema: pa.Schema):
        self.fragments, self.schema = fragments, schema

    def process(self, rows):
        rows = sorted(rows, key=lambda r: r.origin.sort_key)
        first = rows[0].origin
        path = f"{self.fragments}/{first.split}/{first.file_index:05d}-{first.line:012d}.arrow"
        table = pa.Table.from_pylist([r.row for r in rows], schema=self.schema)
        buffer = io.BytesIO()
        with ipc.new_stream(buffer, self.schema) as writer:
            writer.write_table(table)
        with FileSystems.create(path) as handle:
            handle.write(buffer.getvalue())
        yield Fragment(first.split, first.file_index, first.line, len(rows),
                       sum(estimate_nbytes(r.row) for r in rows), path)


class _WriteShard(beam.DoFn):
    def __init__(self, folder: str, schema: pa.Schema):
        self.folder, self.schema = folder, schema

    def process(self, shard, plan: ShardPlan, fragments: list[Fragment]):
        split, index = shard
        lo, hi = plan.rank_range(split, index)
        name = shard_file(split, index, plan.shard_counts[split])
        nbytes = write_parquet(f"{self.folder}/{name}", self._pieces(split, lo, hi, plan, fragments), self.schema)
        yield split, name, hi - lo, nbytes

    @staticmethod
    def _pieces(split: str, lo: int, hi: int, plan: ShardPlan, fragments: list[Fragment]):
        """The rows of ranks ``[lo, hi)``, fragment by fragment."""
        for fragment in sorted((f for f in fragments if f.split == split), key=lambda f: f.key):
            start = plan.fragment_offsets[fragment.key]
            if start < hi and start + fragment.rows > lo:
                table = _read_fragment(fragment.path)
                yield table.slice(max(lo - start, 0), min(hi, start + fragment.rows) - max(lo, start))


def _shards_of(split: str, plan: ShardPlan):
    if plan.totals[split]:
        for index in range(plan.shard_counts[split]):
            yield split, index


def delete_tree(path: str) -> None:
    """Remove a folder and everything in it, local or on an object store."""
    if "://" not in path:
        shutil.rmtree(path, ignore_errors=True)
        return
    files = [m.path for m in FileSystems.match([path.rstrip("/") + "/**"])[0].metadata_list]
    if files:
        FileSystems.delete(files)


class WriteShards(beam.PTransform):
    """Lists of ``PreparedRow`` → the contract's shard files; outputs ``(split, file, rows, bytes)``.

    Each input list holds consecutive rows of one file (a tokenizer batch).
    Rows keep their source order; shard boundaries come from a :class:`ShardPlan`
    built from per-fragment row counts, so the bytes do not depend on the
    runner, on how rows were batched or on how many workers wrote them.
    """

    def __init__(self, folder: str, splits: list[str], schema: pa.Schema, num_shards: int | None, max_shard_bytes: int):
        super().__init__()
        self.folder, self.splits, self.schema = folder, splits, schema
        self.num_shards, self.max_shard_bytes = num_shards, max_shard_bytes

    def _plan(self, fragments: list[Fragment]) -> ShardPlan:
        sizes = [(f.key, (f.rows, f.nbytes)) for f in fragments]
        return ShardPlan.from_fragments(
            self.splits, sizes, num_shards=self.num_shards, max_shard_bytes=self.max_shard_bytes
        )

    def expand(self, row_lists):
        fragments_dir = f"{self.folder}/{FRAGMENTS}"
        fragments = row_lists | "WriteFragments" >> beam.ParDo(_WriteFragment(fragments_dir, self.schema))
        all_fragments = beam.pvalue.AsList(fragments)
        plan = beam.pvalue.AsSingleton(fragments | "AllFragments" >> beam.combiners.ToList()
                                       | "Plan" >> beam.Map(self._plan))
        splits = row_lists.pipeline | "Splits" >> beam.Create(self.splits)
        written = (
            splits
            | "ListShards" >> beam.FlatMap(_shards_of, plan=plan)
            | "SpreadShards" >> beam.Reshuffle()
            | "WriteParquet" >> beam.ParDo(_WriteShard(self.folder, self.schema), plan=plan,
                                           fragments=all_fragments)
        )
        _ = (
            written
            | "AllWritten" >> beam.combiners.Count.Globally()
            | "RemoveFragments" >> beam.Map(lambda _: delete_tree(fragments_dir))
        )
        return written
