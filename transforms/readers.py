"""Read preference rows out of JSON, JSON Lines (optionally gzipped) and Parquet files.

Readers take an already-open binary stream, so the same code serves local
files, ``gs://`` objects (through Beam's FileSystems) and tests. A line that
cannot become a row (not UTF-8, not JSON, JSON too deep or with a number too big
for Python, a bare ``null``) is yielded with ``reason`` set and its raw text, so
it can be dead-lettered instead of silently skipped or replaced. A UTF-8 byte
order mark at the start of a file is not part of its first row.
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


def is_supported(path: str) -> bool:
    return path.lower().endswith(SUFFIXES)


def iter_rows(path: str, stream: BinaryIO) -> Iterator[SourceRow]:
    """Yield every row of one file, picking the reader from the file name."""
    name = path.lower()
    if name.endswith(".parquet"):
        yield from _parquet_rows(stream)
        return
    if name.endswith(".gz"):
        stream = gzip.GzipFile(fileobj=stream)
        name = name[: -len(".gz")]
    if name.endswith(".json"):
        yield from _json_rows(stream.read())
    else:
        yield from _jsonl_rows(stream)


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


def _jsonl_rows(stream: BinaryIO) -> Iterator[SourceRow]:
    for number, line in enumerate(_without_bom(stream), start=1):
        if line.strip():
            yield _parse_line(number, line)


def _json_rows(data: bytes) -> Iterator[SourceRow]:
    """A JSON array of rows; a file that is not one array is read as JSON Lines."""
    data = data.removeprefix(_BOM)
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):  # not one JSON document (or one Python cannot hold): read it line by line
        yield from _jsonl_rows(io.BytesIO(data))
        return
    if isinstance(document, list):
        for number, record in enumerate(document, start=1):
            yield _row(number, record)
    else:
        yield _row(1, document)


def _parquet_rows(stream: BinaryIO, batch_size: int = 1024) -> Iterator[SourceRow]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(stream).iter_batches(batch_size=batch_size):
        for record in batch.to_pylist():
            number += 1
            yield _row(number, record)
