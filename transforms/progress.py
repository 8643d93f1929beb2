"""Progress of a long run: rows read, kept and dead-lettered, the rate and an estimated time left.

Beam-free: the pipeline's read and prepare steps feed the counts of the worker
they run in (:mod:`pipeline.progress`), this module decides when to show them
and how. The total is estimated from the bytes of the input files read so far
against their sizes (compressed bytes for ``.gz``), since the row count of a
file is unknown until it has been read.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TextIO


@dataclass(frozen=True)
class ProgressSettings:
    every_s: float  # seconds between two reports; 0: never report
    terminal: bool  # one line redrawn in place (a terminal) rather than a log line per report
    total_bytes: int | None = None  # of all input files; None: no estimate of what is left
    worker: bool = False  # one worker process of several: its lines say which


@dataclass
class Progress:
    """The counts of one worker, and its reports to ``stream``."""

    settings: ProgressSettings
    stream: TextIO
    read: int = 0
    kept: int = 0
    dead: int = 0
    bytes_done: int = 0
    started: float = field(default_factory=time.monotonic)
    last_report: float | None = None
    drawn: bool = False  # a terminal line is showing and must be ended before anything else is printed

    def count_read(self, rows: int, bytes_done: int) -> None:
        self.read += rows
        self.bytes_done += bytes_done

    def count_prepared(self, kept: int, dead: int, now: float | None = None) -> None:
        self.kept += kept
        self.dead += dead
        self.report(now)

    def report(self, now: float | None = None) -> None:
        """Show the counts if the last report is ``every_s`` old (the first one ``every_s`` after the start)."""
        now = time.monotonic() if now is None else now
        if not self.settings.every_s or now - (self.last_report or self.started) < self.settings.every_s:
            return
        self.last_report = now
        if self.settings.terminal:
            self.stream.write(f"\r{self.line(now)}\x1b[K")
            self.drawn = True
        else:
            self.stream.write(self.line(now) + "\n")
        self.stream.flush()

    def end(self, now: float | None = None) -> None:
        """Redraw a terminal line that is showing with the final counts and end it, so that what is printed next
        starts on its own line."""
        if self.drawn:
            now = time.monotonic() if now is None else now
            self.stream.write(f"\r{self.line(now)}\x1b[K\n")
            self.stream.flush()
            self.drawn = False

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = (self.kept + self.dead) / elapsed  # rows prepared: a worker may prepare rows another one read
        who = f"poet worker {os.getpid()}" if self.settings.worker else "poet"
        text = (f"{who}: {self.read:,} rows read, {self.kept:,} kept, {self.dead:,} dead-lettered, "
                f"{rate:,.0f} rows/s")
        total = self.settings.total_bytes
        if total and self.bytes_done:
            done = min(self.bytes_done / total, 1.0)
            left = elapsed * (1 - done) / done
            text += f", {done:.0%} of the input, about {_duration(left)} left"
        return text


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
