"""Every file of an output folder is hashed where it is written, so the launcher builds the manifest without reading one.

Writers open files with :func:`create_recorded`: it counts and hashes the bytes
on their way out and, once the file is closed, writes a small record (path,
size, sha256) under ``RECORDS`` in the folder. A retried bundle rewrites the
same bytes and the same record. The launcher reads the records
(:func:`read_records`), never the shards, which on Dataflow would mean
downloading the whole dataset through one machine, and removes them before
the folder is committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

RECORDS = ".poet-records"  # inside the staging folder; removed before the folder is committed


@dataclass(frozen=True)
class FileRecord:
    path: str  # relative to the folder, /-separated
    size: int
    sha256: str


class _Hashing:
    """A write-only stream that hashes and counts what it passes to ``handle`` (pyarrow writes Parquet to it)."""

    def __init__(self, handle):
        self.handle, self.digest, self.size = handle, hashlib.sha256(), 0
        self.closed = False

    def write(self, data) -> int:
        data = bytes(data)
        self.digest.update(data)
        self.size += len(data)
        self.handle.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


@contextlib.contextmanager
def create_recorded(folder: str, name: str) -> Iterator[_Hashing]:
    """Write ``folder/name`` (bytes as given: no compression by suffix), then its record."""
    with FileSystems.create(f"{folder}/{name}", compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        stream = _Hashing(handle)
        yield stream
    record = {"path": name, "size": stream.size, "sha256": stream.digest.hexdigest()}
    key = hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]  # a flat, safe file name per path
    with FileSystems.create(f"{folder}/{RECORDS}/{key}.json") as handle:
        handle.write(json.dumps(record).encode("utf-8"))


def write_recorded(folder: str, name: str, data: bytes) -> None:
    with create_recorded(folder, name) as stream:
        stream.write(data)


def read_records(folder: str) -> dict[str, FileRecord]:
    """The records of ``folder`` by path (small JSON files, one per written file)."""
    records = {}
    for meta in FileSystems.match([f"{folder}/{RECORDS}/*.json"])[0].metadata_list:
        with FileSystems.open(meta.path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            record = FileRecord(**json.loads(handle.read()))
        records[record.path] = record
    return records
