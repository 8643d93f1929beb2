"""``DataQuality``: the data-quality rules of :mod:`transforms.quality` between reading and tokenization.

Rows never leave their chunk: a chunk (consecutive rows of one file) comes out
as at most one chunk per split, minus the rows set aside, so the shards keep
their source order (:mod:`pipeline.steps.write_shards`). What needs every row, which
pairs are duplicates and where the test split ends, is decided from small
fingerprints (ids and positions, no text): grouped by a bucket of the content
id, so the copies of a pair meet on one worker; then each decision is sent to
the chunk of the row it is about, and a ``GroupByKey`` on the chunk brings
them together. Without ``--dedup`` and a ``--test-size`` count, each chunk is
decided alone and nothing is shuffled. The decisions (the first row kept, the
test prompts in hash order) do not depend on how the runner grouped or ordered
anything, so the bytes are the same on every runner.
"""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam

from poet.pipeline.steps.dead_letters import DeadLetters
from poet.pipeline.steps.progress import progress
from poet.pipeline.steps.read import RowBatch, open_input
from poet.transforms.decontamination import NgramIndex, eval_prompts
from poet.transforms.errors import UserError, describe, unreadable_file
from poet.transforms.progress import ProgressSettings
from poet.transforms.contract import TRAIN_SPLIT, PrepareOptions
from poet.transforms.quality import (Duplicate, QualityCheck, TestSize, apply, duplicates, last_test_prompt,
                                     merge_counts, smallest_prompts)
from poet.transforms.reasons import Reason

BUCKETS = 64  # fingerprint groups: any number gives the same decisions; enough to spread over workers


def build_ngram_index(eval_files: list[tuple[str, str]], field: str | None) -> NgramIndex:
    """The n-grams of every ``(name, path)`` eval file, in order (on the launcher to check them, in each worker's
    ``setup`` to use them)."""
    index = NgramIndex()
    for name, path in eval_files:
        try:
            with open_input(path) as stream:
                index.add(name, eval_prompts(path, stream, name, field))
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001 - any problem reading an eval file is one line naming it
            raise UserError(unreadable_file(path, describe(err))) from None
    return index


@dataclass(frozen=True)
class _Fingerprint:
    """What the decisions need of a parsed row: its ids and where it is."""

    pair_id: str
    prompt_key: int
    origin: object  # RowOrigin
    chunk: tuple[int, int]  # the sort key of its chunk's first row
    counts_for_test: bool  # a train row that the margin and decontamination rules keep


@dataclass(frozen=True)
class _LastTestPrompt:
    key: int | None


@dataclass(frozen=True)
class _Chunk:
    """A checked chunk on its way to its decisions (a class of its own, told apart from them after the group)."""

    rows: list


class _Check(beam.DoFn):
    """A chunk of ``(RowOrigin, SourceRow)`` → one :class:`RowBatch` of :class:`CheckedRow`; each worker builds the
    n-gram index once, in ``setup`` (no side input)."""

    def __init__(self, options: PrepareOptions, conversational: bool, eval_files: list[tuple[str, str]]):
        self.options, self.conversational, self.eval_files = options, conversational, eval_files

    def setup(self):
        options = self.options
        ngrams = build_ngram_index(self.eval_files, options.decontaminate_field) if self.eval_files else None
        self.check = QualityCheck(options.format, self.conversational, options.min_score_margin, ngrams)

    def process(self, chunk):
        yield RowBatch(self.check.check(origin, source) for origin, source in chunk)


def _fingerprints(rows: RowBatch):
    """A checked chunk → ``(bucket, [fingerprint])`` for each bucket of the content ids of its parsed rows."""
    buckets: dict[int, list[_Fingerprint]] = {}
    chunk = rows[0].origin.sort_key
    for row in rows:
        if row.pair_id is not None:
            counts = row.origin.split == TRAIN_SPLIT and row.verdict is None
            buckets.setdefault(int(row.pair_id[:8], 16) % BUCKETS, []).append(
                _Fingerprint(row.pair_id, row.prompt_key, row.origin, chunk, counts))
    return sorted(buckets.items())


def _bucket_duplicates(prints: list[_Fingerprint]) -> list[Duplicate]:
    return duplicates((p.pair_id, p.origin.sort_key, p.origin) for p in prints)


def _duplicates(grouped):
    """One bucket's fingerprints → ``(chunk, Duplicate)`` for every later copy of a pair."""
    prints = [p for part in grouped[1] for p in part]
    chunk_of = {p.origin.sort_key: p.chunk for p in prints}
    return [(chunk_of[dup.sort_key], dup) for dup in _bucket_duplicates(prints)]


