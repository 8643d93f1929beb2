"""``PlotPool``: the card's plots, drawn by helper processes that get ready while the pipeline runs.

At the end of every run the plots kept one core busy for about 0.8 s, 0.3 s of
it importing matplotlib, with nothing else left to do: a quarter of a small
run. The launcher starts the helpers as the run starts. Each imports
matplotlib on a core the start-up leaves idle (imports run on one), then
waits; once ``stats.json`` exists, the helpers draw their shares of the plots
side by side. They run :func:`transforms.plots.render_plots`, so the bytes are
those drawn in the launcher, which is where the plots are drawn if a helper
cannot start or dies.

A helper is ``python -m poet.pipeline.plot_pool``, talking pickles over its
standard input and output: a fresh interpreter that inherits no threads and
never re-runs the launcher's ``__main__`` (as ``multiprocessing`` would).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
import threading

from poet.transforms.plots import plot_list, render_plots


class PlotPool:
    """Helper processes that draw plots; they ignore Ctrl-C (the launcher reports it and ends them)."""

    def __init__(self, processes: int = 2):
        self._helpers: list[subprocess.Popen] = []
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}  # the modules this process sees
        try:
            with _ctrl_c_ignored():  # inherited: an ignored signal stays ignored in the processes started
                for _ in range(processes):
                    self._helpers.append(subprocess.Popen(
                        [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        env=environment))
        except (OSError, TypeError):  # no processes to be had here (no sys.executable...): draw in this one
            self.close()

    def render(self, document: dict) -> dict[str, bytes]:
        """Every plot of a stats.json document: relative path -> PNG bytes (as ``render_plots(document)``)."""
        paths = plot_list(document)
        asked = [(helper, paths[i::len(self._helpers)]) for i, helper in enumerate(self._helpers)]
        asked = [(helper, share) for helper, share in asked if share]
        try:
            for helper, share in asked:
                pickle.dump((document, share), helper.stdin, pickle.HIGHEST_PROTOCOL)
                helper.stdin.flush()
            drawn = {path: png for helper, _ in asked for path, png in pickle.load(helper.stdout).items()}
            if set(drawn) == set(paths):
                return {path: drawn[path] for path in paths}
        except (EOFError, OSError, pickle.UnpicklingError):  # a helper died (killed, out of memory, a bug)
            pass
        return render_plots(document)

    def close(self) -> None:
        """End the helpers (they hold nothing worth finishing)."""
        for helper in self._helpers:
            helper.kill()
            helper.wait()
            helper.stdin.close()
            helper.stdout.close()
        self._helpers = []

    def __enter__(self) -> PlotPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def _ctrl_c_ignored():
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _serve(requests, replies) -> None:
    """A helper's life: import what drawing needs, then draw what is asked until the launcher hangs up."""
    import matplotlib.figure  # noqa: F401 - imported while nothing waits for it

    while True:
        try:
            document, paths = pickle.load(requests)
        except EOFError:
            return
        pickle.dump(render_plots(document, paths), replies, pickle.HIGHEST_PROTOCOL)
        replies.flush()


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
