"""The launcher of ``poet prepare``: check what can be checked up front, then run :class:`PrepareDataset` staged.

Everything here runs once, on the machine that starts the job: the input plan,
the runner, the tokenizer (loaded once to check it and to fingerprint it) and
the run's provenance for the card.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from poet.pipeline.hub.input_files import is_hub_path
from poet.pipeline.launch.dataflow import DryRun, JobFacts, dry_run, reference_facts
from poet.pipeline.launch.inputs import (EvalPlan, InputPlan, input_bytes, plan_eval_files, plan_inputs,
                                         read_parts)
from poet.pipeline.launch.output import check_output
from poet.pipeline.launch.runners import check_runner, choose_runner, input_parts, on_this_machine, run_in_process
from poet.pipeline.launch.staged import run_staged
from poet.pipeline.steps.prepare_dataset import PrepareDataset
from poet.pipeline.steps.progress import end_progress
from poet.pipeline.steps.tokenizer_source import TokenizerSource
from poet.transforms.contract import PrepareOptions, RunDescription, Source, SourceRepo, TokenizerInfo
from poet.transforms.errors import UserError
from poet.transforms.progress import ProgressSettings
from poet.transforms.tokenization import tokenizer_fingerprint

_VERSIONED = ("poet-data", "apache-beam", "transformers", "tokenizers", "datasets", "pyarrow")


def source_name(path: str) -> str:
    """How the card and stats.json name an input or a local tokenizer: a Hub file by its URL at the pinned
    commit, a local or object-store file by its name only (never a path of the machine that ran the job)."""
    return path if is_hub_path(path) else path.rstrip("/").rsplit("/", 1)[-1]


def describe_run(options: PrepareOptions, plan: InputPlan, tokenizer,
                 evals: EvalPlan | None = None) -> RunDescription:
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
            name=source_name(options.tokenizer) if os.path.isdir(options.tokenizer) else options.tokenizer,
            sha256=tokenizer_fingerprint(tokenizer),
            eos_token=tokenizer.eos_token,
            vocab_size=len(tokenizer),
            chat_template=bool(tokenizer.chat_template),
        ),
        options=dataclasses.replace(
            options, inputs=tuple(f"{spec.split}={source_name(spec.pattern)}" for spec in options.input_specs),
            decontaminate=tuple(name for name, _ in evals.files) if evals else (),
        ),
        versions=versions,
    )


def run(options: PrepareOptions, beam_options: PipelineOptions) -> dict | DryRun:
    """Run the whole job; return the stats document of the finished folder (a dry run: the job's summary)."""
    worker_paths = [("--input", spec.pattern) for spec in options.input_specs] + [("--output", options.output)]
    if options.reference is not None:
        worker_paths.append(("--ref-model", options.reference.name))
    dry = check_runner(beam_options, worker_paths)
    if not dry:  # a dry run writes nothing: no output to check
        check_output(options.output, options.overwrite)
    plan = plan_inputs(options)
    evals = plan_eval_files(options, source_name)
    runner = choose_runner(beam_options, len(plan.files))
    source = TokenizerSource.resolve(options.tokenizer, carry=not on_this_machine(runner))
    tokenizer = source.load()
    if plan.conversational and not tokenizer.chat_template:
        raise UserError(
            f"the data is conversational but tokenizer {options.tokenizer!r} has no chat template; "
            "use a chat tokenizer or plain-text data"
        )
    if plan.conversational and isinstance(tokenizer.chat_template, dict) and "default" not in tokenizer.chat_template:
        raise UserError(f"tokenizer {options.tokenizer!r} has named chat templates "
                        f"({', '.join(sorted(tokenizer.chat_template))}) and none named 'default', which "
                        "apply_chat_template would render; name one of them 'default'")
    if options.reference is not None:
        from poet.pipeline.steps.reference import check_reference_model

        options = dataclasses.replace(
            options, reference=check_reference_model(options.reference, len(tokenizer), options.max_length)
        )
    run_description = describe_run(options, plan, tokenizer, evals)
    progress = progress_settings(options, plan, runner, beam_options)
    reads = read_parts(plan.files, input_parts(runner, beam_options))

    def job(folder: str) -> beam.PTransform:
        return "PrepareDataset" >> PrepareDataset(options, plan, reads, source, folder, run_description, progress, evals,
                                                  spread=not run_in_process(runner, beam_options))

    if dry:
        return dry_run(runner, beam_options, job, options.output, JobFacts(
            inside=(source.describe(), *reference_facts(options.reference)),
            reads=tuple(f"{split}: {len(paths)} file(s), {paths[0]}{' ...' if len(paths) > 1 else ''}"
                        for split, paths in _files_by_split(plan).items()),
            writes=options.output,
        ))  # fmt: skip
    kind = "conversational" if plan.conversational else "plain-text"
    try:
        return run_staged(options.output, options.overwrite, runner, beam_options,
                          f"poet: {len(plan.files)} file(s), {kind} data", job)
    finally:
        end_progress()


def _files_by_split(plan: InputPlan) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {}
    for split, _, path in plan.files:
        files.setdefault(split, []).append(path)
    return files


def progress_settings(options: PrepareOptions, plan: InputPlan, runner,
                      beam_options: PipelineOptions) -> ProgressSettings:
    """Progress on this machine only (Dask and Dataflow show the same counters, Beam metrics, in their own UIs):
    one line redrawn on a terminal, with the time left, when this process is the only worker; otherwise each
    worker process logs its own counts (the rows it read, and those it prepared, which may have been read by
    another)."""
    if not on_this_machine(runner):
        return ProgressSettings(every_s=0, terminal=False)
    if run_in_process(runner, beam_options):
        return ProgressSettings(options.progress_every_s, sys.stderr.isatty(), input_bytes(plan.files))
    return ProgressSettings(options.progress_every_s, terminal=False, worker=True)
