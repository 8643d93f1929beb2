"""The progress of the worker in this process, shared by its read and prepare steps (see :mod:`transforms.progress`).

One object per process, because the two steps are separate DoFns: in the
in-process run they are the whole job and its terminal line; a worker process
reports its own share. The launcher ends the line when the run is over.
"""

from __future__ import annotations

import sys

from poet.transforms.progress import Progress, ProgressSettings

_current: Progress | None = None


def progress(settings: ProgressSettings) -> Progress:
    """This process's progress for a run with ``settings``, made by the first step that asks."""
    global _current
    if _current is None or _current.settings != settings:
        _current = Progress(settings, sys.stderr)
    return _current


def end_progress() -> None:
    """End the run's terminal line, if one is showing in this process, and forget its counts."""
    global _current
    if _current is not None:
        _current.end()
        _current = None
