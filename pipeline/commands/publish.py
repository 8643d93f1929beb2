"""Publish a prepared folder to the Hugging Face Hub as a dataset repo, in one atomic commit.

The folder must be exactly what `poet prepare` wrote: a missing, edited, swapped or extra file
(checked against its manifest) is refused before anything is sent.
Unchanged files are skipped (publishing the same folder twice makes no commit), a re-run
after a failure resumes without re-uploading what the Hub already holds, and
``dead_letter/`` is never published. The token comes from HF_TOKEN or
`hf auth login`; HF_ENDPOINT selects another Hub deployment. Progress goes to
stderr; the commit (or pull request) URL, or "no change", to stdout.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", metavar="DIR",
                        help="prepared folder written by `poet prepare --output`: a local path or an fsspec URL "
                             "such as gs://bucket/out")
    parser.add_argument("--repo-id", required=True, help="dataset repo to publish to, as user/name or org/name")
    parser.add_argument("--revision", default="main", help="branch to publish to, created from main if missing")
    parser.add_argument("--private", action="store_true",
                        help="create the repo as private (an existing repo keeps its visibility)")
    parser.add_argument("--create-pr", action="store_true",
                        help="open a pull request with the changes instead of committing to the branch")
    parser.add_argument("--message", default=None, help="commit message; when omitted: 'Publish REPO_ID with poet'")


def run(args: argparse.Namespace) -> int:
    from poet.pipeline.hub.publish import publish

    result = publish(args.folder, args.repo_id, revision=args.revision, private=args.private,
                     create_pr=args.create_pr, message=args.message)
    print(result)
    return 0
