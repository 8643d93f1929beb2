"""poet as a library: each command as a function, with the command's own options as keywords.

A keyword is a long option in snake_case (``max_length=512`` is ``--max-length 512``, ``no_poet=True`` is
``--no-poet``, a list repeats an option), and it goes through the command's own parser and checks, so a
function and its command accept the same things, refuse them with the same one-line messages (raised as
:class:`~transforms.errors.UserError`) and write the same bytes. The functions print nothing; they return
what the command prints a summary of.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from poet.pipeline.commands.cli import parse_keywords
from poet.transforms.errors import UserError


def prepare(inputs: str | Path | list | Mapping[str, Any], tokenizer: str | Path, output: str | Path, *,
            pipeline_options=None, **options) -> dict:
    """``poet prepare``: ``inputs`` is a glob, a list of globs or ``{split: glob or globs}``; Beam's options go
    in ``pipeline_options`` (a ``PipelineOptions``, a dict of them or a list of flags). Returns the stats
    document (``stats.json``) of the finished folder."""
    from poet.pipeline.commands.options import options_from_args
    from poet.pipeline.commands.prepare import prepare_and_publish

    args = parse_keywords("prepare", [], {"input": input_values(inputs), "tokenizer": tokenizer, "output": output,
                                          **options})
    return prepare_and_publish(options_from_args(args), beam_options(pipeline_options, args))[0]


def score(dataset: str | Path, output: str | Path, *, pipeline_options=None, **options) -> dict:
    """``poet score``: a prepared folder or Hub dataset repo id scored by ``ref_model=``; returns the new
    stats document."""
    from poet.pipeline.commands.score import config_from_args
    from poet.pipeline.launch.score import run

    args = parse_keywords("score", [dataset], {"output": output, **options})
    return run(config_from_args(args), beam_options(pipeline_options, args))


def publish(folder: str | Path, repo_id: str, **options):
    """``poet publish``: returns the :class:`~pipeline.hub.publish.PublishResult` (its ``str`` is the line the
    command prints)."""
    from poet.pipeline.hub.publish import publish as publish_folder

    args = parse_keywords("publish", [folder], {"repo_id": repo_id, **options})
    return publish_folder(args.folder, args.repo_id, revision=args.revision, private=args.private,
                          create_pr=args.create_pr, message=args.message)


def train(data: str | Path, model: str | Path, output_dir: str | Path, **options) -> dict[str, float]:
    """``poet train``: returns the last logged metrics (train and eval)."""
    from poet.trainer.cli import config_from_args
    from poet.trainer.train import train as train_model

    args = parse_keywords("train", [], {"data": data, "model": model, "output_dir": output_dir, **options})
    return train_model(config_from_args(args))


def input_values(inputs) -> list[str]:
    """``--input`` values of a glob, a list of globs or ``{split: glob or globs}``."""
    if isinstance(inputs, Mapping):
        return [f"{split}={pattern}" for split, patterns in inputs.items() for pattern in _as_list(patterns)]
    return [str(pattern) for pattern in _as_list(inputs)]


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def beam_options(pipeline_options, args):
    """Beam's ``PipelineOptions`` from one, from a dict of them or from a list of flags (checked as the command
    checks what it hands to Beam); never from ``sys.argv``, which is the caller's."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from poet.pipeline.commands.beam_args import check_beam_args

    if isinstance(pipeline_options, PipelineOptions):
        return pipeline_options
    if isinstance(pipeline_options, Mapping):
        return PipelineOptions([], **pipeline_options)
    if isinstance(pipeline_options, str):
        raise UserError("pipeline_options takes a PipelineOptions, a dict or a list of flags, not a string")
    flags = [str(flag) for flag in pipeline_options or ()]
    check_beam_args(flags, sorted(args._parser._option_string_actions), f"poet {args.command}")
    return PipelineOptions(flags)
