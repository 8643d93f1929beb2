"""``WriteDatasetMetadata``: ``stats.json`` and the dataset card, once all shards exist.

A thin Beam wrapper: the statistics document and the card are built by
``transforms.stats_file`` and ``transforms.card``; this DoFn only gathers its
inputs (merged statistics, the shard manifest, the shards' file sizes) and
writes the files through Beam's ``FileSystems`` (local, ``gs://``...). The
plots are drawn from ``stats.json`` by the launcher (see :mod:`pipeline.launch.staged`).
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from poet.pipeline.steps.file_records import write_recorded
from poet.pipeline.steps.gather import GatherTagged
from poet.transforms.contract import CARD_FILE, STATS_FILE, RunDescription
from poet.transforms.decontamination import decontamination_section
from poet.transforms.reference import reference_section
from poet.transforms.stats import LengthStats
from poet.transforms.stats_file import build_stats_document, dumps


def file_sizes(folder: str, names: list[str]) -> dict[str, int]:
    """Size in bytes of each file ``folder/name`` (the Parquet shards, for the card's ``download_size``)."""
    if not names:
        return {}
    results = FileSystems.match([f"{folder}/{name}" for name in names])
    sizes = {}
    for name, result in zip(names, results):
        if len(result.metadata_list) != 1:
            raise FileNotFoundError(f"shard {folder}/{name} was not written")
        sizes[name] = result.metadata_list[0].size_in_bytes
    return sizes


def write_metadata(folder: str, document: dict, features, repo_id: str | None = None) -> None:
    """Write ``README.md`` and, last, ``stats.json`` (whose presence marks a finished pipeline)."""
    from poet.transforms.card import render_card

    write_recorded(folder, CARD_FILE, render_card(document, features, repo_id=repo_id).encode("utf-8"))
    write_recorded(folder, STATS_FILE, dumps(document).encode("utf-8"))


class _WriteMetadata(beam.DoFn):
    def __init__(self, folder: str, splits: list[str], run: RunDescription, features, repo_id: str | None,
                 reference, evals):
        self.folder, self.splits, self.run, self.features, self.repo_id = folder, splits, run, features, repo_id
        self.reference, self.evals = reference, evals

    def process(self, parts: dict):
        stats = dict(parts["stats"])
        shards = parts["shard"]
        split_stats = {split: stats.get(split, LengthStats()) for split in self.splits}
        sizes = file_sizes(self.folder, sorted(name for _, name, _, _ in shards))
        document = build_stats_document(split_stats, shards, self.run, sizes)
        if self.reference is not None:
            document["reference"] = reference_section(self.reference, dict(parts["reference"]), self.splits)
        if self.evals is not None:
            document["decontamination"] = decontamination_section(self.evals.sources, self.evals.ngrams,
                                                                  dict(parts["contaminated"]))
        write_metadata(self.folder, document, self.features, self.repo_id)
        yield document


class WriteDatasetMetadata(beam.PTransform):
    """``(stats, shards, dead_letter_files[, reference_stats])`` → files at the folder's root; outputs the stats
    document.

    All inputs are gathered on one worker, and the files are written once every
    shard and dead-letter file exists. That is also what makes the Dask runner
    write everything: it runs only what the pipeline's last step depends on.

    ``repo_id`` (optional) names the dataset in the card's snippets: the Hub repo it
    will be published to, or its final path; unset, the card shows a placeholder.
    ``reference`` (a ``ReferenceModel``) scored the rows; its ``(split, ReferenceStats)`` are the next input.
    ``evals`` (an ``EvalPlan``) decontaminated them; its ``(eval source, pairs contaminated)`` are the last input.
    """

    def __init__(self, folder: str, splits: list[str], run: RunDescription, features, repo_id: str | None = None,
                 reference=None, evals=None):
        super().__init__()
        self.folder, self.splits, self.run, self.features, self.repo_id = folder, splits, run, features, repo_id
        self.reference, self.evals = reference, evals

    def expand(self, pcolls):
        stats, shards, dead_letter_files, *optional = pcolls
        parts = {"stats": stats, "shard": shards, "dead_letters": dead_letter_files}
        if self.reference is not None:
            parts["reference"] = optional.pop(0)  # (split, ReferenceStats) per split
        if self.evals is not None:
            parts["contaminated"] = optional.pop(0)  # (eval source, pairs) per source that matched
        return (
            parts
            | "AllParts" >> GatherTagged()
            | "Write" >> beam.ParDo(_WriteMetadata(self.folder, self.splits, self.run, self.features, self.repo_id,
                                                   self.reference, self.evals))
        )
