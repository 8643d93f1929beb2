"""``WriteDatasetMetadata``: ``stats.json``, the plots and the dataset card, once all shards exist."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms.stats import LengthStats
from transforms.stats_file import STATS_FILE, build_stats_document, dumps


def write_bytes(path: str, data: bytes) -> None:
    with FileSystems.create(path) as handle:
        handle.write(data)


class _WriteMetadata(beam.DoFn):
    def __init__(self, folder: str, splits: list[str], run: dict, features):
        self.folder, self.splits, self.run, self.features = folder, splits, run, features

    def process(self, _, stats: dict, shards: list):
        split_stats = {split: stats.get(split, LengthStats()) for split in self.splits}
        document = build_stats_document(split_stats, shards, self.run)
        write_bytes(f"{self.folder}/{STATS_FILE}", dumps(document).encode("utf-8"))
        yield document


class WriteDatasetMetadata(beam.PTransform):
    """``(stats, shards)`` → files at the folder's root; outputs the stats document."""

    def __init__(self, folder: str, splits: list[str], run: dict, features):
        super().__init__()
        self.folder, self.splits, self.run, self.features = folder, splits, run, features

    def expand(self, pcolls):
        stats, shards = pcolls
        return (
            stats.pipeline
            | "Once" >> beam.Create([None])
            | "Write" >> beam.ParDo(
                _WriteMetadata(self.folder, self.splits, self.run, self.features),
                stats=beam.pvalue.AsSingleton(stats),
                shards=beam.pvalue.AsList(shards),
            )
        )
