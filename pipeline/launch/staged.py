"""Run one job into a staging folder and move it into place only when it succeeded.

Shared by ``poet prepare`` and ``poet score``: a fresh pipeline writes into
``DIR.poet-staging-*`` (:mod:`pipeline.launch.output`), the card's plots are
drawn from its ``stats.json``, the manifest is written last, and the folder is
committed; a failure or an interruption leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Callable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from poet.pipeline.launch.output import (clear_crashed_staging, commit, discard, staging_folder, write_manifest,
                                         write_problem)
from poet.pipeline.launch.runners import release, wait
from poet.pipeline.steps.file_records import write_recorded
from poet.transforms import stats_file
from poet.transforms.contract import STATS_FILE
from poet.transforms.errors import InputFileError
from poet.transforms.plots import render_plots

_log = logging.getLogger("poet")


def read_stats(folder: str) -> dict:
    """The folder's stats.json, checked (``ValueError`` when poet did not write it so: :func:`stats_file.loads`)."""
    with FileSystems.open(f"{folder}/{STATS_FILE}") as handle:
        return stats_file.loads(handle.read())


def run_staged(output: str, overwrite: bool, runner, options: PipelineOptions, what: str,
               job: Callable[[str], beam.PTransform]) -> dict:
    """Run ``job(staging folder)`` on a fresh pipeline, draw the plots of its ``stats.json``, then move the
    finished folder to ``output`` (nothing is left behind if it fails or is interrupted); returns the folder's
    stats document."""
    for folder in clear_crashed_staging(output):
        _log.warning("poet: %s is the staging folder of another run (still working, on another host, or of an "
                     "older poet): left alone; remove it with `rm -r` once no run is writing it", folder)
    staging = staging_folder(output)
    _log.info("%s, staging in %s", what, staging)
    try:
        with _Interruptible():
            try:
                pipeline = beam.Pipeline(runner=runner, options=options)
                _ = pipeline | job(staging)
                result = pipeline.run()
                try:
                    wait(result)
                finally:
                    release(result)
                document = read_stats(staging)
                for path, png in render_plots(document).items():
                    write_recorded(staging, path, png)
                write_manifest(staging, document)
                commit(staging, output, overwrite)
            except Exception as err:  # a runner wraps a worker's error in its own: find an input or output problem
                problem = InputFileError.find(err) or write_problem(err, output)
                if problem is None:
                    raise
                raise problem from None
    except BaseException:
        discard(staging)
        raise
    return document


class _Interruptible:
    """Ctrl-C, SIGTERM (a scheduler, ``kill``) and SIGHUP (the terminal closed, an ssh session lost) end the run as
    ``KeyboardInterrupt``: staging folder removed, one line.

    The runner turns a ``KeyboardInterrupt`` raised inside a DoFn into its own
    error; having seen the signal, this turns that error back into the interruption.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.interrupted = False
        self.previous = {}

    def _interrupt(self, signum, frame):
        self.interrupted = True
        raise KeyboardInterrupt

    def __enter__(self):
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            for signum in self.SIGNALS:
                self.previous[signum] = signal.signal(signum, self._interrupt)
        return self

    def __exit__(self, kind, err, traceback):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        if self.interrupted and err is not None and not isinstance(err, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        return False
