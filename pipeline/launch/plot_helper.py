"""``PlotHelper``: the card's plots, drawn by a helper process that gets ready while the pipeline runs.

At the end of every run the plots kept one core busy for about 0.8 s, 0.3 s of
it importing matplotlib, with nothing else left to do: a quarter of a small
run. The launcher starts the helper as the run starts. It imports matplotlib
on a core the start-up leaves idle (imports run on one), then waits; once
``stats.json`` exists, it draws the plots. One helper, not one per plot: on
2 cores a second one's start-up slowed the launcher's more than drawing side
by side saved (measured). The helper runs :func:`transforms.plots.render_plots`,
so the bytes are those drawn in the launcher, which is where the plots are
drawn if the helper cannot start or dies.

The helper is ``python -m poet.pipeline.launch.plot_helper``, talking pickles over its
standard input and output: a fresh interpreter that inherits no threads and
never re-runs the launcher's ``__main__`` (as ``multiprocessing`` would). Its
standard error goes nowhere: whatever stops it, the launcher then draws the
plots itself, and a real problem shows there, as one line like any other.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
import threading

from poet.transforms.plots import render_plots


class PlotHelper:
    """A helper process that draws plots; it ignores Ctrl-C (the launcher reports it and ends the helper)."""

    def __init__(self):
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}  # the modules this process sees
        try:
            with _ctrl_c_ignored():  # inherited: an ignored signal stays ignored in the process started
                self._process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=environment)
        except (OSError, TypeError):  # no process to be had here (no sys.executable...): draw in this one
            self._process = None

    def render(self, document: dict) -> dict[str, bytes]:
        """Every plot of a stats.json document: relative path -> PNG bytes (as ``render_plots(document)``)."""
        if self._process is not None:
            try:
                pickle.dump(document, self._process.stdin, pickle.HIGHEST_PROTOCOL)
                self._process.stdin.flush()
                return pickle.load(self._process.stdout)
            except (EOFError, OSError, pickle.UnpicklingError):  # it died (killed, out of memory, a bug)
                pass
        return render_plots(document)

    def close(self) -> None:
        """End the helper (it holds nothing worth finishing)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            for pipe in (self._process.stdin, self._process.stdout):
                with contextlib.suppress(OSError):  # what a dead helper was sent is still buffered: let it go
                    pipe.close()
            self._process = None

    def __enter__(self) -> PlotHelper:
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
    """The helper's life: import what drawing needs, then draw what is asked until the launcher hangs up."""
    import matplotlib.figure  # noqa: F401 - imported while nothing waits for it

    while True:
        try:
            document = pickle.load(requests)
        except EOFError:
            return
        pickle.dump(render_plots(document), replies, pickle.HIGHEST_PROTOCOL)
        replies.flush()


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
