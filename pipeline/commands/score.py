"""Add reference log-prob columns (ref_chosen_logps, ref_rejected_logps) to a prepared folder or Hub dataset.

Writes a new folder with the same layout, the two columns, and an updated card and stats.json: the same data,
scored by another SFT model, is ready for DPO without a reference model at training time. Runs on Apache Beam
like `poet prepare` (unknown options pass to Beam).
"""

from __future__ import annotations

import argparse

from poet.pipeline.commands.options import add_reference_arguments, positive_int, reference_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DIR_OR_REPO_ID",
                        help="folder written by `poet prepare` (local or gs://) or Hub dataset repo id (read through hf://)")
    parser.add_argument("--output", required=True, metavar="DIR", help="new folder (local or gs://)")
    parser.add_argument("--revision", default=None, help="Hub branch, tag or commit (repo ids only)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--batch-size", type=positive_int, default=256, help="rows per scoring chunk")
    add_reference_arguments(parser, required=True)
    parser.epilog = ("Beam options pass through, e.g. --runner DataflowRunner --project P --region R "
                     "--temp_location gs://B/tmp (add --dry_run True to build the job offline, without submitting it).")


def config_from_args(args: argparse.Namespace):
    from poet.pipeline.steps.score_dataset import ScoreConfig

    return ScoreConfig(
        source=str(args.dataset), output=args.output.rstrip("/"), reference=reference_from_args(args),
        revision=args.revision, overwrite=args.overwrite, batch_size=args.batch_size,
        ref_model_copies=args.ref_model_copies,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from poet.pipeline.commands.beam_args import check_beam_args
    from poet.pipeline.commands.logs import quiet_logging

    quiet_logging()  # before Beam is imported: its import logs "apitools not found"
    check_beam_args(args.beam_args, sorted(args._parser._option_string_actions), "poet score")

    from apache_beam.options.pipeline_options import PipelineOptions

    from poet.pipeline.launch.dataflow import DryRun
    from poet.pipeline.launch.score import run as run_score
    from poet.transforms.stats_table import render

    config = config_from_args(args)
    document = run_score(config, PipelineOptions(args.beam_args))
    if isinstance(document, DryRun):
        print(document.summary)
        return 0
    print(render(document))
    print(f"\nwrote {config.output}")
    return 0
