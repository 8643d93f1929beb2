"""``ReadPreferenceFiles``: every row of every input file, tagged with its split and position."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.prepare import RowOrigin
from transforms.readers import iter_rows


class _ReadFile(beam.DoFn):
    def process(self, spec):
        split, file_index, path = spec
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as stream:
            for source in iter_rows(path, stream):
                yield RowOrigin(split, path, file_index, source.line), source


class ReadPreferenceFiles(beam.PTransform):
    """Read ``(split, file_index, path)`` specs into ``(RowOrigin, SourceRow)`` pairs.

    One file is read by one worker (line numbers must be exact for the dead
    letters and the shard order); a reshuffle then spreads the rows out.
    """

    def __init__(self, files: list[tuple[str, int, str]]):
        super().__init__()
        self.files = files

    def expand(self, pbegin):
        return (
            pbegin
            | "ListFiles" >> beam.Create(self.files)
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadRows" >> beam.ParDo(_ReadFile())
            | "SpreadRows" >> beam.Reshuffle()
        )
