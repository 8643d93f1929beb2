"""The data-quality rules of ``poet prepare``: exact dedup, score margin, decontamination, prompt-disjoint test split.

All opt-in, all Beam-free (``pipeline/steps`` wraps them). They apply in one fixed order, after a row is parsed
and before it is tokenized:

1. ``--dedup``: pairs with the same content id (:meth:`PreferencePair.content_id`, after format normalisation)
   are one pair; the first in input order (file order, then line) is kept, the others are ``duplicate``.
2. ``--min-score-margin X``: ``score_chosen - score_rejected < X`` is ``low_margin``, a row without both
   scores is ``missing_score``.
3. ``--decontaminate``: a prompt sharing an n-gram with an eval prompt is ``contaminated``
   (:mod:`transforms.decontamination`).
4. ``--test-size``: what is left of ``train`` is split by a hash of the prompt, so pairs that share a prompt
   share a split.

Each row is first *checked* on its own (:class:`QualityCheck`: parse, content and prompt ids, rules 2 and 3),
then the rows' ids decide, across all rows, which are duplicates and where the test split ends, and
:func:`apply` turns a chunk's checked rows and those decisions into kept rows and dead letters. A row that
does not parse passes through untouched: tokenization sets it aside with its own reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from poet.transforms.contract import TEST_SPLIT, TRAIN_SPLIT
from poet.transforms.decontamination import NgramIndex, prompt_text
from poet.transforms.prepare import DeadLetter, RowOrigin, parse
from poet.transforms.readers import SourceRow
from poet.transforms.reasons import Reason, RowRejected, rejects_as

SCORE_FIELDS = (("score_chosen", "score_rejected"), ("chosen-rating", "rejected-rating"))
"""Where a row's scores are read, first pair present wins: UltraFeedback binarized (HuggingFaceH4, any format
may carry them) and Argilla's UltraFeedback binarizations."""
_HASH_SPACE = 2**64  # prompt keys are the first 64 bits of the prompt's content hash


# --- score margin -----------------------------------------------------------------------------------------------


