"""``ComputeLengthStats``: exact per-split length histograms, merged across workers."""

from __future__ import annotations

import apache_beam as beam

from poet.transforms.stats import LengthStats


class _LengthStatsFn(beam.CombineFn):
    """Inputs: the statistics of one batch of kept rows, or a dead letter's reason."""

    def create_accumulator(self):
        return LengthStats()

    def add_input(self, stats, item):
        if isinstance(item, str):
            stats.add_dead_letter(item)
        else:
            stats.merge(item)
        return stats

    def merge_accumulators(self, accumulators):
        merged = LengthStats()
        for stats in accumulators:
            merged.merge(stats)
        return merged

    def extract_output(self, stats):
        return stats


def _batch_stats(rows):
    """A list of kept rows (all of one input file, hence one split) → ``(split, LengthStats)``."""
    stats = LengthStats()
    for row in rows:
        stats.add(row.lengths)
    return rows[0].origin.split, stats


class ComputeLengthStats(beam.PTransform):
    """``(row lists, dead-letter lists)`` → one ``(split, LengthStats)`` per split that has rows or dead letters.

    Kept rows are counted list by list: one element per tokenizer batch goes
    through the runner, not one per row.
    """

    def expand(self, pcolls):
        row_lists, dead_letters = pcolls
        return (
            (
                row_lists | "BatchStats" >> beam.Map(_batch_stats),
                dead_letters | "DeadReasons" >> beam.FlatMap(lambda letters: [(d.origin.split, d.reason)
                                                                             for d in letters]),
            )
            | "Merge" >> beam.Flatten()
            | "PerSplit" >> beam.CombinePerKey(_LengthStatsFn())
        )
