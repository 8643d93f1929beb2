"""``ComputeLengthStats``: exact per-split length histograms, merged across workers."""

from __future__ import annotations

import apache_beam as beam

from poet.transforms.stats import LengthStats, PairLengths


class _LengthStatsFn(beam.CombineFn):
    def create_accumulator(self):
        return LengthStats()

    def add_input(self, stats, item):
        if isinstance(item, PairLengths):
            stats.add(item)
        else:
            stats.add_dead_letter(item)
        return stats

    def merge_accumulators(self, accumulators):
        merged = LengthStats()
        for stats in accumulators:
            merged.merge(stats)
        return merged

    def extract_output(self, stats):
        return stats


class ComputeLengthStats(beam.PTransform):
    """``(rows, dead_letters)`` → one ``(split, LengthStats)`` per split that has rows or dead letters."""

    def expand(self, pcolls):
        rows, dead_letters = pcolls
        return (
            (
                rows | "RowLengths" >> beam.Map(lambda r: (r.origin.split, r.lengths)),
                dead_letters | "DeadReasons" >> beam.Map(lambda d: (d.origin.split, d.reason)),
            )
            | "Merge" >> beam.Flatten()
            | "PerSplit" >> beam.CombinePerKey(_LengthStatsFn())
        )
