"""``ReadPreferenceFiles``: every row of every input file, tagged with its split and position, in chunks."""

from __future__ import annotations

import pickle

import apache_beam as beam
from apache_beam.coders import coder_impl
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from poet.pipeline.steps.gather import Spread
from poet.pipeline.hub.input_files import is_hub_path, open_hub_file
from poet.transforms.errors import InputFileError, describe
from poet.transforms.prepare import RowOrigin
from poet.transforms.readers import iter_rows


class RowBatch(list):
    """A list of rows that moves between workers as one pickle (:class:`RowBatchCoder`).

    Beam's default coder writes a plain ``list`` item by item and pickles each
    item it does not know (our dataclasses) on its own; a batch pickled whole
    is several times cheaper per row. Transforms that output batches declare
    it (``with_output_types(RowBatch)``), so Beam picks that coder.
    """


class RowBatchCoder(beam.coders.PickleCoder):
    """Pickles a :class:`RowBatch` whole; estimates its size from its first row.

    Beam samples the encoded size of what every step outputs (a metric: mean
    bytes per element), nearly every element when they are few and large like
    these. Encoding a batch just to measure it cost a fifth of a 5x run's
    Beam overhead; the first row's size times the row count is the same metric
    within the spread of row sizes, for one row's pickle.
    """

    def _create_impl(self):
        impl = super()._create_impl()
        return coder_impl.CallbackCoderImpl(impl.encode, impl.decode, size_estimator=self._estimate_size)

    @staticmethod
    def _estimate_size(batch: RowBatch) -> int:
        return len(pickle.dumps(batch[0], pickle.HIGHEST_PROTOCOL)) * len(batch) if batch else 1

    def to_type_hint(self):
        return RowBatch


beam.coders.registry.register_coder(RowBatch, RowBatchCoder)


def open_input(path: str):
    """One input file as a binary stream: Hub files through ``HfFileSystem``, the rest through Beam's FileSystems."""
    if is_hub_path(path):
        return open_hub_file(path)
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


class _ReadFile(beam.DoFn):
    """One file → lists of up to ``chunk_rows`` consecutive rows."""

    def __init__(self, chunk_rows: int):
        self.chunk_rows = chunk_rows

    def process(self, spec):
        split, file_index, path = spec
        chunk = RowBatch()
        try:
            with open_input(path) as stream:
                for source in iter_rows(path, stream):
                    if len(chunk) >= self.chunk_rows:
                        yield chunk
                        chunk = RowBatch()
                    chunk.append((RowOrigin(split, path, file_index, source.line), source))
        except Exception as err:  # noqa: BLE001 - a damaged or vanished file ends the run with one line
            raise InputFileError(path, describe(err)) from err
        if chunk:
            yield chunk


class ReadPreferenceFiles(beam.PTransform):
    """Read ``(split, file_index, path)`` specs into chunks (:class:`RowBatch`) of ``(RowOrigin, SourceRow)`` pairs.

    One file is read by one worker (line numbers must be exact for the dead
    letters and the shard order); with ``spread`` the files, then the chunks,
    are spread over the workers. Rows travel in chunks of ``chunk_rows`` (a few
    tokenizer batches), so the runner's per-element cost (encoding,
    shuffling) is paid once per chunk, not once per row.

    ``spread=False`` is for a single in-process worker, where spreading only
    costs (a stage and its start-up): without it, reading, preparing and
    writing fuse into one streaming stage and no runner buffer ever holds the dataset.
    """

    def __init__(self, files: list[tuple[str, int, str]], chunk_rows: int = 256, spread: bool = True):
        super().__init__()
        self.files = files
        self.chunk_rows = chunk_rows
        self.spread = spread

    def expand(self, pbegin):
        files = pbegin | "ListFiles" >> beam.Create(self.files)
        read = beam.ParDo(_ReadFile(self.chunk_rows)).with_output_types(RowBatch)
        if not self.spread:
            return files | "ReadRows" >> read
        return (
            files
            | "SpreadFiles" >> Spread(lambda spec: spec[1])
            | "ReadRows" >> read
            | "SpreadChunks" >> Spread(lambda chunk: chunk[0][0].sort_key)
        )
