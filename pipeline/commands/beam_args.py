"""Check the arguments ``poet prepare`` and ``poet score`` hand to Beam: Beam's own options pass, nothing else does.

Beam itself only logs "Discarding unparseable args" and runs with its defaults,
so a mistyped poet option (``--max_length 3``, ``--drop_text``) or a glob the
shell expanded into several file names would silently change the dataset. The
options Beam knows are read from its ``PipelineOptions`` subclasses, exactly as
``PipelineOptions.get_all_options`` collects them, so every runner's options
(and those of runners added later) pass through.
"""

from __future__ import annotations

import argparse
import importlib

from poet.transforms.errors import UserError, did_you_mean

# PipelineOptions subclasses defined outside apache_beam.options.pipeline_options, registered by importing them
# (a runner whose dependencies are not installed is skipped: its options cannot be used anyway)
OPTION_MODULES = ("apache_beam.runners.dask.dask_runner",)


def _beam_parser() -> tuple[argparse.ArgumentParser, list[str]]:
    """Beam's parser of all its options, and the option modules that could not be imported."""
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    missing = []
    for name in OPTION_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)

    class Parser(_BeamArgumentParser):
        def error(self, message):  # a bad value for a Beam option: one line, not Beam's usage text
            raise UserError(f"Beam option: {message}")

    parser = Parser(allow_abbrev=False)
    classes = {}
    for cls in PipelineOptions.__subclasses__():  # the same classes, deduplicated the same way, as Beam's parser
        classes.setdefault(str(cls), cls)
    for cls in classes.values():
        cls._add_argparse_args(parser)  # noqa: SLF001 - how Beam itself builds its parser
    return parser, missing


def check_beam_args(args: list[str], poet_options: list[str], command: str) -> None:
    """Raise :class:`UserError` for the first argument in ``args`` that Beam does not know.

    ``args`` are what poet's own parser left over; ``poet_options`` its option
    strings, offered as "did you mean" suggestions along with Beam's.
    """
    if not args:
        return
    parser, missing = _beam_parser()
    _, unknown = parser.parse_known_args(args)
    if not unknown:
        return
    options = [arg for arg in unknown if arg.startswith("-")]
    if options:
        name = options[0].split("=", 1)[0]
        known = poet_options + [s for s in parser._option_string_actions if s.startswith("--")]  # noqa: SLF001
        close = did_you_mean(name, known)
        hint = f"did you mean {close}?" if close else f"see {command} --help"
        if missing and not close:
            hint += f" (the options of {', '.join(missing)} are unknown: its dependencies are not installed)"
        raise UserError(f"unknown option {name}: neither poet nor Beam knows it; {hint}")
    raise UserError(
        f"unexpected argument {unknown[0]!r}: if the shell expanded a glob into several files, quote it "
        f"(--input 'raw/train*.jsonl.gz')"
    )
