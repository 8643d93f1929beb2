"""Tokenize, POET-truncate and shard preference pairs into a Hugging Face Hub dataset folder.

Runs on Apache Beam: locally by default (in-process FnApiRunner, no download),
on a Dask cluster (--runner DaskRunner --dask_client_address tcp://HOST:8786),
or on Dataflow (--runner DataflowRunner with --project, --region,
--temp_location and --setup_file ./setup.py). Beam's options pass to
Beam; an option neither poet nor Beam knows is refused.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from poet.pipeline.options import add_arguments as _add_prepare_arguments
from poet.pipeline.beam_args import check_beam_args
from poet.pipeline.options import config_from_args
from poet.transforms.errors import InputFileError, UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_prepare_arguments(parser)
    parser.epilog = (
        "Beam options pass through, e.g. --runner DaskRunner --dask_client_address tcp://HOST:8786, "
        "--runner DataflowRunner --project P --region R --temp_location gs://B/tmp, "
        "or --direct_num_workers 2 --direct_running_mode multi_processing; an option neither poet nor Beam "
        "knows is refused. Quote globs: --input 'raw/train*.jsonl.gz'."
    )


def _worth_showing(record: logging.LogRecord) -> bool:
    """Hide what would repeat or mislead: the runner's traceback of an input file's problem or of an interruption
    (poet says each in one line), apache-beam's warning, without its [gcp] extra, about BigQuery clients
    nothing here uses, and RunInference's (``--ref-model``) that it cannot measure memory without its optional
    model manager."""
    message = str(record.msg)
    return not (message.startswith(("apitools not found", "KeyboardInterrupt", "Resource module is not available"))
                or InputFileError.MARKER in message
                or (record.exc_info and InputFileError.MARKER in str(record.exc_info[1])))


def quiet_logging() -> None:
    """Progress lines from poet on stderr; the libraries' chatter only when it is a warning."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_worth_showing)
    for noisy in ("apache_beam", "transformers", "httpx", "httpx2", "urllib3"):  # httpx2: huggingface-hub 2.x
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")  # "PyTorch was not found": not needed here


def run(args: argparse.Namespace) -> int:
    quiet_logging()
    check_beam_args(args.beam_args, sorted(args._parser._option_string_actions), "poet prepare")
    config = config_from_args(args)

    from poet.pipeline.pipeline import run as run_pipeline
    from poet.transforms.stats_table import render

    document = run_pipeline(config, args.beam_args)
    print(render(document))
    print(f"\nwrote {config.output}")
    if config.push_to_hub:
        import shlex

        from poet.pipeline.publish import publish

        try:
            result = publish(config.output, config.push_to_hub)
        except UserError as err:
            raise UserError(f"{err}. The dataset is ready in {config.output}; to publish it, run: poet publish "
                            f"{shlex.quote(config.output)} --repo-id {config.push_to_hub}") from None
        print(result)
    return 0
