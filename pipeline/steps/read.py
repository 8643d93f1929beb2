"""``ReadPreferenceFiles``: every row of every input file, tagged with its split and position, in chunks."""

from __future__ import annotations

import io
import pickle

import apache_beam as beam
from apache_beam.coders import coder_impl
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from poet.pipeline.steps.gather import Spread
from poet.pipeline.hub.input_files import is_hub_path, open_hub_file
from poet.pipeline.steps.progress import progress
from poet.transforms.contract import DEFAULT_MAX_ROW_BYTES
from poet.transforms.errors import InputFileError, describe
from poet.transforms.prepare import RowOrigin
from poet.transforms.progress import ProgressSettings
from poet.transforms.readers import WHOLE, Part, iter_rows


MAX_SIZE_ESTIMATE = 2**31 - 1  # what Beam's size metric holds
_READ_BUFFER_BYTES = 1 << 20
CHUNK_BYTES = 16 * 10**6  # input bytes per chunk of rows (a chunk holds at least one row)


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
    these. Encoding a batch just to measure it would pickle it twice; the first
    row's size times the row count is the same metric within the spread of row
    sizes, for one row's pickle. Beam keeps the estimate in a signed 32-bit
    counter, so it is capped there: one large first row times many rows would
    overflow it and end the run.
    """

    def _create_impl(self):
        impl = super()._create_impl()
        return coder_impl.CallbackCoderImpl(impl.encode, impl.decode, size_estimator=self._estimate_size)

    @staticmethod
    def _estimate_size(batch: RowBatch) -> int:
        return min(len(pickle.dumps(batch[0], pickle.HIGHEST_PROTOCOL)) * len(batch), MAX_SIZE_ESTIMATE) if batch else 1

    def to_type_hint(self):
        return RowBatch


beam.coders.registry.register_coder(RowBatch, RowBatchCoder)


def open_input(path: str):
    """One input file as a buffered binary stream: Hub files through ``HfFileSystem``, the rest through Beam's
    FileSystems. Buffered by ``io.BufferedReader`` whatever the file system gave, because the readers read lines of
    bounded size (``readline(size)``), which fsspec's files do not take and other streams do a byte at a time."""
    if is_hub_path(path):
        stream = open_hub_file(path)
    else:
        stream = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    return stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(stream, _READ_BUFFER_BYTES)


class RowReader:
    """Reads one file, or one part of it, into lists of up to ``chunk_rows`` consecutive rows, and of at most
    ``chunk_bytes`` unless one row is larger (rows are at most ``max_row_bytes``), so a worker's memory does not
    grow with row sizes. A plain object that a DoFn holds and sets up: with ``counted``, each chunk counts in
    this worker's progress (a part counts its rows; the bytes read, for the time left, count in one-process runs,
    which read files whole); without, it is a read that another one already counts."""

    def __init__(self, chunk_rows: int, progress: ProgressSettings, max_row_bytes: int,
                 chunk_bytes: int = CHUNK_BYTES, counted: bool = True):
        self.chunk_rows = chunk_rows
        self.progress = progress
        self.max_row_bytes, self.chunk_bytes = max_row_bytes, chunk_bytes
        self.counted = counted

    def setup(self):
        self.rows_read = Metrics.counter("poet", "rows_read")

    def chunks(self, spec):
        split, file_index, path, part = unpack_spec(spec)
        whole = part == WHOLE
        chunk, size = RowBatch(), 0
        try:
            with open_input(path) as stream:
                counted = 0  # bytes of this file already counted
                for source in iter_rows(path, stream, part, self.max_row_bytes):
                    if chunk and (len(chunk) >= self.chunk_rows or size + source.size > self.chunk_bytes):
                        counted = self._count(chunk, _position(path, stream, counted) if whole else 0, counted)
                        yield chunk
                        chunk, size = RowBatch(), 0
                    chunk.append((RowOrigin(split, path, file_index, source.line), source))
                    size += source.size
                end = stream.seek(0, io.SEEK_END) if whole else 0
        except Exception as err:  # noqa: BLE001 - a damaged or vanished file ends the run with one line
            raise InputFileError(path, describe(err)) from err
        self._count(chunk, end, counted)
        if chunk:
            yield chunk

    def _count(self, chunk: RowBatch, position: int, counted: int) -> int:
        if self.counted:
            self.rows_read.inc(len(chunk))
            progress(self.progress).count_read(len(chunk), position - counted)
        return position


class _ReadFile(beam.DoFn):
    """A read spec → its chunks (:class:`RowReader`)."""

    def __init__(self, reader: RowReader):
        self.reader = reader

    def setup(self):
        self.reader.setup()

    def process(self, spec):
        return self.reader.chunks(spec)


def unpack_spec(spec: tuple) -> tuple[str, int, str, Part]:
    """``(split, file_index, path)`` reads the whole file; ``(split, file_index, path, part)`` that part."""
    return (*spec, WHOLE) if len(spec) == 3 else spec


def first_row_key(chunk: RowBatch) -> tuple[int, int]:
    """A chunk of ``(RowOrigin, SourceRow)``'s place in input order: its first row's; what spreads chunks."""
    return chunk[0][0].sort_key


def _position(path: str, stream, counted: int) -> int:
    """How far into the file a line-based reader is (for ``.gz``, in compressed bytes); a Parquet file is read
    by row groups after its footer, so it counts when it is done."""
    return counted if path.lower().endswith(".parquet") else max(stream.tell(), counted)


class ReadPreferenceFiles(beam.PTransform):
    """Read ``(split, file_index, path[, part])`` specs into chunks (:class:`RowBatch`) of ``(RowOrigin, SourceRow)``
    pairs.

    One file, or one part of it (:func:`~transforms.readers.split_file`: its
    rows keep the numbers of the whole file, which the dead letters and the
    shard order need), is read by one worker; with ``spread`` the specs, then
    the chunks, are spread over the workers. Rows travel in chunks of ``chunk_rows`` (a few
    tokenizer batches, and at most ``CHUNK_BYTES`` of JSON Lines), so the runner's
    per-element cost (encoding, shuffling) is paid once per chunk, not once
    per row. Rows over ``max_row_bytes`` are never read whole
    (:func:`~transforms.readers.iter_rows`).

    ``spread=False`` is for a single in-process worker, where spreading only
    costs (a stage and its start-up): without it, reading, preparing and
    writing fuse into one streaming stage and no runner buffer ever holds the dataset.
    """

    def __init__(self, files: list[tuple], progress: ProgressSettings, chunk_rows: int = 256,
                 spread: bool = True, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES, counted: bool = True):
        super().__init__()
        self.files = files
        self.reader = RowReader(chunk_rows, progress, max_row_bytes, counted=counted)
        self.spread = spread

    def expand(self, pbegin):
        files = pbegin | "ListFiles" >> beam.Create(self.files)
        read = beam.ParDo(_ReadFile(self.reader)).with_output_types(RowBatch)
        if not self.spread:
            return files | "ReadRows" >> read
        return (
            files
            | "SpreadFiles" >> Spread(lambda spec: (spec[1], unpack_spec(spec)[3].first))
            | "ReadRows" >> read
            | "SpreadChunks" >> Spread(first_row_key)
        )
