"""The launcher of ``poet score``: find the source folder's shards and check them, then run
:class:`ScorePreparedDataset` staged.

The launcher reads the statistics file and the schema of one shard, never the
shards themselves: the workers read them where they are, a Hub repo through
``hf://`` at one commit, on every runner."""

from __future__ import annotations

import dataclasses

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from poet.pipeline.hub.download import PreparedSource, locate_prepared
from poet.pipeline.hub.input_files import SCHEME, is_hub_path, resolve_revision
from poet.pipeline.launch.dataflow import DryRun, JobFacts, reference_facts
from poet.pipeline.launch.dataflow import dry_run as dataflow_dry_run
from poet.pipeline.launch.output import check_output
from poet.pipeline.launch.runners import check_runner, choose_runner
from poet.pipeline.launch.staged import run_staged
from poet.pipeline.steps.read import open_input
from poet.pipeline.steps.reference import check_reference_model
from poet.pipeline.steps.score_dataset import ScoreConfig, ScorePreparedDataset
from poet.transforms.contract import DEAD_LETTER_DIR, REF_COLUMN_NAMES, STATS_FILE, RunDescription
from poet.transforms.errors import UserError, describe
from poet.transforms import stats_file
from poet.transforms.schema import preference_features


def _source_folder(config: ScoreConfig, source: PreparedSource) -> str:
    """Where the workers read the shards: a local or object-store folder as is; a Hub repo through ``hf://``,
    pinned to the commit its revision points at now (so every worker reads the same shards)."""
    if source.repo_id is None:
        return str(source.folder or source.url)
    pinned = resolve_revision(source.repo_id, config.revision or source.revision or "main")
    return f"{SCHEME}datasets/{pinned.repo_id}@{pinned.revision}"


def _read_stats(source: str, config: ScoreConfig) -> dict:
    try:
        with open_input(f"{source}/{STATS_FILE}") as handle:
            text = handle.read()
    except OSError:
        raise UserError(f"{config.source} has no readable {STATS_FILE}: pass a folder written by `poet prepare`") from None
    try:
        return stats_file.loads(text)
    except ValueError as err:  # damaged, foreign, or counts that cannot be
        raise UserError(f"{config.source}/{STATS_FILE} is damaged or not poet's ({describe(err)}): prepare the "
                        "folder again") from None


def run(config: ScoreConfig, options: PipelineOptions) -> dict | DryRun:
    """Score every shard of ``config.source`` into ``config.output``; return the new stats document (a dry run:
    the job's summary)."""
    located = locate_prepared(config.source)
    shards_at = f"{SCHEME}datasets/{located.repo_id}" if located.repo_id else str(located.folder or located.url)
    worker_paths = [("the shards of", shards_at), ("--output", config.output), ("--ref-model", config.reference.name)]
    dry_run = check_runner(options, worker_paths)
    if not dry_run:
        check_output(config.output, config.overwrite)
    source = _source_folder(config, located)
    document = _read_stats(source, config)
    shards = [(split, index, f"{source}/{entry['file']}")
              for split, entries in sorted(document.get("shards", {}).items()) for index, entry in enumerate(entries)]
    if not shards:
        raise UserError(f"{config.source} has no shards to score")
    run = RunDescription.from_json(document.get("run"))
    features = preference_features(conversational=bool(run.conversational), include_text=run.options.include_text,
                                   reference=True)
    with open_input(shards[0][2]) as handle:
        source_columns = set(pq.read_schema(handle).names) - set(REF_COLUMN_NAMES)
    if source_columns != set(features) - set(REF_COLUMN_NAMES):
        raise UserError(f"the shards of {config.source} do not have the columns `poet prepare` writes "
                        f"({', '.join(sorted(source_columns ^ (set(features) - set(REF_COLUMN_NAMES))))} differ)")
    reference = check_reference_model(config.reference, run.tokenizer.vocab_size, _longest_sequence(document, run))
    config = dataclasses.replace(config, reference=reference)

    # dead letters stay home (never published), so only a folder has them; its stats count them
    dead_letters = [] if is_hub_path(source) else sorted(
        m.path for m in FileSystems.match([f"{source}/{DEAD_LETTER_DIR}/*"])[0].metadata_list)

    def job(folder: str) -> beam.PTransform:
        return "ScorePreparedDataset" >> ScorePreparedDataset(config, shards, document, features.arrow_schema,
                                                              features, folder, dead_letters)

    runner = choose_runner(options, len(shards))
    if dry_run:
        return dataflow_dry_run(runner, options, job, config.output, JobFacts(
            inside=reference_facts(reference), reads=(f"{len(shards)} shard(s) of {source}",), writes=config.output))
    return run_staged(config.output, config.overwrite, runner, options,
                      f"poet score: {len(shards)} shard(s) of {config.source}", job)


def _longest_sequence(document: dict, run: RunDescription) -> int | None:
    """An upper bound of prompt + completion tokens in the folder: its max-length option, else the longest lengths."""
    if run.options.max_length:
        return run.options.max_length
    lengths = document.get("overall", {}).get("lengths", {})
    try:
        return lengths["prompt"]["max"] + max(lengths["chosen"]["max"], lengths["rejected"]["max"])
    except (KeyError, TypeError):
        return None
