"""``DataQuality``: the data-quality rules of :mod:`transforms.quality` between reading and tokenization.

Rows never leave their chunk: a chunk (consecutive rows of one file) comes out
as at most one chunk per split, minus the rows set aside, so the shards keep
their source order (:mod:`pipeline.steps.write_shards`). Without ``--dedup``
and a ``--test-size`` count, each chunk is decided alone and nothing is
shuffled.

What needs every row, which pairs are duplicates and where the test split
ends, is decided on a first read of the input, from small fingerprints (ids
and positions, no text): grouped by a bucket of the content id, so the copies
of a pair meet on one worker. Each decision is then sent to the read (a file,
or a part of one) holding the row it is about, and a ``GroupByKey`` on the read
brings them together with the read itself, which is read a second time with its
decisions in hand. So no row waits in a shuffle for its decisions: the second
read streams into tokenization as a run without these options does, in the
same bounded memory, for the price of reading and parsing the input twice.
Without a test count, the first read is needed only when copies of a pair can
be read by different workers: in process (one worker, which reads the files in
turn) or with a single read, ``--dedup`` reads the input once and finds the
copies as the rows stream in input order.
The decisions (the first row kept, the test prompts in hash order) do not
depend on how the runner grouped or ordered anything, so the bytes are the
same on every runner.
"""

from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass

import apache_beam as beam
from apache_beam import typehints

from poet.pipeline.steps.dead_letters import DeadLetters
from poet.pipeline.steps.progress import progress
from poet.pipeline.steps.gather import Spread
from poet.pipeline.steps.read import (ReadPreferenceFiles, RowBatch, RowReader, first_row_key, open_input,
                                     unpack_spec)
