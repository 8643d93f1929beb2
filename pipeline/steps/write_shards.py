"""``WriteShards``: deterministic, balanced Parquet shards in the Hub layout, written in bounded memory.

Rows never travel through a shuffle. Each batch of prepared rows is written
where it was prepared, as a small Arrow fragment in the staging folder (a
deterministic name and content per batch, so a retried bundle rewrites the
same file). Only a few numbers per fragment go through the runner: gathered on
one worker, they give the :class:`ShardPlan`, from which each shard becomes a
:class:`ShardJob` naming the fragments, and the rows of them, that make it. Writers stream fragments into Parquet row
groups, so memory holds one fragment and one row group, whatever the size of
the dataset or of a shard. The fragments are deleted once every shard exists.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass

import apache_beam as beam
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from poet.pipeline.steps.file_records import create_recorded
from poet.pipeline.steps.gather import Gather, Spread
from poet.transforms.contract import shard_file
from poet.transforms.schema import estimate_nbytes
from poet.transforms.sharding import ShardPlan

ROW_GROUP_SIZE = 1000  # rows per Parquet row group: small enough for streaming reads
FRAGMENTS = ".poet-fragments"  # inside the staging folder; removed before the folder is committed


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


def parquet_options(schema: pa.Schema) -> dict:
    """pyarrow's writer options as ``datasets`` 5.x sets them for ``push_to_hub`` and ``to_parquet``.

    Content-defined chunking cuts pages where the data says, not every N bytes,
    so a re-publish of slightly changed data shares most pages with the old
    shards and the Hub's Xet storage stores them once; the page index lets
    readers fetch single pages. Snappy and dictionaries per column, as there.
    """
    from datasets import Features, config
    from datasets.arrow_writer import get_parquet_column_options

    return {"use_content_defined_chunking": config.DEFAULT_CDC_OPTIONS, "write_page_index": True,
            **get_parquet_column_options(Features.from_arrow_schema(schema), schema)}


def write_parquet(folder: str, name: str, pieces: Iterable[pa.Table], schema: pa.Schema) -> int:
    """Write one shard ``folder/name`` from Arrow tables, in order, hashed as it is written (its record: see
    :mod:`pipeline.steps.file_records`); return its Arrow size in bytes.

    Features in the schema metadata, :func:`parquet_options`, row groups of
    ``ROW_GROUP_SIZE``: the same bytes as ``datasets``' ``Dataset.to_parquet``
    with ``batch_size=ROW_GROUP_SIZE`` (each row group is written as one
    contiguous chunk), and the same Arrow size (a table's ``nbytes`` is the
    sum of its row groups'), but with one row group in memory at a time.
    """
    with create_recorded(folder, name) as handle:
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
            self.options = parquet_options(self.schema)
            self.writer = pq.ParquetWriter(self.handle, self.schema, **self.options)
        self.writer.write_table(group, row_group_size=ROW_GROUP_SIZE)
        self.nbytes += group.nbytes
        self.pending, self.pending_rows = [], 0

    def close(self) -> None:
        if self.pending_rows:
            self._flush()
        # what datasets records next to the data, so readers know how the pages were cut
        chunking = self.options["use_content_defined_chunking"]
        self.writer.add_key_value_metadata({"content_defined_chunking": json.dumps(chunking)})
        self.writer.close()


class _WriteFragment(beam.DoFn):
    """A :class:`~pipeline.steps.read.RowBatch` of ``PreparedRow`` (consecutive rows of one file) → one fragment."""

    def __init__(self, fragments: str, schema: pa.Schema):
        self.fragments, self.schema = fragments, schema

    def process(self, rows):
        rows = sorted(rows, key=lambda r: r.origin.sort_key)
        first = rows[0].origin
        path = f"{self.fragments}/{first.split}/{first.file_index:05d}-{first.line:012d}.arrow"
        table = pa.Table.from_pydict({name: [r.row[name] for r in rows] for name in self.schema.names},
                                     schema=self.schema)  # column by column: faster than from_pylist, same table
        buffer = io.BytesIO()
        with ipc.new_stream(buffer, self.schema) as writer:
            writer.write_table(table)
        with FileSystems.create(path) as handle:
            handle.write(buffer.getvalue())
        yield Fragment(first.split, first.file_index, first.line, len(rows),
                       sum(estimate_nbytes(r.row) for r in rows), path)


@dataclass(frozen=True)
class ShardJob:
    """One shard to write: its file name and its rows, as ``(fragment path, first row, rows)`` pieces in order."""

    split: str
    index: int
    name: str
    pieces: tuple[tuple[str, int, int], ...]

    @property
    def rows(self) -> int:
        return sum(rows for _, _, rows in self.pieces)


def plan_shards(fragments: list[Fragment], splits: list[str], num_shards: int | None,
                max_shard_bytes: int) -> list[ShardJob]:
    """Every shard of every split with rows, from the fragments of all workers."""
    plan = ShardPlan.from_fragments(splits, [(f.key, (f.rows, f.nbytes)) for f in fragments],
                                    num_shards=num_shards, max_shard_bytes=max_shard_bytes)
    jobs = []
    for split in splits:
        ordered = sorted((f for f in fragments if f.split == split), key=lambda f: f.key)
        for index in range(plan.shard_counts[split] if plan.totals[split] else 0):
            lo, hi = plan.rank_range(split, index)
            pieces = []
            for fragment in ordered:
                start = plan.fragment_offsets[fragment.key]
                if start < hi and start + fragment.rows > lo:
                    first = max(lo - start, 0)
                    pieces.append((fragment.path, first, min(hi, start + fragment.rows) - start - first))
            jobs.append(ShardJob(split, index, shard_file(split, index, plan.shard_counts[split]), tuple(pieces)))
    return jobs


class _WriteShard(beam.DoFn):
    def __init__(self, folder: str, schema: pa.Schema):
        self.folder, self.schema = folder, schema

    def process(self, job: ShardJob):
        pieces = (_read_fragment(path).slice(first, rows) for path, first, rows in job.pieces)
        nbytes = write_parquet(self.folder, job.name, pieces, self.schema)
        yield job.split, job.name, job.rows, nbytes


def _remove_fragments(written: list, fragments_dir: str) -> list:
    """Delete the fragments once every shard exists; pass the shards' records on."""
    delete_tree(fragments_dir)
    return written


def delete_tree(path: str) -> None:
    """Remove a folder and everything in it, local or on an object store."""
    if "://" not in path:
        shutil.rmtree(path, ignore_errors=True)
        return
    files = [m.path for m in FileSystems.match([path.rstrip("/") + "/**"])[0].metadata_list]
    if files:
        FileSystems.delete(files)


class WriteShards(beam.PTransform):
    """Lists of ``PreparedRow`` → the contract's shard files; outputs ``(split, file, rows, bytes)``
    once every shard is written and the fragments are gone.

    Each input list holds consecutive rows of one file (a tokenizer batch).
    Rows keep their source order; shard boundaries come from a :class:`ShardPlan`
    built from per-fragment row counts, so the bytes do not depend on the
    runner, on how rows were batched or on how many workers wrote them.
    """

    def __init__(self, folder: str, splits: list[str], schema: pa.Schema, num_shards: int | None, max_shard_bytes: int):
        super().__init__()
        self.folder, self.splits, self.schema = folder, splits, schema
        self.num_shards, self.max_shard_bytes = num_shards, max_shard_bytes

    def expand(self, row_lists):
        fragments_dir = f"{self.folder}/{FRAGMENTS}"
        return (
            row_lists
            | "WriteFragments" >> beam.ParDo(_WriteFragment(fragments_dir, self.schema))
            | "AllFragments" >> Gather()
            | "PlanShards" >> beam.FlatMap(plan_shards, self.splits, self.num_shards, self.max_shard_bytes)
            | "SpreadShards" >> Spread(lambda job: (job.split, job.index))
            | "WriteParquet" >> beam.ParDo(_WriteShard(self.folder, self.schema))
            | "AllWritten" >> Gather()
            | "RemoveFragments" >> beam.FlatMap(_remove_fragments, fragments_dir)
        )
