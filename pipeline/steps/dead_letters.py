"""``WriteDeadLetters``: every set-aside row, in source order, in the split's dead-letter file (JSON lines)."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from poet.transforms.contract import dead_letter_file


class _WriteSplitFile(beam.DoFn):
    def __init__(self, folder: str):
        self.folder = folder

    def process(self, grouped):
        split, letters = grouped
        letters = sorted(letters, key=lambda d: d.origin.sort_key)
        lines = "".join(d.to_json_line() for d in letters)
        with FileSystems.create(f"{self.folder}/{dead_letter_file(split)}") as handle:
            handle.write(lines.encode("utf-8"))
        yield split, len(letters)


class WriteDeadLetters(beam.PTransform):
    """``DeadLetter`` elements → ``dead_letter/{split}.jsonl``; outputs ``(split, count)`` per file written."""

    def __init__(self, folder: str):
        super().__init__()
        self.folder = folder

    def expand(self, dead_letters):
        return (
            dead_letters
            | "KeyBySplit" >> beam.Map(lambda d: (d.origin.split, d))
            | "GroupBySplit" >> beam.GroupByKey()
            | "WriteJsonl" >> beam.ParDo(_WriteSplitFile(self.folder))
        )
