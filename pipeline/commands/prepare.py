"""Tokenize, POET-truncate and shard preference pairs into a Hugging Face Hub dataset folder.

Runs on Apache Beam: locally by default (in-process FnApiRunner, no download),
on a Dask cluster (--runner DaskRunner --dask_client_address tcp://HOST:8786),
or on Dataflow (--runner DataflowRunner with --project, --region,
--temp_location and --setup_file ./setup.py). Beam's options pass to
Beam; an option neither poet nor Beam knows is refused.
"""

from __future__ import annotations

import argparse

from poet.pipeline.commands.beam_args import check_beam_args
from poet.pipeline.commands.logs import quiet_logging
from poet.pipeline.commands.options import add_arguments as _add_prepare_arguments
from poet.pipeline.commands.options import options_from_args
from poet.transforms.contract import PrepareOptions
from poet.transforms.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_prepare_arguments(parser)
    parser.epilog = (
        "Beam options pass through, e.g. --runner DaskRunner --dask_client_address tcp://HOST:8786, "
        "--runner DataflowRunner --project P --region R --temp_location gs://B/tmp (add --dry_run True to build "
        "the job and check it offline, without submitting it), "
        "or --direct_num_workers 2 --direct_running_mode multi_processing; an option neither poet nor Beam "
        "knows is refused. Quote globs: --input 'raw/train*.jsonl.gz'."
    )


def run(args: argparse.Namespace) -> int:
    quiet_logging()
    check_beam_args(args.beam_args, sorted(args._parser._option_string_actions), "poet prepare")
    from apache_beam.options.pipeline_options import PipelineOptions

    from poet.pipeline.launch.dataflow import DryRun
    from poet.transforms.stats_table import render

    options = options_from_args(args)
    document, published = prepare_and_publish(options, PipelineOptions(args.beam_args))
    if isinstance(document, DryRun):
        print(document.summary)
        return 0
    print(render(document))
    print(f"\nwrote {options.output}")
    if published is not None:
        print(published)
    return 0


def prepare_and_publish(options: PrepareOptions, beam_options) -> tuple[dict, object]:
    """The job of ``poet prepare`` (and ``poet.prepare``): the stats document of the folder written (with
    ``--dry_run True``, the Dataflow job's summary), and the result of publishing it with ``--push-to-hub``
    (else None)."""
    from poet.pipeline.launch.dataflow import DryRun
    from poet.pipeline.launch.prepare import run as run_pipeline

    document = run_pipeline(options, beam_options)
    if isinstance(document, DryRun) or not options.push_to_hub:  # a dry run wrote nothing to publish
        return document, None
    import shlex

    from poet.pipeline.hub.publish import publish

    try:
        return document, publish(options.output, options.push_to_hub)
    except UserError as err:
        raise UserError(f"{err}. The dataset is ready in {options.output}; to publish it, run: poet publish "
                        f"{shlex.quote(options.output)} --repo-id {options.push_to_hub}") from None