def _score(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def scores(record) -> tuple[float, float] | None:
    """``(score_chosen, score_rejected)`` from the first :data:`SCORE_FIELDS` pair the row has; None unless both
    are finite numbers."""
    if not isinstance(record, Mapping):
        return None
    for chosen, rejected in SCORE_FIELDS:
        if chosen in record or rejected in record:
            pair = _score(record.get(chosen)), _score(record.get(rejected))
            return None if None in pair else pair
    return None


def check_margin(record, min_margin: float) -> None:
    """Raise ``missing_score`` or ``low_margin`` unless ``score_chosen - score_rejected >= min_margin``."""
    found = scores(record)
    if found is None:
        raise RowRejected(Reason.MISSING_SCORE, f"no finite {' / '.join('+'.join(p) for p in SCORE_FIELDS)}")
    margin = found[0] - found[1]
    if margin < min_margin:
        raise RowRejected(Reason.LOW_MARGIN, f"score margin {margin:g} < {min_margin:g}")


# --- test split -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestSize:
    """``--test-size``: a fraction of ``train``'s pairs (``0 < F < 1``) or a count of them (``N >= 1``)."""

    __test__ = False  # not a pytest class
    fraction: float | None = None
    count: int | None = None

    @classmethod
    def parse(cls, text: str) -> TestSize:
        """argparse's ``type``: ``0.05`` is a fraction, ``500`` a count."""
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is neither a fraction (0 < F < 1) nor a count") from None
        if 0 < value < 1:
            return cls(fraction=value)
        if value >= 1 and value == int(value) and "." not in text:
            return cls(count=int(value))
        raise argparse.ArgumentTypeError(f"{text!r} must be a fraction 0 < F < 1 or a whole count N >= 1")

    def __str__(self) -> str:
        return f"{self.fraction:g}" if self.fraction is not None else str(self.count)


def prompt_key(pair) -> int:
    """The prompt's place in hash order: the first 64 bits of its content hash."""
    return int(pair.prompt_id()[:16], 16)


def in_test_fraction(key: int, fraction: float) -> bool:
    return key < fraction * _HASH_SPACE


def smallest_prompts(counts: Mapping[int, int], count: int) -> dict[int, int]:
    """``counts`` (prompt key → pairs) cut to its ``count`` smallest keys.

    Merging cut counts and cutting again gives the same :func:`last_test_prompt` as counting everything: a
    prompt below the threshold has fewer than ``count`` prompts before it, so it is among the ``count``
    smallest wherever it occurs, with its full count. So per-bucket counts merge in bounded memory."""
    return {key: counts[key] for key in sorted(counts)[:count]}


def merge_counts(parts: Iterable[Mapping[int, int]], count: int) -> dict[int, int]:
    merged: dict[int, int] = {}
    for part in parts:
        for key, pairs in part.items():
            merged[key] = merged.get(key, 0) + pairs
    return smallest_prompts(merged, count)


def last_test_prompt(counts: Mapping[int, int], count: int) -> int | None:
    """The largest prompt key of the test split: prompts in key order until at least ``count`` pairs (None: no
    train pairs). With one pair per prompt, exactly ``count`` pairs; a prompt is never cut in two."""
    total = 0
    for key in sorted(counts):
        total += counts[key]
        if total >= count:
            return key
    return max(counts, default=None)


# --- per row, then per chunk ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedRow:
    """A read row and what its own content says: ids (None if it did not parse) and the verdict of rules 2-3
    (a reason code, or None), with its detail for the dead letter."""

    origin: RowOrigin
    source: SourceRow
    pair_id: str | None = None
    prompt_key: int | None = None
    verdict: str | None = None
    detail: str = ""
    extra: tuple[tuple[str, str], ...] = ()  # named parts of the detail


@dataclass(frozen=True)
class Duplicate:
    """A row that ``--dedup`` removes, and the row kept in its place."""

    sort_key: tuple[int, int]
    kept: RowOrigin
    kept_id: str


class QualityCheck:
    """Rules 2 and 3 of one row, and the ids the cross-row rules need (the n-gram index is built once, by the
    caller, and shared by every row; the prompt key, a second hash, only where a test split is carved)."""

    def __init__(self, fmt: str | None, conversational: bool, min_score_margin: float | None = None,
                 ngrams: NgramIndex | None = None, prompt_keys: bool = True):
        self.fmt, self.conversational = fmt, conversational
        self.min_score_margin, self.ngrams, self.prompt_keys = min_score_margin, ngrams, prompt_keys

    def check(self, origin: RowOrigin, source: SourceRow) -> CheckedRow:
        try:
            pair = parse(source, self.fmt, self.conversational)
        except RowRejected:
            return CheckedRow(origin, source)
        checked = CheckedRow(origin, dataclasses.replace(source, pair=pair), pair.content_id(),
                             prompt_key(pair) if self.prompt_keys else None)
        try:
            with rejects_as(Reason.UNEXPECTED_ERROR):
                return self._rules(checked, pair, source.record)
        except RowRejected as rejected:
            return dataclasses.replace(checked, verdict=rejected.reason.value, detail=rejected.detail)

    def _rules(self, checked: CheckedRow, pair, record) -> CheckedRow:
        """Rules 2 and 3: the margin, then the decontamination (a row either sets aside is not checked further)."""
        if self.min_score_margin is not None:
            check_margin(record, self.min_score_margin)
        if self.ngrams is not None:
            match = self.ngrams.match(prompt_text(pair.prompt))
            if match is not None:
                return dataclasses.replace(
                    checked, verdict=Reason.CONTAMINATED.value, detail=f"shares {match.ngram!r} with {match.source}",
                    extra=(("eval_source", match.source), ("ngram", match.ngram)))
        return checked


class FirstCopies:
    """Rule 1 as rows stream in input order: the first row of each pair id is kept, and every later copy is a
    :class:`Duplicate` of it."""

    def __init__(self):
        self.first: dict[str, RowOrigin] = {}

    def later_copies(self, rows: Iterable[tuple[str, tuple[int, int], RowOrigin]]) -> list[Duplicate]:
        """``(pair id, sort key, origin)`` of the next rows, in input order → the later copies among them."""
        found = []
        for pair_id, sort_key, origin in rows:
            kept = self.first.get(pair_id)
            if kept is None:
                self.first[pair_id] = origin
            else:
                found.append(Duplicate(sort_key, kept, pair_id))
        return found


def duplicates(rows: Iterable[tuple[str, tuple[int, int], RowOrigin]]) -> list[Duplicate]:
    """``(pair id, sort key, origin)`` of rows in any order → every row but the first (smallest sort key) of each
    pair id."""
    return FirstCopies().later_copies(sorted(rows, key=lambda row: row[1]))


def apply(rows: list[CheckedRow], duplicate_of: Mapping[tuple[int, int], Duplicate],
          test_fraction: float | None = None, test_threshold: int | None = None
          ) -> tuple[dict[str, list[tuple[RowOrigin, SourceRow]]], list[DeadLetter]]:
    """Rules 1-4 in order over checked rows (in source order) → the kept rows per split, in order, and the
    dead letters. ``duplicate_of`` maps a duplicate's sort key to its :class:`Duplicate`; ``train`` rows go to
    ``test`` by ``test_fraction`` or up to ``test_threshold`` (:func:`last_test_prompt`)."""
    kept: dict[str, list[tuple[RowOrigin, SourceRow]]] = {}
    dead: list[DeadLetter] = []
    for row in rows:
        origin = row.origin
        duplicate = duplicate_of.get(origin.sort_key)
        if duplicate is not None:
            kept_at = duplicate.kept
            dead.append(DeadLetter(origin, Reason.DUPLICATE.value,
                                   f"same pair as id {duplicate.kept_id}, kept from {kept_at.file} line {kept_at.line}",
                                   row.source.record, (("kept_id", duplicate.kept_id),)))
            continue
        if row.verdict is not None:
            dead.append(DeadLetter(origin, row.verdict, row.detail, row.source.record, row.extra))
            continue
        if origin.split == TRAIN_SPLIT and row.prompt_key is not None and (
            (test_fraction is not None and in_test_fraction(row.prompt_key, test_fraction))
            or (test_threshold is not None and row.prompt_key <= test_threshold)
        ):
            origin = dataclasses.replace(origin, split=TEST_SPLIT)
        kept.setdefault(origin.split, []).append((origin, row.source))
    return kept, dead
