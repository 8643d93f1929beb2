"""``poet score``: add reference log-prob columns to an existing prepared folder, into a new folder.

``ScorePreparedDataset`` reads like the job: read the shards in chunks, score them
(:class:`~pipeline.reference.ScoreReference`, the same stage as ``poet prepare --ref-model``), write shards in the
same layout, then the card and ``stats.json``: the length statistics are those of the source (same rows), with
the ``reference`` block added and the shard list replaced.
"""

from __future__ import annotations

import dataclasses
import json

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from poet.pipeline.gather import GatherTagged, Spread
from poet.pipeline.metadata import file_sizes, write_metadata
from poet.pipeline.options import DEFAULT_MAX_SHARD_BYTES
from poet.pipeline.output import check_output
from poet.pipeline.pipeline import read_stats, run_staged
from poet.pipeline.plot_helper import PlotHelper
from poet.pipeline.read import RowBatch
from poet.pipeline.reference import ScoreReference, check_reference_model
from poet.pipeline.write_shards import WriteShards
from poet.transforms.errors import UserError
from poet.transforms.prepare import PreparedRow, RowOrigin
from poet.transforms.reference import ReferenceModel, reference_section
from poet.pipeline.runners import choose_runner
from poet.transforms.contract import REF_COLUMN_NAMES as REF_COLUMNS
from poet.transforms.contract import STATS_FILE, RunDescription
from poet.transforms.schema import preference_features
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
        with FileSystems.open(path) as handle:
            table = pq.read_table(handle)
        table = table.drop_columns([c for c in REF_COLUMNS if c in table.column_names])  # re-scored
        for start in range(0, table.num_rows, self.chunk_rows):
            rows = table.slice(start, self.chunk_rows).to_pylist()
            yield RowBatch(PreparedRow(RowOrigin(split, path, index, start + i), row, None) for i, row in enumerate(rows))


class _WriteScoredMetadata(beam.DoFn):
    def __init__(self, folder: str, document: dict, features, reference: ReferenceModel):
        self.folder, self.document, self.features, self.reference = folder, document, features, reference

    def process(self, parts: dict):
        shards = parts["shard"]
        splits = list(self.document["splits"])
        sizes = file_sizes(self.folder, sorted(name for _, name, _, _ in shards))
        document = {**self.document, "shards": shard_entries(splits, shards, sizes),
                    "reference": reference_section(self.reference, dict(parts["reference"]), splits)}  # fmt: skip
        write_metadata(self.folder, document, self.features)
        yield document


class ScorePreparedDataset(beam.PTransform):
    """Score the shards ``(split, index, path)`` of a prepared folder whose stats document is ``document``."""

    def __init__(self, config: ScoreConfig, shards: list[tuple[str, int, str]], document: dict, schema, features,
                 folder: str):
        super().__init__()
        self.config, self.shards, self.document = config, shards, document
        self.schema, self.features, self.folder = schema, features, folder

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
            self.folder, splits, self.schema, options.num_shards, options.max_shard_bytes or DEFAULT_MAX_SHARD_BYTES
        )
        return (
            {"shard": shards, "reference": stats}
            | "AllParts" >> GatherTagged()
            | "WriteMetadata" >> beam.ParDo(
                _WriteScoredMetadata(self.folder, self.document, self.features, self.config.reference)
            )
        )


def _source_folder(config: ScoreConfig) -> str:
    """Where the shards can be read: a local or object-store folder as is; a Hub repo is downloaded first."""
    if "://" in config.source and not config.source.startswith("hf://"):
        return config.source.rstrip("/")
    from poet.pipeline.hub import fetch_prepared

    return str(fetch_prepared(config.source, revision=config.revision))


def run(config: ScoreConfig, beam_args: list[str]) -> dict:
    """Score every shard of ``config.source`` into ``config.output``; return the new stats document."""
    check_output(config.output, config.overwrite)
    source = _source_folder(config)
    try:
        document = read_stats(source)
    except (OSError, json.JSONDecodeError):
        raise UserError(f"{config.source} has no readable {STATS_FILE}: pass a folder written by `poet prepare`") from None
    shards = [(split, index, f"{source}/{entry['file']}")
              for split, entries in sorted(document.get("shards", {}).items()) for index, entry in enumerate(entries)]
    if not shards:
        raise UserError(f"{config.source} has no shards to score")
    run = RunDescription.from_json(document.get("run"))
    features = preference_features(conversational=bool(run.conversational), include_text=run.options.include_text,
                                   reference=True)
    with FileSystems.open(shards[0][2]) as handle:
        source_columns = set(pq.read_schema(handle).names) - set(REF_COLUMNS)
    if source_columns != set(features) - set(REF_COLUMNS):
        raise UserError(f"the shards of {config.source} do not have the columns `poet prepare` writes "
                        f"({', '.join(sorted(source_columns ^ (set(features) - set(REF_COLUMNS))))} differ)")
    reference = check_reference_model(config.reference, run.tokenizer.vocab_size, _longest_sequence(document, run))
    config = dataclasses.replace(config, reference=reference)

    options = PipelineOptions(beam_args)
    with PlotHelper() as plots:  # it gets ready while the model scores
        return run_staged(
            config.output, config.overwrite, choose_runner(options, len(shards)), options,
            f"poet score: {len(shards)} shard(s) of {config.source}",
            lambda staging: "ScorePreparedDataset" >> ScorePreparedDataset(
                config, shards, document, features.arrow_schema, features, staging
            ),
            plots,
        )


def _longest_sequence(document: dict, run: RunDescription) -> int | None:
    """An upper bound of prompt + completion tokens in the folder: its max-length option, else the longest lengths."""
    if run.options.max_length:
        return run.options.max_length
    lengths = document.get("overall", {}).get("lengths", {})
    try:
        return lengths["prompt"]["max"] + max(lengths["chosen"]["max"], lengths["rejected"]["max"])
    except (KeyError, TypeError):
        return None
