"""``ScorePreparedDataset``: add reference log-prob columns to the shards of a prepared folder, into a new folder.

It reads like the job: read the shards in chunks, score them
(:class:`~pipeline.steps.reference.ScoreReference`, the same stage as ``poet prepare --ref-model``), write shards in the
same layout, then the card and ``stats.json``: the length statistics are those of the source (same rows), with
the ``reference`` block added and the shard list replaced.
"""

from __future__ import annotations

import dataclasses

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from poet.pipeline.steps.file_records import create_recorded
from poet.pipeline.steps.gather import GatherTagged, Spread
from poet.pipeline.steps.metadata import file_sizes, write_metadata
from poet.pipeline.steps.read import RowBatch, open_input
from poet.pipeline.steps.reference import ScoreReference
from poet.pipeline.steps.write_shards import WriteShards
from poet.transforms.contract import DEAD_LETTER_DIR, REF_COLUMN_NAMES, RunDescription
from poet.transforms.prepare import PreparedRow, RowOrigin
from poet.transforms.reference import ReferenceModel, reference_section
from poet.transforms.stats_file import shard_entries


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    source: str  # local folder, gs:// folder, or Hub dataset repo id
    output: str
    reference: ReferenceModel
    revision: str | None = None
    overwrite: bool = False
    batch_size: int = 256
    ref_model_copies: int | None = None


class _ReadShard(beam.DoFn):
    """One shard → lists of up to ``chunk_rows`` consecutive rows, as ``PreparedRow`` (origin: shard, row index)."""

    def __init__(self, chunk_rows: int):
        self.chunk_rows = chunk_rows

    def process(self, spec):
        split, index, path = spec
        with open_input(path) as handle:  # Hub shards through hf://, pinned to one commit by the launcher
            table = pq.read_table(handle)
        table = table.drop_columns([c for c in REF_COLUMN_NAMES if c in table.column_names])  # re-scored
        for start in range(0, table.num_rows, self.chunk_rows):
            rows = table.slice(start, self.chunk_rows).to_pylist()
            yield RowBatch(PreparedRow(RowOrigin(split, path, index, start + i), row, None) for i, row in enumerate(rows))


class _WriteScoredMetadata(beam.DoFn):
    """The card and stats.json, and the source's dead letters copied over: the stats carry their counts, so the
    new folder holds the rows they count (``poet score X --output X --overwrite`` must not lose them)."""

    def __init__(self, folder: str, document: dict, features, reference: ReferenceModel, dead_letters: list[str]):
        self.folder, self.document, self.features, self.reference = folder, document, features, reference
        self.dead_letters = dead_letters

    def process(self, parts: dict):
        for path in self.dead_letters:
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as source, \
                    create_recorded(self.folder, f"{DEAD_LETTER_DIR}/{path.rsplit('/', 1)[-1]}") as target:
                while chunk := source.read(1 << 20):
                    target.write(chunk)
        shards = parts["shard"]
        splits = list(self.document["splits"])
        sizes = file_sizes(self.folder, sorted(name for _, name, _, _ in shards))
        document = {**self.document, "shards": shard_entries(splits, shards, sizes),
                    "reference": reference_section(self.reference, dict(parts["reference"]), splits)}  # fmt: skip
        write_metadata(self.folder, document, self.features)
        yield document


class ScorePreparedDataset(beam.PTransform):
    """Score the shards ``(split, index, path)`` of a prepared folder whose stats document is ``document``, and
    copy its ``dead_letters`` (paths of its ``dead_letter/`` files)."""

    def __init__(self, config: ScoreConfig, shards: list[tuple[str, int, str]], document: dict, schema, features,
                 folder: str, dead_letters: list[str] = ()):
        super().__init__()
        self.config, self.shards, self.document = config, shards, document
        self.schema, self.features, self.folder = schema, features, folder
        self.dead_letters = list(dead_letters)

    def expand(self, pbegin):
        options = RunDescription.from_json(self.document.get("run")).options
        rows, stats = (
            pbegin
            | "ListShards" >> beam.Create(self.shards)
            | "SpreadShards" >> Spread(lambda shard: shard[2])
            | "ReadShards" >> beam.ParDo(_ReadShard(self.config.batch_size))
            | "ScoreReference" >> ScoreReference(self.config.reference, self.config.ref_model_copies)
        )
        splits = sorted(self.document["splits"])
        shards = rows | "WriteShards" >> WriteShards(
            self.folder, splits, self.schema, options.num_shards, options.max_shard_bytes
        )
        return (
            {"shard": shards, "reference": stats}
            | "AllParts" >> GatherTagged()
            | "WriteMetadata" >> beam.ParDo(
                _WriteScoredMetadata(self.folder, self.document, self.features, self.config.reference,
                                     self.dead_letters)
            )
        )
