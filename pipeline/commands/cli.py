"""The ``poet`` console script: one sub-command per job.

Each sub-command lives next to the code it drives and exposes two functions,
``add_arguments(parser)`` and ``run(args) -> int``; this module only wires them
together, so ``poet --help`` stays fast (heavy imports happen inside ``run``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

from poet.pipeline.commands import prepare as prepare_command
from poet.pipeline.commands import publish as publish_command
from poet.pipeline.commands import score as score_command
from poet.pipeline.commands import stats as stats_command
from poet.trainer import cli as train_command
from poet.transforms.errors import UserError, did_you_mean
from poet.transforms.terminal import printable

# sub-command -> (module, one-line help); the modules import nothing heavy until their ``run``
SUBCOMMANDS = {
    "prepare": (prepare_command, "tokenize, POET-truncate and shard preference pairs (Apache Beam)"),
    "score": (score_command, "add reference log-prob columns to a prepared folder or Hub dataset"),
    "stats": (stats_command, "print the length statistics of a prepared folder or Hub dataset"),
    "publish": (publish_command, "publish a prepared folder to the Hugging Face Hub in one atomic commit"),
    "train": (train_command, "train a causal LM with DPO, SimPO or AlphaPO on prepared shards"),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (argparse prints its usage text first), and no abbreviations:
    ``--max-len`` must not quietly mean ``--max-length`` while ``--max_length`` is refused."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UserError(f"{message} (see {self.prog} --help)")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown where they say something (not on flags, required options or unset values); the
    description and epilog keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.required or action.default is None or isinstance(action.default, bool):
            return action.help or ""
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="poet",
        description="POET preference-data pipeline: prepare, inspect, publish and train.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(
            name,
            help=help_text,
            description=(module.__doc__ or help_text).strip().splitlines()[0],
            formatter_class=_HelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(_module=module, _parser=sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    command = f"poet {argv[0]}" if argv and argv[0] in SUBCOMMANDS else "poet"  # its own parse errors say so too
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and args.command not in ("prepare", "score"):  # these hand them to Beam, which must know them
            close = did_you_mean(extra[0].split("=", 1)[0], args._parser._option_string_actions)
            hint = f"did you mean {close}?" if close else f"see {command} --help"
            raise UserError(f"unrecognized argument {extra[0]}; {hint}")
        args.beam_args = extra
        return args._module.run(args) or 0
    except UserError as err:
        print(f"{command}: error: {printable(str(err))}", file=sys.stderr)  # it may quote data or the Hub
        return 2
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away, e.g. `poet stats DIR | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141


def parse_keywords(command: str, positional: list, keywords: Mapping[str, object]) -> argparse.Namespace:
    """The arguments of ``poet COMMAND`` given as keywords (see :mod:`pipeline.commands.api`): each is a long
    option in snake_case; ``True`` is a flag given, ``False`` or ``None`` an option left out, a list an
    option repeated. Parsed by the command's own parser, so the same values are accepted and refused."""
    argv = [command, *map(str, positional)]
    for name, value in keywords.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not False and value is not None:
            argv += [f"{flag}={item}" for item in (value if isinstance(value, (list, tuple)) else [value])]
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        name = extra[0].split("=", 1)[0]
        close = did_you_mean(name, args._parser._option_string_actions)
        keyword = name.removeprefix("--").replace("-", "_")
        hint = f"did you mean {close.removeprefix('--').replace('-', '_')}?" if close else f"see poet {command} --help"
        raise UserError(f"unknown option {keyword}; {hint}")
    args.beam_args = []
    return args


def console() -> None:
    """The ``poet`` command."""
    sys.exit(main())


if __name__ == "__main__":
    console()
