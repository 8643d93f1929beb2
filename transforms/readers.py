"""Read preference rows out of JSON, JSON Lines (optionally gzipped) and Parquet files.

Readers take an already-open binary stream, so the same code serves local
files, ``gs://`` objects (through Beam's FileSystems) and tests. A line that is
not valid JSON is yielded with ``record=None`` and its raw text, so it can be
dead-lettered instead of silently skipped.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet")


@dataclass(frozen=True)
class SourceRow:
    line: int  # 1-based line (JSON Lines) or record number (JSON array, Parquet)
    record: Any  # the parsed row; None when the line is not valid JSON
    raw: str | None = None  # the unparsable text, kept for the dead-letter file
    error: str = ""


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
    text = line.decode("utf-8", errors="replace")
    try:
        return SourceRow(number, json.loads(text))
    except json.JSONDecodeError as err:
        return SourceRow(number, None, raw=text.rstrip("\r\n"), error=str(err))


def _jsonl_rows(stream: BinaryIO) -> Iterator[SourceRow]:
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield _parse_line(number, line)


def _json_rows(data: bytes) -> Iterator[SourceRow]:
    """A JSON array of rows; a file that is not one array is read as JSON Lines."""
    try:
        document = json.loads(data)
    except json.JSONDecodeError:
        yield from _jsonl_rows(io.BytesIO(data))
        return
    if isinstance(document, list):
        for number, record in enumerate(document, start=1):
            yield SourceRow(number, record)
    else:
        yield SourceRow(1, document)


def _parquet_rows(stream: BinaryIO, batch_size: int = 1024) -> Iterator[SourceRow]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(stream).iter_batches(batch_size=batch_size):
        for record in batch.to_pylist():
            number += 1
            yield SourceRow(number, record)
