"""Print the length statistics of a prepared folder, a gs:// folder or a Hub dataset repo id."""

from __future__ import annotations

import argparse
import json

from poet.transforms.contract import STATS_FILE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DIR_OR_REPO_ID", help="prepared folder (local or fsspec URL) or Hub repo id")
    parser.add_argument("--revision", default=None, help="Hub branch, tag or commit (repo ids only)")
    parser.add_argument("--json", action="store_true", help=f"print the raw {STATS_FILE} instead of tables")


def run(args: argparse.Namespace) -> int:
    from poet.pipeline.hub.download import fetch_prepared
    from poet.transforms import stats_file
    from poet.transforms.errors import UserError, describe
    from poet.transforms.stats_table import render

    folder = fetch_prepared(args.dataset, revision=args.revision, only=(STATS_FILE,))  # never the shards
    path = folder / STATS_FILE
    if not path.is_file():
        raise UserError(f"{args.dataset} has no {STATS_FILE}; is it a folder written by 'poet prepare'?")
    try:
        document = stats_file.loads(path.read_bytes())
        text = json.dumps(document, indent=2) if args.json else render(document)
    except Exception as err:  # noqa: BLE001 - truncated, edited or foreign JSON: one line, not a traceback
        raise UserError(f"{path} is damaged or not poet's ({describe(err)}); prepare the folder again") from None
    print(text)
    return 0