from poet.transforms.decontamination import NgramIndex, eval_prompts
from poet.transforms.errors import UserError, describe, unreadable_file
from poet.transforms.progress import ProgressSettings
from poet.transforms.contract import TRAIN_SPLIT, PrepareOptions
from poet.transforms.quality import (Duplicate, FirstCopies, QualityCheck, TestSize, apply, duplicates, last_test_prompt,
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
    prompt_key: int | None
    origin: object  # RowOrigin
    read: int  # the index of the read spec holding it
    counts_for_test: bool  # a train row that the margin and decontamination rules keep


@dataclass(frozen=True)
class _LastTestPrompt:
    key: int | None


@dataclass(frozen=True)
class _Read:
    spec: tuple  # a read spec of ReadPreferenceFiles


_Keyed = typehints.KV[int, RowBatch]  # typed, so the shuffles pickle each list whole (RowBatchCoder)


class _Check(beam.DoFn):
    """A chunk of ``(RowOrigin, SourceRow)`` → one :class:`RowBatch` of :class:`CheckedRow`; each worker builds the
    n-gram index once, in ``setup`` (no side input)."""

    def __init__(self, options: PrepareOptions, conversational: bool, eval_files: list[tuple[str, str]],
                 prompt_keys: bool):
        self.options, self.conversational, self.eval_files = options, conversational, eval_files
        self.prompt_keys = prompt_keys

    def setup(self):
        options = self.options
        ngrams = build_ngram_index(self.eval_files, options.decontaminate_field) if self.eval_files else None
        self.check = QualityCheck(options.format, self.conversational, options.min_score_margin, ngrams,
                                  self.prompt_keys)

    def process(self, chunk):
        yield self.checked(chunk)

    def checked(self, chunk) -> RowBatch:
        return RowBatch(self.check.check(origin, source) for origin, source in chunk)


def _read_index(reads: list[tuple]):
    """A row's ``RowOrigin`` → the index of the read spec holding it (a file, or the part of it that starts at or
    before the row's line)."""
    starts: dict[int, list[tuple[int, int]]] = {}
    for index, spec in enumerate(reads):
        starts.setdefault(spec[1], []).append((unpack_spec(spec)[3].first, index))
    for firsts in starts.values():
        firsts.sort()

    def read_of(origin) -> int:
        firsts = starts[origin.file_index]
        return firsts[bisect.bisect_right(firsts, (origin.line, len(reads))) - 1][1]

    return read_of


def _fingerprints(rows: RowBatch, read_of):
    """A checked chunk → ``(bucket, [fingerprint])`` for each bucket of the content ids of its parsed rows."""
    buckets: dict[int, RowBatch] = {}
    read = read_of(rows[0].origin)  # a chunk never crosses reads
    for row in rows:
        if row.pair_id is not None:
            counts = row.origin.split == TRAIN_SPLIT and row.verdict is None
            buckets.setdefault(int(row.pair_id[:8], 16) % BUCKETS, RowBatch()).append(
                _Fingerprint(row.pair_id, row.prompt_key, row.origin, read, counts))
    return sorted(buckets.items())


def _bucket_duplicates(prints: list[_Fingerprint]) -> list[Duplicate]:
    return duplicates((p.pair_id, p.origin.sort_key, p.origin) for p in prints)


def _duplicates(grouped):
    """One bucket's fingerprints → ``(read, [Duplicate])`` for every read holding a later copy of a pair."""
    prints = [p for part in grouped[1] for p in part]
    read_of = {p.origin.sort_key: p.read for p in prints}
    per_read: dict[int, RowBatch] = {}
    for dup in _bucket_duplicates(prints):
        per_read.setdefault(read_of[dup.sort_key], RowBatch()).append(dup)
    return sorted(per_read.items())


def _prompt_counts(grouped, count: int, dedup: bool):
    """One bucket's fingerprints → ``(None, (pairs per prompt key, the count smallest; reads of those rows))``
    over the train rows that rules 1-3 keep."""
    prints = [p for part in grouped[1] for p in part]
    removed = {d.sort_key for d in _bucket_duplicates(prints)} if dedup else set()
    counts: dict[int, int] = {}
    reads = set()
    for p in prints:
        if p.counts_for_test and p.origin.sort_key not in removed:
            counts[p.prompt_key] = counts.get(p.prompt_key, 0) + 1
            reads.add(p.read)
    return None, (smallest_prompts(counts, count), reads)


def _last_test_prompt(grouped, count: int):
    """Every bucket's counts → ``(read, [_LastTestPrompt])`` for every read with train rows."""
    parts = list(grouped[1])
    last = _LastTestPrompt(last_test_prompt(merge_counts((counts for counts, _ in parts), count), count))
    reads = sorted({read for _, part_reads in parts for read in part_reads})
    return [(read, RowBatch([last])) for read in reads]


def _apply(rows, duplicate_of: dict, last: int | None, test_fraction: float | None,
           progress_settings: ProgressSettings):
    """Checked rows and the decisions about them → a :class:`RowBatch` of ``(RowOrigin, SourceRow)`` per split,
    and the dead letters (counted in this worker's progress)."""
    kept, dead = apply(rows, duplicate_of, test_fraction, last)
    progress(progress_settings).count_prepared(0, len(dead))
    for split in sorted(kept):
        yield RowBatch(kept[split])
    if dead:
        yield DeadLetters(sorted(dead, key=lambda letter: letter.origin.sort_key))


class _ReadDecided(_Check):
    """``(key, [[_Read...], [Duplicate...], [_LastTestPrompt]])`` → the rows of the reads, read in order and
    checked, with their decisions applied (see :func:`_apply`). With ``streamed``, rule 1 is decided here as
    the rows stream in input order: these are all the run's reads, so no copy of a pair can be anywhere else."""

    def __init__(self, options: PrepareOptions, conversational: bool, eval_files: list[tuple[str, str]],
                 reader: RowReader, test_size: TestSize | None, streamed: bool, progress: ProgressSettings):
        super().__init__(options, conversational, eval_files, prompt_keys=test_size is not None)
        self.reader, self.streamed, self.progress = reader, streamed, progress
        self.test_fraction = test_size.fraction if test_size else None

    def setup(self):
        super().setup()
        self.reader.setup()

    def process(self, element):
        items = [item for part in element[1] for item in part]
        duplicate_of = {d.sort_key: d for d in items if isinstance(d, Duplicate)}
        last = next((d.key for d in items if isinstance(d, _LastTestPrompt)), None)
        first_copies = FirstCopies() if self.streamed else None
        for spec in [item.spec for item in items if isinstance(item, _Read)]:  # in input order
            for chunk in self.reader.chunks(spec):
                rows = self.checked(chunk)
                if first_copies is not None:
                    duplicate_of = {d.sort_key: d for d in first_copies.later_copies(
                        (row.pair_id, row.origin.sort_key, row.origin) for row in rows if row.pair_id is not None)}
                yield from _apply(rows, duplicate_of, last, self.test_fraction, self.progress)


class DataQuality(beam.PTransform):
    """Read specs (``reads``, see :class:`ReadPreferenceFiles`) → ``(chunks, dead_letters)``: the rows that pass
    rules 1-4 of :mod:`transforms.quality`, split by ``--test-size``, in chunks (of ``chunk_rows``) of one split
    and one file; the rows set aside as one :class:`DeadLetters` list per chunk."""

    def __init__(self, options: PrepareOptions, conversational: bool, eval_files: list[tuple[str, str]],
                 progress: ProgressSettings, reads: list[tuple], chunk_rows: int, spread: bool):
        super().__init__()
        self.options, self.conversational, self.eval_files = options, conversational, eval_files
        self.progress, self.reads, self.chunk_rows, self.spread = progress, reads, chunk_rows, spread
        self.test_size = TestSize.parse(options.test_size) if options.test_size else None

    def _read(self, counted: bool = True) -> ReadPreferenceFiles:
        return ReadPreferenceFiles(self.reads, self.progress, self.chunk_rows, spread=self.spread,
                                   max_row_bytes=self.options.max_row_bytes, counted=counted)

    def expand(self, pbegin):
        options, test_size = self.options, self.test_size
        count = test_size.count if test_size else None
        if not options.dedup and count is None:
            fraction = test_size.fraction if test_size else None
            decided = (pbegin
                       | "ReadFiles" >> self._read()
                       | "Check" >> beam.ParDo(_Check(options, self.conversational, self.eval_files,
                                                      prompt_keys=fraction is not None)).with_output_types(RowBatch)
                       | "Apply" >> beam.FlatMap(_apply, {}, None, fraction, self.progress))
            return self._kept_and_set_aside(decided, spread=False)  # spread as they were read
        # a first read for what needs every row (the test split's count, copies of a pair in reads that
        # different workers read); otherwise copies are found as the rows stream, all reads in one group, in order
        first_read = count is not None or (self.spread and len(self.reads) > 1)
        reads = [(index, RowBatch([_Read(spec)])) for index, spec in enumerate(self.reads)]
        if not first_read:
            reads = [(0, RowBatch(_Read(spec) for spec in self.reads))]
        parts = [pbegin | "Reads" >> beam.Create(reads).with_output_types(_Keyed)]
        if first_read:
            # rules 2-3 only count for the test split's count: otherwise the first read parses and hashes alone
            first = options if count is not None else dataclasses.replace(options, min_score_margin=None)
            grouped = (pbegin
                       | "FirstRead" >> self._read(counted=False)
                       | "FirstCheck" >> beam.ParDo(_Check(first, self.conversational,
                                                           self.eval_files if count is not None else [],
                                                           prompt_keys=count is not None)).with_output_types(RowBatch)
                       | "Fingerprints" >> beam.FlatMap(_fingerprints, _read_index(self.reads)
                                                        ).with_output_types(_Keyed)
                       | "ByContentId" >> beam.GroupByKey())
            if options.dedup:
                parts.append(grouped | "Duplicates" >> beam.FlatMap(_duplicates).with_output_types(_Keyed))
            if count is not None:
                parts.append(
                    grouped
                    | "PromptCounts" >> beam.Map(_prompt_counts, count, options.dedup)
                    | "AllCounts" >> beam.GroupByKey()
                    | "LastTestPrompt" >> beam.FlatMap(_last_test_prompt, count).with_output_types(_Keyed)
                )
        reader = RowReader(self.chunk_rows, self.progress, options.max_row_bytes)
        decided = (
            tuple(parts)
            | "Decisions" >> beam.Flatten()
            | "PerRead" >> beam.GroupByKey()
            | "Read" >> beam.ParDo(_ReadDecided(options, self.conversational, self.eval_files, reader, test_size,
                                                 streamed=options.dedup and not first_read, progress=self.progress))
        )
        return self._kept_and_set_aside(decided, spread=self.spread)

    @staticmethod
    def _kept_and_set_aside(decided, spread: bool):
        kept = decided | "Kept" >> beam.Filter(lambda out: isinstance(out, RowBatch)).with_output_types(RowBatch)
        if spread:  # the chunks of one read, read on one worker, prepared on all of them
            kept = kept | "SpreadChunks" >> Spread(first_row_key)
        return kept, decided | "SetAside" >> beam.Filter(lambda out: isinstance(out, DeadLetters))


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