def _prompt_counts(grouped, count: int, dedup: bool):
    """One bucket's fingerprints → ``(None, (pairs per prompt key, the count smallest; chunks of those rows))``
    over the train rows that rules 1-3 keep."""
    prints = [p for part in grouped[1] for p in part]
    removed = {d.sort_key for d in _bucket_duplicates(prints)} if dedup else set()
    counts: dict[int, int] = {}
    chunks = set()
    for p in prints:
        if p.counts_for_test and p.origin.sort_key not in removed:
            counts[p.prompt_key] = counts.get(p.prompt_key, 0) + 1
            chunks.add(p.chunk)
    return None, (smallest_prompts(counts, count), chunks)


def _last_test_prompt(grouped, count: int):
    """Every bucket's counts → ``(chunk, _LastTestPrompt)`` for every chunk with train rows."""
    parts = list(grouped[1])
    last = _LastTestPrompt(last_test_prompt(merge_counts((counts for counts, _ in parts), count), count))
    chunks = sorted({chunk for _, part_chunks in parts for chunk in part_chunks})
    return [(chunk, last) for chunk in chunks]


class _Apply(beam.DoFn):
    """A checked chunk and its decisions → a :class:`RowBatch` of ``(RowOrigin, SourceRow)`` per split, and the
    dead letters (counted in this worker's progress). Input: a checked chunk alone, or ``(chunk key, [checked
    chunk, Duplicate..., _LastTestPrompt])``."""

    def __init__(self, test_fraction: float | None, joined: bool, progress: ProgressSettings):
        self.test_fraction, self.joined, self.progress = test_fraction, joined, progress

    def process(self, element):
        if not self.joined:
            rows, decisions = element, []
        else:
            decisions = list(element[1])
            rows = next(part.rows for part in decisions if isinstance(part, _Chunk))
        duplicate_of = {d.sort_key: d for d in decisions if isinstance(d, Duplicate)}
        last = next((d.key for d in decisions if isinstance(d, _LastTestPrompt)), None)
        kept, dead = apply(rows, duplicate_of, self.test_fraction, last)
        progress(self.progress).count_prepared(0, len(dead))
        for split in sorted(kept):
            yield RowBatch(kept[split])
        if dead:
            yield DeadLetters(sorted(dead, key=lambda letter: letter.origin.sort_key))


class DataQuality(beam.PTransform):
    """Chunks of ``(RowOrigin, SourceRow)`` → ``(chunks, dead_letters)``: the rows that pass rules 1-4 of
    :mod:`transforms.quality`, split by ``--test-size``, in chunks of one split and one file; the rows set aside as
    one :class:`DeadLetters` list per chunk."""

    def __init__(self, options: PrepareOptions, conversational: bool, eval_files: list[tuple[str, str]],
                 progress: ProgressSettings):
        super().__init__()
        self.check = _Check(options, conversational, eval_files)
        self.progress = progress
        self.dedup = options.dedup
        self.test_size = TestSize.parse(options.test_size) if options.test_size else None

    def expand(self, chunks):
        checked = chunks | "Check" >> beam.ParDo(self.check).with_output_types(RowBatch)
        fraction = self.test_size.fraction if self.test_size else None
        count = self.test_size.count if self.test_size else None
        if not self.dedup and count is None:
            decided = checked | "Apply" >> beam.ParDo(_Apply(fraction, False, self.progress))
        else:
            grouped = checked | "Fingerprints" >> beam.FlatMap(_fingerprints) | "ByContentId" >> beam.GroupByKey()
            parts = [checked | "ByChunk" >> beam.Map(lambda rows: (rows[0].origin.sort_key, _Chunk(rows)))]
            if self.dedup:
                parts.append(grouped | "Duplicates" >> beam.FlatMap(_duplicates))
            if count is not None:
                parts.append(
                    grouped
                    | "PromptCounts" >> beam.Map(_prompt_counts, count, self.dedup)
                    | "AllCounts" >> beam.GroupByKey()
                    | "LastTestPrompt" >> beam.FlatMap(_last_test_prompt, count)
                )
            decided = (
                tuple(parts)
                | "Decisions" >> beam.Flatten()
                | "PerChunk" >> beam.GroupByKey()
                | "Apply" >> beam.ParDo(_Apply(fraction, True, self.progress))
            )
        return (
            decided | "Kept" >> beam.Filter(lambda out: isinstance(out, RowBatch)).with_output_types(RowBatch),
            decided | "SetAside" >> beam.Filter(lambda out: isinstance(out, DeadLetters)),
        )


class CountContaminated(beam.PTransform):
    """Lists of dead letters (:class:`DeadLetters`) → ``(eval source, pairs it contaminated)`` for every source
    that matched one."""

    def expand(self, dead_letters):
        return (
            dead_letters
            | "Contaminated" >> beam.FlatMap(lambda letters: [d for d in letters
                                                              if d.reason == Reason.CONTAMINATED.value])
            | "BySource" >> beam.Map(lambda d: (dict(d.extra)["eval_source"], 1))
            | "Count" >> beam.CombinePerKey(sum)
        )
