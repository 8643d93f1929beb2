"""From raw source rows to shard rows or dead letters: the per-row logic of the pipeline.

Beam-free so it can be tested (and reused) on its own: the pipeline's DoFn only
feeds it batches and routes what comes out.

No row ends the job. Each phase names the reason its unexpected exceptions
become (:func:`~transforms.reasons.rejects_as`); a phase that works on a whole
batch (rendering, encoding) and raises is run again one row at a time
(:meth:`PairPreparer.one_by_one`), so only the rows that raise are set aside.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from poet.transforms.contract import PrepareOptions
from poet.transforms.formats import PreferencePair, normalize
from poet.transforms.readers import SourceRow
from poet.transforms.errors import describe
from poet.transforms.reasons import Reason, RowRejected, rejects_as
from poet.transforms.schema import to_row
from poet.transforms.stats import PairLengths
from poet.transforms.tokenization import PairTokenizer, TokenizedPair
from poet.transforms.truncation import TruncatedPair, truncate_pair


@dataclass(frozen=True)
class RowOrigin:
    split: str
    file: str
    file_index: int
    line: int

    @property
    def sort_key(self) -> tuple[int, int]:
        return (self.file_index, self.line)


@dataclass(frozen=True)
class PreparedRow:
    origin: RowOrigin
    row: dict
    lengths: PairLengths


@dataclass(frozen=True)
class DeadLetter:
    origin: RowOrigin
    reason: str
    detail: str
    source: Any  # the original row, or the raw text of an unparsable line
    extra: tuple[tuple[str, str], ...] = ()  # named parts of the detail (the kept id of a duplicate, the eval source...)

    def to_json(self) -> dict:
        return {
            "file": self.origin.file,
            "line": self.origin.line,
            "reason": self.reason,
            "detail": self.detail,
            **dict(self.extra),
            "row": self.source,
        }

    def to_json_line(self) -> str:
        """One line of strict JSON; a row that cannot be written as UTF-8 text (lone surrogates) is written
        ASCII-escaped, NaN and infinities (which strict JSON has not) as the strings ``"NaN"``, ``"Infinity"``,
        ``"-Infinity"``, and a row too deep to serialise as its ``repr``."""
        document = self.to_json()
        try:
            try:
                line = json.dumps(document, ensure_ascii=False, default=str, allow_nan=False)
            except ValueError:  # a float strict JSON cannot hold (nesting too deep is a RecursionError)
                document = {**document, "row": _finite(self.source)}
                line = json.dumps(document, ensure_ascii=False, default=str, allow_nan=False)
            line.encode("utf-8")
        except UnicodeEncodeError:
            line = json.dumps(document, default=str, allow_nan=False)
        except (RecursionError, ValueError) as err:
            line = json.dumps({**self.to_json(), "row": repr(self.source)[:100_000], "row_error": describe(err)})
        return line + "\n"


def _finite(value: Any) -> Any:
    """``value`` with NaN and the infinities as strings (in JSON's own spelling), for strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)  # "NaN", "Infinity", "-Infinity"
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _lengths(ids: TokenizedPair, truncated: TruncatedPair, eos_id: int) -> PairLengths:
    """Lengths for the statistics; a completion "lost its EOS" when truncation removed every EOS it had."""
    room = truncated.completion_room
    return PairLengths(
        prompt=truncated.prompt_length,
        chosen=truncated.chosen_length_orig,
        rejected=truncated.rejected_length_orig,
        chosen_capped=min(truncated.chosen_length_orig, room),
        rejected_capped=min(truncated.rejected_length_orig, room),
        poet=truncated.poet_length,
        chosen_kept=len(truncated.chosen_ids),
        rejected_kept=len(truncated.rejected_ids),
        chosen_lost_eos=eos_id in ids.chosen_ids and eos_id not in truncated.chosen_ids,
        rejected_lost_eos=eos_id in ids.rejected_ids and eos_id not in truncated.rejected_ids,
    )


def parse(source: SourceRow, fmt: str | None, conversational: bool | None) -> PreferencePair:
    """The first step of every row: its TRL-form pair, or :class:`RowRejected` (unparsable line, invalid pair,
    a pair of the other kind than the run's; ``conversational`` None: either kind)."""
    if source.pair is not None:
        return source.pair
    if source.reason is not None:
        raise RowRejected(source.reason, source.error)
    pair = normalize(source.record, fmt)
    if conversational is not None and pair.conversational != conversational:
        kind = "conversational" if pair.conversational else "plain-text"
        raise RowRejected(Reason.MIXED_KINDS, f"a {kind} pair in a dataset of the other kind")
    return pair


class PairPreparer:
    """Normalise, tokenize and truncate a batch of source rows, all of one kind (``conversational`` or not;
    None: rows of either kind)."""

    def __init__(self, tokenizer, options: PrepareOptions, conversational: bool | None):
        self.pair_tokenizer = PairTokenizer(tokenizer)
        self.options = options
        self.conversational = conversational

    def _normalize(self, source: SourceRow) -> PreferencePair:
        return parse(source, self.options.format, self.conversational)

    # Three phases: ``stage`` and ``finish`` are Python, ``pair_tokenizer.encode_staged`` runs in the
    # Rust tokenizer between them, so it can run on one batch while Python works on the next
    # (see :class:`OverlappingPreparer`). Any of them may raise for the batch: then use ``one_by_one``.

    def stage(self, batch: list[tuple[RowOrigin, SourceRow]]) -> "_StagedBatch":
        """Normalise the rows (invalid ones become dead letters) and render the texts to encode."""
        dead: list[DeadLetter] = []
        valid: list[tuple[RowOrigin, SourceRow, PreferencePair]] = []
        for origin, source in batch:
            try:
                valid.append((origin, source, self._normalize(source)))
            except RowRejected as rejected:
                dead.append(_dead(origin, source, rejected))
        with rejects_as(Reason.TEMPLATE_ERROR):
            texts = self.pair_tokenizer.stage([pair for _, _, pair in valid])
        return _StagedBatch(dead, valid, texts)

    def encode(self, staged: "_StagedBatch") -> list[list[int]]:
        with rejects_as(Reason.UNEXPECTED_ERROR):
            return self.pair_tokenizer.encode_staged(staged.texts)

    def finish(self, staged: "_StagedBatch", ids: list[list[int]]) -> list[PreparedRow | DeadLetter]:
        """Truncate the tokenized pairs and build the shard rows; dead letters first, then rows in order."""
        options = self.options
        results: list[PreparedRow | DeadLetter] = list(staged.dead)
        with rejects_as(Reason.UNEXPECTED_ERROR):
            tokenized = self.pair_tokenizer.assemble(staged.texts, ids)
        eos_id = self.pair_tokenizer.eos_token_id
        for (origin, source, pair), pair_ids in zip(staged.valid, tokenized):
            try:
                with rejects_as(Reason.UNEXPECTED_ERROR):
                    truncated = truncate_pair(
                        pair_ids, max_length=options.max_length, max_prompt_length=options.max_prompt_length,
                        poet=options.poet,
                    )
                    row = to_row(pair, truncated, include_text=options.include_text)
                    lengths = _lengths(pair_ids, truncated, eos_id)
            except RowRejected as rejected:
                results.append(_dead(origin, source, rejected))
                continue
            results.append(PreparedRow(origin, row, lengths))
        return results

    def one_by_one(self, batch: list[tuple[RowOrigin, SourceRow]]) -> list[PreparedRow | DeadLetter]:
        """The batch after a batch-wide phase raised: each row alone, so only the rows that raise are set aside."""
        results: list[PreparedRow | DeadLetter] = []
        for origin, source in batch:
            try:
                staged = self.stage([(origin, source)])
                results.extend(self.finish(staged, self.encode(staged)))
            except RowRejected as rejected:
                results.append(_dead(origin, source, rejected))
        return results


def _dead(origin: RowOrigin, source: SourceRow, rejected: RowRejected) -> DeadLetter:
    """The dead letter of a row: the parsed row, or the raw text of a line that could not be parsed."""
    return DeadLetter(origin, rejected.reason.value, rejected.detail,
                      source.raw if source.reason is not None else source.record)


@dataclass(frozen=True)
class _StagedBatch:
    dead: list[DeadLetter]
    valid: list[tuple[RowOrigin, SourceRow, PreferencePair]]
    texts: Any  # the tokenizer's staged texts (transforms.tokenization._Staged)


class OverlappingPreparer:
    """A :class:`PairPreparer` for a stream of batches, tokenizing batches while Python works on the others.

    The Rust tokenizer releases the GIL, so while it encodes batches ``i`` and
    ``i + 1`` in a helper thread, this thread renders batch ``i + 2`` and
    truncates batch ``i - 1``: the tokenizer's threads get the cores that
    Python's single thread leaves idle. With ``depth`` (2) batches queued
    rather than one, the tokenizer never waits for Python between two
    batches. Results come out
    ``depth`` batches late and in order; :meth:`flush` returns the rest. Same
    results as stage, encode and finish in turn.
    """

    def __init__(self, preparer: PairPreparer, depth: int = 2):
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        self.preparer = preparer
        self.depth = depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="poet-tokenizer")
        self._pending = deque()  # (batch, staged batch, future of its ids), oldest first

    def push(self, batch: list[tuple[RowOrigin, SourceRow]]) -> list[PreparedRow | DeadLetter]:
        """Start on ``batch``; return the results of the batch pushed ``depth`` batches before it, if any."""
        try:
            staged = self.preparer.stage(batch)
        except RowRejected:  # a batch-wide phase raised: finish the batches before it, then this one row by row
            return self.flush() + self.preparer.one_by_one(batch)
        self._pending.append((batch, staged, self._pool.submit(self.preparer.encode, staged)))
        return self._finish(self._pending.popleft()) if len(self._pending) > self.depth else []

    def flush(self) -> list[PreparedRow | DeadLetter]:
        """The results of the batches still in flight, in order."""
        results = []
        while self._pending:
            results += self._finish(self._pending.popleft())
        return results

    def _finish(self, done) -> list[PreparedRow | DeadLetter]:
        batch, staged, future = done
        try:
            return self.preparer.finish(staged, future.result())
        except RowRejected:
            return self.preparer.one_by_one(batch)

    def discard(self) -> None:
        """Drop the batches in flight, if any (their bundle failed: they will be processed again)."""
        while self._pending:
            future = self._pending.popleft()[2]
            future.cancel() or future.exception()  # wait for the tokenizer to be idle

    def close(self) -> None:
        self._pool.shutdown(wait=True)
