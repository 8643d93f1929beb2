"""``PreparePreferencePairs``: poet's preparation of rows as a transform for a Beam pipeline of one's own.

For rows that come from anywhere Beam reads (BigQuery, a database, one's own
source): raw row dicts in any of the input formats in, the rows ``poet prepare``
writes (the same token ids) and the dead letters with their reasons out. It is
the command's own preparation (:class:`~pipeline.steps.prepare_pairs.PreparePairs`),
fed with chunks of the user's rows instead of chunks of files, and it follows
the same rules, so it runs on every runner the command runs on, Dask included.
"""

from __future__ import annotations

import typing
import uuid
from dataclasses import replace

import apache_beam as beam

from poet.pipeline.steps.prepare_pairs import PreparePairs
from poet.pipeline.steps.read import RowBatch
from poet.pipeline.steps.tokenizer_source import TokenizerSource
from poet.transforms.prepare import DeadLetter, RowOrigin
from poet.transforms.progress import ProgressSettings
from poet.transforms.readers import SourceRow

ROW_OPTIONS = ("format", "max_length", "max_prompt_length", "no_poet", "drop_text", "batch_size")
"""The options of ``poet prepare`` that act on single rows, the ones this transform takes."""


class PreparedPairs(typing.NamedTuple):
    """What :class:`PreparePreferencePairs` gives: ``rows`` (dicts with the contract's columns, as the command
    writes them) and ``dead_letters`` (dicts with the ``reason``, ``detail`` and ``row`` of
    ``dead_letter/*.jsonl``)."""

    rows: beam.PCollection
    dead_letters: beam.PCollection


class _Deal(beam.DoFn):
    """Key each row by its bundle and its place in it, so that one group holds ``chunk_rows`` rows.

    Chunks come from ``GroupByKey`` rather than from buffering rows in a DoFn:
    a buffered chunk would have to leave from ``finish_bundle``, which Beam's
    Dask runner drops. Which rows share a chunk does not change what any row
    becomes.
    """

    def __init__(self, chunk_rows: int):
        self.chunk_rows = chunk_rows

    def start_bundle(self):
        self.bundle, self.count = uuid.uuid4().hex, 0

    def process(self, record):
        self.count += 1
        yield (self.bundle, self.count // self.chunk_rows), (self.count, record)


def _chunk(keyed) -> RowBatch:
    """One group as a chunk of ``(RowOrigin, SourceRow)``; the row's place in its bundle is its "line"."""
    return RowBatch((RowOrigin("", "", 0, number), SourceRow(number, record)) for number, record in keyed[1])


def _dead_letter(letter: DeadLetter) -> dict:
    return {name: value for name, value in letter.to_json().items() if name in ("reason", "detail", "row")}


class PreparePreferencePairs(beam.PTransform):
    """Raw preference rows (dicts, in any input format) → :class:`PreparedPairs` of rows and dead letters.

    ``tokenizer`` is a local folder, ``gs://`` folder or Hub id (a local
    folder travels with the job to remote workers). ``options`` are those of
    ``poet prepare`` that act on rows (:data:`ROW_OPTIONS`), in snake_case as
    in ``poet.prepare``. Plain-text and conversational rows are both prepared;
    give one kind per PCollection (their text columns differ in type) or
    ``drop_text=True``.
    """

    def __init__(self, tokenizer, **options):
        super().__init__()
        from poet.pipeline.commands.cli import parse_keywords
        from poet.pipeline.commands.options import options_from_args
        from poet.transforms.errors import UserError

        unknown = sorted(set(options) - set(ROW_OPTIONS))
        if unknown:
            raise UserError(f"PreparePreferencePairs takes the row options {', '.join(ROW_OPTIONS)}, "
                            f"not {', '.join(unknown)}")
        args = parse_keywords("prepare", [], {"input": "-", "output": "-", "tokenizer": tokenizer, **options})
        self.options = replace(options_from_args(args), inputs=(), output="")
        self.tokenizer = TokenizerSource.resolve(str(tokenizer))

    def expand(self, records):
        chunk_rows = self.options.batch_size * PreparePairs.BATCHES_PER_CHUNK
        rows, dead_letters = (
            records
            | "Deal" >> beam.ParDo(_Deal(chunk_rows))
            | "Chunk" >> beam.GroupByKey()
            | "AsSourceRows" >> beam.Map(_chunk).with_output_types(RowBatch)
            | "Prepare" >> PreparePairs(self.tokenizer, self.options, None, ProgressSettings(every_s=0, terminal=False))
        )
        return PreparedPairs(
            rows | "Rows" >> beam.FlatMap(lambda batch: [prepared.row for prepared in batch]),
            dead_letters | "DeadLetters" >> beam.FlatMap(lambda letters: [_dead_letter(letter) for letter in letters]),
        )
