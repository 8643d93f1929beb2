"""The prepare pipeline: raw preference files in, a Hub-layout dataset folder out.

``PrepareDataset`` reads like the job: read the files, prepare the pairs, write
the shards and the dead letters, compute the length statistics, write the
card. ``run`` is the launcher around it: check everything that can be checked
up front, run the pipeline into a staging folder, draw the card's plots from
its ``stats.json`` (:mod:`pipeline.plot_helper`), then move it into place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import logging
import os
import signal
from collections.abc import Callable

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from poet.pipeline.dead_letters import WriteDeadLetters
from poet.pipeline.hub_input import is_hub_path
from poet.pipeline.inputs import InputPlan, plan_inputs
from poet.pipeline.length_stats import ComputeLengthStats
from poet.pipeline.metadata import WriteDatasetMetadata, write_bytes
from poet.pipeline.options import PrepareConfig
from poet.pipeline.output import check_output, commit, discard, staging_folder, write_manifest
from poet.pipeline.plot_helper import PlotHelper
from poet.pipeline.prepare_pairs import PreparePairs
from poet.pipeline.read import ReadPreferenceFiles
from poet.pipeline.runners import choose_runner, on_this_machine, release, run_in_process
from poet.pipeline.tokenizer_source import TokenizerSource
from poet.pipeline.write_shards import WriteShards
from poet.transforms.contract import STATS_FILE, RunDescription, RunOptions, Source, SourceRepo, TokenizerInfo
from poet.transforms.errors import InputFileError, UserError
from poet.transforms.prepare import PrepareSettings
from poet.transforms.schema import preference_features
from poet.transforms.tokenization import tokenizer_fingerprint

_log = logging.getLogger("poet")
_VERSIONED = ("poet-data", "apache-beam", "transformers", "tokenizers", "datasets", "pyarrow")


class PrepareDataset(beam.PTransform):
    """All of ``poet prepare`` as one composite transform writing into ``folder``."""

    def __init__(self, config: PrepareConfig, plan: InputPlan, tokenizer: TokenizerSource, folder: str,
                 run: RunDescription, spread: bool = True):
        super().__init__()
        self.config, self.plan, self.tokenizer, self.folder, self.run = config, plan, tokenizer, folder, run
        self.spread = spread  # spread rows over workers; pointless for one in-process worker (see run_in_process)

    def expand(self, pbegin):
        config = self.config
        features = preference_features(conversational=self.plan.conversational, include_text=config.include_text,
                                       reference=config.reference is not None)
        settings = PrepareSettings(
            format=config.format,
            conversational=self.plan.conversational,
            max_length=config.max_length,
            max_prompt_length=config.max_prompt_length,
            poet=config.poet,
            include_text=config.include_text,
        )
        # rows travel in lists (one per tokenizer batch) wherever they are shuffled: see ReadPreferenceFiles
        chunk_rows = config.batch_size * PreparePairs.BATCHES_PER_CHUNK
        row_lists, dead_letters = (
            pbegin
            | "ReadFiles" >> ReadPreferenceFiles(self.plan.files, chunk_rows, spread=self.spread)
            | "PreparePairs" >> PreparePairs(self.tokenizer, settings, config.batch_size)
        )
        reference_stats = ()
        if config.reference is not None:
            from poet.pipeline.reference import ScoreReference  # Beam's RunInference imports torch: only here

            row_lists, scores = row_lists | "ScoreReference" >> ScoreReference(config.reference, config.ref_model_copies)
            reference_stats = (scores,)
        shards = row_lists | "WriteShards" >> WriteShards(
            self.folder, config.splits, features.arrow_schema, config.num_shards, config.max_shard_bytes
        )
        dead_letter_files = dead_letters | "WriteDeadLetters" >> WriteDeadLetters(self.folder)
        stats = (row_lists, dead_letters) | "LengthStats" >> ComputeLengthStats()
        return (stats, shards, dead_letter_files, *reference_stats) | "WriteMetadata" >> WriteDatasetMetadata(
            self.folder, config.splits, self.run, features, repo_id=config.push_to_hub, reference=config.reference
        )


def source_name(path: str) -> str:
    """How the card and stats.json name an input or a local tokenizer: a Hub file by its URL at the pinned
    commit, a local or object-store file by its name only (never a path of the machine that ran the job)."""
    return path if is_hub_path(path) else path.rstrip("/").rsplit("/", 1)[-1]


def describe_run(config: PrepareConfig, plan: InputPlan, tokenizer) -> RunDescription:
    """Provenance for the card and stats.json: what went in and with what.

    No date: the same input and options give byte-identical files, so that
    publishing a re-run makes no commit."""
    versions = {}
    for package in _VERSIONED:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return RunDescription(
        sources=tuple(Source(split, source_name(path)) for split, _, path in plan.files),
        source_repos=tuple(SourceRepo(hub.repo_id, hub.revision, hub.requested) for hub in plan.hub_sources),
        conversational=plan.conversational,
        tokenizer=TokenizerInfo(
            name=source_name(config.tokenizer) if os.path.isdir(config.tokenizer) else config.tokenizer,
            sha256=tokenizer_fingerprint(tokenizer),
            eos_token=tokenizer.eos_token,
            vocab_size=len(tokenizer),
            chat_template=bool(tokenizer.chat_template),
        ),
        options=RunOptions(
            inputs=tuple(f"{spec.split}={source_name(spec.pattern)}" for spec in config.inputs),
            format=config.format,
            max_length=config.max_length,
            max_prompt_length=config.max_prompt_length,
            poet=config.poet,
            num_shards=config.num_shards,
            max_shard_bytes=config.max_shard_bytes,
            include_text=config.include_text,
            license=config.license,
        ),
        versions=versions,
    )


def read_stats(folder: str) -> dict:
    import json

    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(f"{folder}/{STATS_FILE}") as handle:
        return json.loads(handle.read())


def run(config: PrepareConfig, beam_args: list[str]) -> dict:
    """Run the whole job; return the stats document of the finished folder."""
    check_output(config.output, config.overwrite)
    with PlotHelper() as plots:  # it gets ready while the rest starts up
        return _run(config, beam_args, plots)


def _run(config: PrepareConfig, beam_args: list[str], plots: PlotHelper) -> dict:
    plan = plan_inputs(config)
    options = PipelineOptions(beam_args)
    runner = choose_runner(options, len(plan.files))
    source = TokenizerSource.resolve(config.tokenizer, carry=not on_this_machine(runner))
    tokenizer = source.load()
    if plan.conversational and not tokenizer.chat_template:
        raise UserError(
            f"the data is conversational but tokenizer {config.tokenizer!r} has no chat template; "
            "use a chat tokenizer or plain-text data"
        )
    if config.reference is not None:
        from poet.pipeline.reference import check_reference_model

        config = dataclasses.replace(
            config, reference=check_reference_model(config.reference, len(tokenizer), config.max_length)
        )
    run_description = describe_run(config, plan, tokenizer)
    kind = "conversational" if plan.conversational else "plain-text"
    return run_staged(
        config.output, config.overwrite, runner, options, f"poet: {len(plan.files)} file(s), {kind} data",
        lambda staging: "PrepareDataset" >> PrepareDataset(
            config, plan, source, staging, run_description, spread=not run_in_process(runner, options)
        ),
        plots,
    )  # fmt: skip


def run_staged(output: str, overwrite: bool, runner, options: PipelineOptions, what: str,
               job: Callable[[str], beam.PTransform], plots: PlotHelper) -> dict:
    """Run ``job(staging folder)`` on a fresh pipeline, draw the plots of its ``stats.json``, then move the
    finished folder to ``output`` (nothing is left behind if it fails or is interrupted); returns the folder's
    stats document."""
    staging = staging_folder(output)
    _log.info("%s, staging in %s", what, staging)
    try:
        with _Interruptible():
            try:
                pipeline = beam.Pipeline(runner=runner, options=options)
                _ = pipeline | job(staging)
                result = pipeline.run()
                try:
                    result.wait_until_finish()
                finally:
                    release(result)
            except Exception as err:  # a runner wraps a worker's error in its own: find an input file's problem
                problem = InputFileError.find(err)
                if problem is None:
                    raise
                raise problem from None
            document = read_stats(staging)
            for path, png in plots.render(document).items():
                write_bytes(f"{staging}/{path}", png)
            write_manifest(staging, document)
            commit(staging, output, overwrite)
    except BaseException:
        discard(staging)
        raise
    return document


class _Interruptible:
    """Ctrl-C and SIGTERM (a scheduler, ``kill``) end the run as ``KeyboardInterrupt``: staging folder removed, one line.

    The runner turns a ``KeyboardInterrupt`` raised inside a DoFn into its own
    error; having seen the signal, this turns that error back into the interruption.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.interrupted = False
        self.previous = {}

    def _interrupt(self, signum, frame):
        self.interrupted = True
        raise KeyboardInterrupt

    def __enter__(self):
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            for signum in self.SIGNALS:
                self.previous[signum] = signal.signal(signum, self._interrupt)
        return self

    def __exit__(self, kind, err, traceback):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        if self.interrupted and err is not None and not isinstance(err, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        return False
