"""The launcher of ``poet score``: find the source folder's shards and check them, then run
:class:`ScorePreparedDataset` staged."""

from __future__ import annotations

import dataclasses

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from poet.pipeline.launch.output import check_output
from poet.pipeline.launch.runners import choose_runner
from poet.pipeline.launch.staged import read_stats, run_staged
from poet.pipeline.steps.reference import check_reference_model
from poet.pipeline.steps.score_dataset import ScoreConfig, ScorePreparedDataset
from poet.transforms.contract import DEAD_LETTER_DIR, REF_COLUMN_NAMES, STATS_FILE, RunDescription
from poet.transforms.errors import UserError, describe
from poet.transforms.schema import preference_features


def _source_folder(config: ScoreConfig) -> str:
    """Where the shards can be read: a local or object-store folder as is; a Hub repo is downloaded first."""
    if "://" in config.source and not config.source.startswith("hf://"):
        return config.source.rstrip("/")
    from poet.pipeline.hub.download import fetch_prepared

    return str(fetch_prepared(config.source, revision=config.revision))


def run(config: ScoreConfig, options: PipelineOptions) -> dict:
    """Score every shard of ``config.source`` into ``config.output``; return the new stats document."""
    check_output(config.output, config.overwrite)
    source = _source_folder(config)
    try:
        document = read_stats(source)
    except OSError:
        raise UserError(f"{config.source} has no readable {STATS_FILE}: pass a folder written by `poet prepare`") from None
    except ValueError as err:  # damaged, foreign, or counts that cannot be
        raise UserError(f"{config.source}/{STATS_FILE} is damaged or not poet's ({describe(err)}): prepare the "
                        "folder again") from None
    shards = [(split, index, f"{source}/{entry['file']}")
              for split, entries in sorted(document.get("shards", {}).items()) for index, entry in enumerate(entries)]
    if not shards:
        raise UserError(f"{config.source} has no shards to score")
    run = RunDescription.from_json(document.get("run"))
    features = preference_features(conversational=bool(run.conversational), include_text=run.options.include_text,
                                   reference=True)
    with FileSystems.open(shards[0][2]) as handle:
        source_columns = set(pq.read_schema(handle).names) - set(REF_COLUMN_NAMES)
    if source_columns != set(features) - set(REF_COLUMN_NAMES):
        raise UserError(f"the shards of {config.source} do not have the columns `poet prepare` writes "
                        f"({', '.join(sorted(source_columns ^ (set(features) - set(REF_COLUMN_NAMES))))} differ)")
    reference = check_reference_model(config.reference, run.tokenizer.vocab_size, _longest_sequence(document, run))
    config = dataclasses.replace(config, reference=reference)

    dead_letters = [m.path for m in FileSystems.match([f"{source}/{DEAD_LETTER_DIR}/*"])[0].metadata_list]
    return run_staged(
        config.output, config.overwrite, choose_runner(options, len(shards)), options,
        f"poet score: {len(shards)} shard(s) of {config.source}",
        lambda staging: "ScorePreparedDataset" >> ScorePreparedDataset(
            config, shards, document, features.arrow_schema, features, staging, sorted(dead_letters)
        ),
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
