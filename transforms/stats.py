"""Exact, mergeable length statistics of a prepared split.

Token lengths are small integers, so each quantity keeps an exact histogram
(length -> count); histograms merge by addition across Beam workers, and every
summary (mean, std, percentiles) is computed exactly from them, with the same
conventions as pandas (sample std with ddof=1, linearly interpolated quantiles).

The joint distribution of (chosen, rejected) lengths, for the 2-D plot, is a
count per cell of a fixed grid (:data:`JOINT_EDGES`, the same on every worker),
so it is exact for that grid, bounded in size and merges by addition too.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from dataclasses import dataclass, field

STATS_SCHEMA_VERSION = 1
QUANTITIES = ("prompt", "chosen", "rejected", "poet", "sequence")
PERCENTILES = (10, 50, 90, 99)

JOINT_EDGES: tuple[int, ...] = tuple(sorted({0} | {round(2 ** (k / 8)) for k in range(8 * 24 + 1)}))
"""Lower bounds of the joint histogram's bins, in tokens: unit bins up to 13, then about 9% wide
(8 bins per doubling) up to 2**24; the last bin is open-ended."""


def joint_bin(length: int) -> int:
    """The lower bound of the :data:`JOINT_EDGES` bin holding ``length``."""
    return JOINT_EDGES[bisect.bisect_right(JOINT_EDGES, length) - 1]


@dataclass(frozen=True)
class PairLengths:
    """What the statistics need to know about one kept pair."""

    prompt: int
    chosen: int  # completion lengths before any truncation
    rejected: int
    chosen_capped: int  # after the max-length cap, before POET
    rejected_capped: int
    poet: int
    chosen_kept: int  # lengths actually written to the shard
    rejected_kept: int
    chosen_lost_eos: bool
    rejected_lost_eos: bool

    @property
    def sequence(self) -> int:
        """Prompt + longer completion before truncation: what ``--max-length`` caps."""
        return self.prompt + max(self.chosen, self.rejected)


@dataclass
class LengthStats:
    histograms: dict[str, Counter] = field(default_factory=lambda: {q: Counter() for q in QUANTITIES})
    joint: Counter = field(default_factory=Counter)  # (chosen bin, rejected bin) -> pairs, lengths before POET
    counts: Counter = field(default_factory=Counter)
    dead_letters: Counter = field(default_factory=Counter)

    def add(self, pair: PairLengths) -> None:
        for quantity in QUANTITIES:
            self.histograms[quantity][getattr(pair, quantity)] += 1
        self.joint[joint_bin(pair.chosen), joint_bin(pair.rejected)] += 1
        c = self.counts
        c["pairs"] += 1
        c["chosen_longer"] += pair.chosen > pair.rejected
        c["rejected_longer"] += pair.rejected > pair.chosen
        c["equal_length"] += pair.chosen == pair.rejected
        c["poet_cut"] += pair.chosen_kept < pair.chosen_capped or pair.rejected_kept < pair.rejected_capped
        c["poet_would_cut"] += pair.chosen_capped != pair.rejected_capped
        c["chosen_lost_eos"] += pair.chosen_lost_eos
        c["rejected_lost_eos"] += pair.rejected_lost_eos
        c["completion_tokens_before_poet"] += pair.chosen_capped + pair.rejected_capped
        c["completion_tokens_after_poet"] += pair.chosen_kept + pair.rejected_kept
        c["training_tokens_before_poet"] += 2 * pair.prompt + pair.chosen_capped + pair.rejected_capped
        c["training_tokens_after_poet"] += 2 * pair.prompt + pair.chosen_kept + pair.rejected_kept

    def add_dead_letter(self, reason: str) -> None:
        self.dead_letters[reason] += 1

    def merge(self, other: "LengthStats") -> "LengthStats":
        for quantity in QUANTITIES:
            self.histograms[quantity].update(other.histograms[quantity])
        self.joint.update(other.joint)
        self.counts.update(other.counts)
        self.dead_letters.update(other.dead_letters)
        return self

    def to_dict(self) -> dict:
        """The JSON form of one split (see ``docs`` in the stats.json schema)."""
        c, pairs = self.counts, self.counts["pairs"]
        before, after = c["completion_tokens_before_poet"], c["completion_tokens_after_poet"]
        poet_rule_keeps = 2 * sum(length * n for length, n in self.histograms["poet"].items())  # applied or not
        train_before, train_after = c["training_tokens_before_poet"], c["training_tokens_after_poet"]
        dead = sum(self.dead_letters.values())
        return {
            "pairs": pairs,
            "dead_lettered": dead,
            "read": pairs + dead,
            "lengths": {q: summarize(self.histograms[q]) for q in QUANTITIES},
            "histograms": {q: sorted([k, v] for k, v in self.histograms[q].items() if v) for q in QUANTITIES},
            "chosen_rejected": {
                "edges": list(JOINT_EDGES),
                "counts": sorted([c_bin, r_bin, v] for (c_bin, r_bin), v in self.joint.items() if v),
            },
            "chosen_longer": _share(c["chosen_longer"], pairs),
            "rejected_longer": _share(c["rejected_longer"], pairs),
            "equal_length": _share(c["equal_length"], pairs),
            "poet_cut": _share(c["poet_cut"], pairs),
            "poet_would_cut": _share(c["poet_would_cut"], pairs),
            "poet_removed_tokens": _share(before - poet_rule_keeps, before),
            "chosen_lost_eos": c["chosen_lost_eos"],
            "rejected_lost_eos": c["rejected_lost_eos"],
            "completion_tokens": {
                "before_poet": before,
                "after_poet": after,
                "removed": before - after,
                "removed_pct": _pct(before - after, before),
            },
            "training_tokens": {
                "before_poet": train_before,
                "after_poet": train_after,
                "removed": train_before - train_after,
                "removed_pct": _pct(train_before - train_after, train_before),
            },
            "dead_letter_reasons": dict(sorted(self.dead_letters.items())),
        }


def _share(count: int, total: int) -> dict:
    return {"count": count, "pct": _pct(count, total)}


def _pct(part: int, total: int) -> float | None:
    """``part`` in % of ``total``, rounded to 4 decimals; None (JSON null) when ``total`` is 0."""
    return round(100.0 * part / total, 4) if total else None


def _value_at(sorted_items: list[tuple[int, int]], rank: int) -> int:
    """The value at 0-based position ``rank`` of the expanded, sorted histogram."""
    seen = 0
    for value, count in sorted_items:
        seen += count
        if rank < seen:
            return value
    raise IndexError(rank)


def summarize(histogram: Counter) -> dict:
    """count, mean, std (ddof=1), min, p10/p50/p90/p99 (linear, like pandas), max; None where undefined."""
    items = sorted((value, count) for value, count in histogram.items() if count > 0)
    n = sum(count for _, count in items)
    if n == 0:
        return {"count": 0, "mean": None, "std": None, "min": None, **{f"p{p}": None for p in PERCENTILES}, "max": None}
    total = sum(v * k for k, v in items)
    mean = total / n
    # exact integer arithmetic for the sum of squared deviations: n*sum(x^2) - (sum x)^2
    squares = sum(v * k * k for k, v in items)
    std = math.sqrt((n * squares - total * total) / (n * (n - 1))) if n > 1 else None
    summary = {"count": n, "mean": mean, "std": std, "min": items[0][0]}
    for p in PERCENTILES:
        # numpy's "linear" method step by step (pandas' quantile), so the floats agree to the last bit
        position = (n - 1) * (p / 100)
        low = math.floor(position)
        fraction = position - low
        low_value = _value_at(items, low)
        high_value = _value_at(items, min(low + 1, n - 1))
        diff = high_value - low_value
        value = high_value - diff * (1 - fraction) if fraction >= 0.5 else low_value + diff * fraction
        summary[f"p{p}"] = float(value)
    summary["max"] = items[-1][0]
    return summary


def overall(splits: dict[str, LengthStats]) -> LengthStats:
    total = LengthStats()
    for split_stats in splits.values():
        total.merge(split_stats)
    return total
