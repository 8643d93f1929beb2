"""``PreparePairs``: normalise, tokenize and truncate rows in batches, dead-lettering the rest."""

from __future__ import annotations

import logging
import time

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline.tokenizer_source import TokenizerSource
from transforms.prepare import DeadLetter, PairPreparer, PrepareSettings

DEAD = "dead_letters"
_log = logging.getLogger("poet")


class _PrepareBatch(beam.DoFn):
    """Loads the tokenizer once per worker, then turns each batch into rows and dead letters."""

    def __init__(self, tokenizer: TokenizerSource, settings: PrepareSettings, report_every_s: float = 10.0):
        self.tokenizer = tokenizer
        self.settings = settings
        self.report_every_s = report_every_s

    def setup(self):
        self.preparer = PairPreparer(self.tokenizer.load(), self.settings)
        self.kept = Metrics.counter("poet", "pairs_kept")
        self.dead = {}
        self.lengths = {q: Metrics.distribution("poet", f"{q}_length") for q in ("prompt", "chosen", "rejected", "poet")}
        self.done, self.started, self.last_report = 0, time.monotonic(), time.monotonic()

    def process(self, batch):
        for result in self.preparer.prepare(batch):
            if isinstance(result, DeadLetter):
                if result.reason not in self.dead:
                    self.dead[result.reason] = Metrics.counter("poet", f"dead_letter_{result.reason}")
                self.dead[result.reason].inc()
                yield beam.pvalue.TaggedOutput(DEAD, result)
            else:
                self.kept.inc()
                for quantity, metric in self.lengths.items():
                    metric.update(getattr(result.lengths, quantity))
                yield result
        self._report(len(batch))

    def _report(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last_report >= self.report_every_s:
            self.last_report = now
            rate = self.done / max(now - self.started, 1e-9)
            _log.info("poet: %s rows prepared on this worker (%.0f rows/s)", f"{self.done:,}", rate)


class PreparePairs(beam.PTransform):
    """``(RowOrigin, SourceRow)`` → main output ``PreparedRow``, tagged output ``dead_letters``."""

    def __init__(self, tokenizer: TokenizerSource, settings: PrepareSettings, batch_size: int):
        super().__init__()
        self.tokenizer = tokenizer
        self.settings = settings
        self.batch_size = batch_size

    def expand(self, rows):
        return (
            rows
            | "Batch" >> beam.BatchElements(min_batch_size=min(16, self.batch_size), max_batch_size=self.batch_size)
            | "TokenizeAndTruncate" >> beam.ParDo(_PrepareBatch(self.tokenizer, self.settings)).with_outputs(
                DEAD, main="rows"
            )
        )
