"""``PreparePairs``: normalise, tokenize and truncate rows in batches, dead-lettering the rest."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from poet.pipeline.steps.progress import progress
from poet.pipeline.steps.read import RowBatch
from poet.pipeline.steps.dead_letters import DeadLetters
from poet.pipeline.steps.tokenizer_source import TokenizerSource
from poet.transforms.contract import PrepareOptions
from poet.transforms.prepare import DeadLetter, OverlappingPreparer, PairPreparer
from poet.transforms.progress import ProgressSettings


class _PrepareBatch(beam.DoFn):
    """Loads the tokenizer once per worker, then turns each chunk into lists of rows and one list of dead letters.

    The tokenizer batches of a chunk overlap (see :class:`~transforms.prepare.OverlappingPreparer`):
    the results of a batch come out while later ones are processed, and the
    last batches come out when the chunk is done. Everything leaves from
    ``process``: Beam's Dask runner drops what ``finish_bundle`` emits.
    """

    def __init__(self, tokenizer: TokenizerSource, options: PrepareOptions, conversational: bool | None,
                 progress: ProgressSettings):
        self.tokenizer = tokenizer
        self.options = options
        self.conversational = conversational
        self.progress = progress

    def setup(self):
        self.preparer = OverlappingPreparer(PairPreparer(self.tokenizer.load(), self.options, self.conversational))
        self.kept = Metrics.counter("poet", "pairs_kept")
        self.dead = {}
        self.lengths = {q: Metrics.distribution("poet", f"{q}_length") for q in ("prompt", "chosen", "rejected", "poet")}

    def process(self, chunk):
        self.preparer.discard()  # nothing carried over from a chunk that failed
        batch_size = self.options.batch_size
        dead = DeadLetters()
        for start in range(0, len(chunk), batch_size):
            batch = chunk[start:start + batch_size]
            yield from self._route(self.preparer.push(batch), dead)
        yield from self._route(self.preparer.flush(), dead)
        if dead:
            dead.sort(key=lambda letter: letter.origin.line)  # one chunk: bounded like the chunk itself
            yield dead

    def teardown(self):
        if hasattr(self, "preparer"):
            self.preparer.close()

    def _route(self, results, dead: DeadLetters):
        """Kept rows as one list; dead letters into the chunk's ``dead``."""
        rows = RowBatch()
        for result in results:
            if isinstance(result, DeadLetter):
                if result.reason not in self.dead:
                    self.dead[result.reason] = Metrics.counter("poet", f"dead_letter_{result.reason}")
                self.dead[result.reason].inc()
                dead.append(result)
            else:
                rows.append(result)
        progress(self.progress).count_prepared(len(rows), len(results) - len(rows))
        if rows:
            self._count(rows)
            yield rows

    def _count(self, rows) -> None:
        self.kept.inc(len(rows))
        for quantity, metric in self.lengths.items():
            for row in rows:
                metric.update(getattr(row.lengths, quantity))


class PreparePairs(beam.PTransform):
    """Chunks of ``(RowOrigin, SourceRow)`` → ``(row_lists, dead_letters)``: lists (:class:`RowBatch`) of
    ``PreparedRow``, and per chunk with any, its ``DeadLetter`` list (:class:`DeadLetters`).

    Each chunk is prepared in tokenizer batches of at most ``options.batch_size`` rows;
    chunks of ``BATCHES_PER_CHUNK`` batches keep the tokenizer busy. One ParDo
    emits both kinds and two filters split them: Beam's Dask runner does not
    separate the tagged outputs of a ParDo.
    """

    BATCHES_PER_CHUNK = 8

    def __init__(self, tokenizer: TokenizerSource, options: PrepareOptions, conversational: bool | None,
                 progress: ProgressSettings):
        super().__init__()
        self.tokenizer = tokenizer
        self.options = options
        self.conversational = conversational
        self.progress = progress

    def expand(self, chunks):
        prepared = chunks | "TokenizeAndTruncate" >> beam.ParDo(
            _PrepareBatch(self.tokenizer, self.options, self.conversational, self.progress)
        )
        return (
            prepared | "Kept" >> beam.Filter(lambda output: isinstance(output, RowBatch)).with_output_types(RowBatch),
            prepared | "SetAside" >> beam.Filter(lambda output: isinstance(output, DeadLetters)),
        )
