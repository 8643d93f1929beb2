"""Read preference rows out of JSON, JSON Lines (optionally gzipped) and Parquet files.

Readers take an already-open binary stream, so the same code serves local
files, ``gs://`` objects (through Beam's FileSystems) and tests. A line that
cannot become a row (not UTF-8, not JSON, JSON too deep or with a number too big
for Python, a bare ``null``) is yielded with ``reason`` set and its raw text, so
it can be dead-lettered instead of silently skipped or replaced. A UTF-8 byte
order mark at the start of a file is not part of its first row.

A file can be read in parts (:class:`Part`), so that workers share one large
file: an uncompressed ``.jsonl`` by byte ranges that start and end on line
boundaries, a ``.parquet`` by row groups. Each part knows the number of its
first row, so rows keep the numbers a whole-file read gives them. Gzip cannot
be entered in the middle, and a ``.json`` array is one document: those are
read whole.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from poet.transforms.errors import describe
from poet.transforms.reasons import Reason

SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class SourceRow:
    line: int  # 1-based line (JSON Lines) or record number (JSON array, Parquet)
    record: Any  # the parsed row; None when it could not be parsed (see ``reason``)
    raw: str | None = None  # the unparsable text, kept for the dead-letter file
    error: str = ""
    reason: Reason | None = None  # why the line is not a row; None for a parsed row


@dataclass(frozen=True)
class Part:
    """Where a part of a file starts and ends (bytes of a ``.jsonl``, row groups of a ``.parquet``; ``end`` None:
    to the end of the file), and the number of its first row."""

    start: int = 0
    end: int | None = None
    first: int = 1


WHOLE = Part()


def is_supported(path: str) -> bool:
    return path.lower().endswith(SUFFIXES)


def is_splittable(path: str) -> bool:
    return path.lower().endswith((".jsonl", ".parquet"))


def split_file(path: str, stream: BinaryIO, parts: int) -> list[Part]:
    """At most ``parts`` parts of about equal size that together read the file's rows (one part: the whole file).

    A ``.jsonl`` is scanned once for the line boundaries and the line numbers at the cuts (at the speed of
    ``bytes.count``); a ``.parquet`` is cut between row groups, from its footer alone.
    """
    name = path.lower()
    if parts < 2 or not is_splittable(name):
        return [WHOLE]
    if name.endswith(".parquet"):
        return _row_group_parts(stream, parts)
    return _line_parts(stream, parts)


def _line_parts(stream: BinaryIO, parts: int, block_size: int = 1 << 23) -> list[Part]:
    size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    targets = iter([size * k // parts for k in range(1, parts)])
    target = next(targets, None)
    cuts = [(0, 1)]  # (byte offset of a line start, its line number)
    offset = newlines = 0  # the block's offset in the file; newlines before it
    while target is not None and (block := stream.read(block_size)):
        while target is not None:
            end_of_line = block.find(b"\n", max(target - offset, 0))
            if end_of_line < 0:
                break
            cut = offset + end_of_line + 1
            if cut < size:
                cuts.append((cut, newlines + block.count(b"\n", 0, end_of_line + 1) + 1))
            while target is not None and target < cut:  # targets inside the line just cut go with it
                target = next(targets, None)
        newlines += block.count(b"\n")
        offset += len(block)
    ends = [start for start, _ in cuts[1:]] + [None]
    return [Part(start, end, first) for (start, first), end in zip(cuts, ends)]


def _row_group_parts(stream: BinaryIO, parts: int) -> list[Part]:
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(stream).metadata
    groups = metadata.num_row_groups
    bounds = sorted({groups * k // parts for k in range(parts + 1)})
    rows_before = [0]
    for group in range(groups):
        rows_before.append(rows_before[-1] + metadata.row_group(group).num_rows)
    return [Part(start, end, rows_before[start] + 1) for start, end in zip(bounds, bounds[1:])] or [WHOLE]


def iter_rows(path: str, stream: BinaryIO, part: Part = WHOLE) -> Iterator[SourceRow]:
    """Yield every row of one file, or of one part of it (see :func:`split_file`), picking the reader from the
    file name."""
    name = path.lower()
    if name.endswith(".parquet"):
        yield from _parquet_rows(stream, part)
        return
    if part != WHOLE:
        yield from _jsonl_rows(_line_range(stream, part), part.first)
        return
    if name.endswith(".gz"):
        stream = gzip.GzipFile(fileobj=stream)
        name = name[: -len(".gz")]
    if name.endswith(".json"):
        yield from _json_rows(stream.read())
    else:
        yield from _jsonl_rows(_without_bom(stream))


def _parse_line(number: int, line: bytes) -> SourceRow:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:  # never replaced silently: the row would change
        raw = line.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
        return SourceRow(number, None, raw=raw, error=f"not UTF-8: {err.reason} at byte {err.start}",
                         reason=Reason.INVALID_TEXT)
    try:
        record = json.loads(text)
    except (ValueError, RecursionError) as err:  # JSONDecodeError, a number over Python's digit limit, deep nesting
        return SourceRow(number, None, raw=text.rstrip("\r\n"), error=describe(err),
                         reason=Reason.MALFORMED_JSON)
    return _row(number, record, text.strip())


def _row(number: int, record: Any, raw: str | None = None) -> SourceRow:
    if record is None:
        return SourceRow(number, None, raw=raw or "null", error="the row is null, not an object",
                         reason=Reason.MALFORMED_JSON)
    return SourceRow(number, record)


def _without_bom(stream: BinaryIO) -> Iterator[bytes]:
    lines = iter(stream)
    first = next(lines, None)
    if first is None:
        return
    yield first.removeprefix(_BOM)
    yield from lines


def _line_range(stream: BinaryIO, part: Part) -> Iterator[bytes]:
    """The lines of a part of a ``.jsonl``: from its first byte to its last (the file's first part keeps the
    byte-order-mark rule)."""
    stream.seek(part.start)
    left = None if part.end is None else part.end - part.start
    first_of_file = part.start == 0
    for line in stream:
        yield line.removeprefix(_BOM) if first_of_file else line
        first_of_file = False
        if left is not None:
            left -= len(line)
            if left <= 0:
                return


def _jsonl_rows(lines, first: int = 1) -> Iterator[SourceRow]:
    for number, line in enumerate(lines, start=first):
        if line.strip():
            yield _parse_line(number, line)


def _json_rows(data: bytes) -> Iterator[SourceRow]:
    """A JSON array of rows; a file that is not one array is read as JSON Lines."""
    data = data.removeprefix(_BOM)
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):  # not one JSON document (or one Python cannot hold): read it line by line
        yield from _jsonl_rows(iter(io.BytesIO(data)))
        return
    if isinstance(document, list):
        for number, record in enumerate(document, start=1):
            yield _row(number, record)
    else:
        yield _row(1, document)


def _parquet_rows(stream: BinaryIO, part: Part = WHOLE, batch_size: int = 1024) -> Iterator[SourceRow]:
    import pyarrow.parquet as pq

    file = pq.ParquetFile(stream)
    groups = range(part.start, file.metadata.num_row_groups if part.end is None else part.end)
    number = part.first - 1
    for batch in file.iter_batches(batch_size=batch_size, row_groups=list(groups)):
        for record in batch.to_pylist():
            number += 1
            yield _row(number, record)
