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

Memory does not grow with a row: a JSON Lines row longer than ``max_row_bytes``
is never read whole (its line is read in bounded pieces, gzip included, and only
its first bytes are kept for the dead letter as ``row_too_large``). A ``.json``
array is parsed whole by Python's ``json``, so the file is refused past 64 rows
at the limit rather than read into memory; a Parquet row is decoded by pyarrow
with its row group, and one over the limit is set aside before it becomes Python
objects.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from poet.transforms.contract import DEFAULT_MAX_ROW_BYTES
from poet.transforms.errors import describe
from poet.transforms.reasons import Reason

SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet")
KEPT_BYTES = 1000  # the head of an oversized row kept in its dead letter
_SKIP_BYTES = 1 << 20  # an oversized line is skipped in pieces of this size
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class SourceRow:
    line: int  # 1-based line (JSON Lines) or record number (JSON array, Parquet)
    record: Any  # the parsed row; None when it could not be parsed (see ``reason``)
    raw: str | None = None  # the unparsable text, kept for the dead-letter file
    error: str = ""
    reason: Reason | None = None  # why the line is not a row; None for a parsed row
    size: int = 0  # bytes read for it (JSON Lines), what chunks of rows are bounded by
    pair: Any = None  # its TRL-form PreferencePair once the data-quality step has normalised it (not parsed twice)


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


def iter_rows(path: str, stream: BinaryIO, part: Part = WHOLE,
              max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> Iterator[SourceRow]:
    """Yield every row of one file, or of one part of it (see :func:`split_file`), picking the reader from the
    file name; rows over ``max_row_bytes`` are ``row_too_large`` (the module's docstring says how each format is
    bounded)."""
    name = path.lower()
    if name.endswith(".parquet"):
        yield from _parquet_rows(stream, part, max_row_bytes)
        return
    if part != WHOLE:
        stream.seek(part.start)
        length = None if part.end is None else part.end - part.start
        yield from _jsonl_rows(_lines(stream, max_row_bytes, length, bom=part.start == 0), part.first, max_row_bytes)
        return
    if name.endswith(".gz"):
        stream = gzip.GzipFile(fileobj=stream)
        name = name[: -len(".gz")]
    if name.endswith(".json"):
        yield from _json_rows(_read_json_document(stream, max_row_bytes), max_row_bytes)
    else:
        yield from _jsonl_rows(_lines(stream, max_row_bytes), 1, max_row_bytes)


def _read_json_document(stream: BinaryIO, max_row_bytes: int) -> bytes:
    """A whole ``.json`` file, at most 64 rows at the limit: it is parsed whole, so its rows cannot be bounded."""
    limit = 64 * max_row_bytes
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"a .json file over {limit:,} bytes is parsed whole, which this run does not allow; "
                         "convert it to JSON Lines (one row per line), which is read row by row")
    return data


def _too_large(number: int, head: bytes, size: int, max_row_bytes: int) -> SourceRow:
    """An oversized row: its size, and the first bytes of its line (none for a Parquet row: it has no text)."""
    return SourceRow(number, None, raw=head[:KEPT_BYTES].decode("utf-8", errors="backslashreplace"),
                     error=f"the row is {size:,} bytes, over --max-row-bytes {max_row_bytes:,}",
                     reason=Reason.ROW_TOO_LARGE, size=len(head[:KEPT_BYTES]))


def _parse_line(number: int, line: bytes) -> SourceRow:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:  # never replaced silently: the row would change
        raw = line.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
        return SourceRow(number, None, raw=raw, error=f"not UTF-8: {err.reason} at byte {err.start}",
                         reason=Reason.INVALID_TEXT, size=len(line))
    try:
        record = json.loads(text)
    except (ValueError, RecursionError) as err:  # JSONDecodeError, a number over Python's digit limit, deep nesting
        return SourceRow(number, None, raw=text.rstrip("\r\n"), error=describe(err),
                         reason=Reason.MALFORMED_JSON, size=len(line))
    return _row(number, record, text.strip(), len(line))


def _row(number: int, record: Any, raw: str | None = None, size: int = 0) -> SourceRow:
    if record is None:
        return SourceRow(number, None, raw=raw or "null", error="the row is null, not an object",
                         reason=Reason.MALFORMED_JSON, size=size)
    return SourceRow(number, record, size=size)


def _lines(stream: BinaryIO, max_row_bytes: int, length: int | None = None,
           bom: bool = True) -> Iterator[tuple[bytes, int]]:
    """``(line, 0)`` for every line of ``stream`` (up to ``length`` bytes: a part ends on a line boundary), and
    ``(its first bytes, its size)`` for a line over ``max_row_bytes`` (newline not counted), which is read in
    pieces of bounded size and never held whole. ``bom``: the stream starts the file (a byte-order mark there
    is not part of the first row)."""
    readline = stream.readline
    while line := readline(max_row_bytes + 1):
        size, skipped = len(line), 0
        if size > max_row_bytes and not line.endswith(b"\n"):  # over the limit: skip the rest, keep the head
            head = line[:KEPT_BYTES]
            while not line.endswith(b"\n") and (line := readline(_SKIP_BYTES)):
                size += len(line)
            line, skipped = head, size - line.endswith(b"\n")
        yield (line.removeprefix(_BOM) if bom else line), skipped
        bom = False
        if length is not None:
            length -= size
            if length <= 0:
                return


def _jsonl_rows(lines: Iterator[tuple[bytes, int]], first: int, max_row_bytes: int) -> Iterator[SourceRow]:
    for number, (line, skipped) in enumerate(lines, start=first):
        if skipped:
            yield _too_large(number, line, skipped, max_row_bytes)
        elif line.strip():
            yield _parse_line(number, line)


def _json_rows(data: bytes, max_row_bytes: int) -> Iterator[SourceRow]:
    """A JSON array of rows; a file that is not one array is read as JSON Lines."""
    data = data.removeprefix(_BOM)
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):  # not one JSON document (or one Python cannot hold): read it line by line
        yield from _jsonl_rows(_lines(io.BytesIO(data), max_row_bytes), 1, max_row_bytes)
        return
    if isinstance(document, list):
        for number, record in enumerate(document, start=1):
            yield _row(number, record)
    elif isinstance(document, dict) and "chosen" not in document and (
            key := next((k for k, v in document.items() if isinstance(v, list)), None)) is not None:
        raise ValueError(f"the file is a JSON object holding a list under {key!r}, not an array of rows; "
                         f"pass the array itself (for example: jq '.{key}' FILE)")
    else:
        yield _row(1, document)


def _parquet_rows(stream: BinaryIO, part: Part = WHOLE, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,
                  batch_size: int = 1024) -> Iterator[SourceRow]:
    """Rows in batches of Arrow data; a row whose Arrow data is over ``max_row_bytes`` never becomes Python objects
    (rows are measured one by one only in a batch over the limit)."""
    import pyarrow.parquet as pq

    file = pq.ParquetFile(stream)
    groups = range(part.start, file.metadata.num_row_groups if part.end is None else part.end)
    number = part.first - 1
    for batch in file.iter_batches(batch_size=batch_size, row_groups=list(groups)):
        if batch.nbytes <= max_row_bytes:
            for record in batch.to_pylist():
                number += 1
                yield _row(number, record)
            continue
        for index in range(batch.num_rows):
            number += 1
            row = batch.slice(index, 1)
            if row.nbytes > max_row_bytes:
                yield _too_large(number, b"", row.nbytes, max_row_bytes)
            else:
                yield _row(number, row.to_pylist()[0])
