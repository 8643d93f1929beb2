"""Tokenize, POET-truncate and shard preference pairs into a Hugging Face Hub dataset folder.

Runs on Apache Beam: locally by default (in-process FnApiRunner, no download),
on a Dask cluster (--runner DaskRunner --dask_client_address tcp://HOST:8786),
or on Dataflow (--runner DataflowRunner with --project, --region,
--temp_location and --setup_file ./setup.py). Unknown options pass to Beam.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from poet.pipeline.options import add_arguments as _add_prepare_arguments
from poet.pipeline.options import config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_prepare_arguments(parser)
    parser.epilog = (
        "Beam options pass through, e.g. --runner DaskRunner --dask_client_address tcp://HOST:8786, "
        "--runner DataflowRunner --project P --region R --temp_location gs://B/tmp, "
        "or --direct_num_workers 2 --direct_running_mode multi_processing."
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    # apache-beam without its [gcp] extra warns about BigQuery clients on import; nothing here uses them
    logging.getLogger().addFilter(lambda record: not str(record.msg).startswith("apitools not found"))
    for noisy in ("apache_beam", "transformers", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")  # "PyTorch was not found": not needed here
    config = config_from_args(args)

    from poet.pipeline.pipeline import run as run_pipeline
    from poet.transforms.stats_table import render

    document = run_pipeline(config, args.beam_args)
    print(render(document))
    print(f"\nwrote {config.output}")
    if config.push_to_hub:
        from poet.pipeline.publish import publish

        result = publish(config.output, config.push_to_hub)
        print(result)
    return 0
