"""The manifest (``contract.MANIFEST_FILE``): what ``poet prepare`` wrote into a folder, so what is published can be checked against it.

Schema (version 1)::

    {"manifest_version": 1,
     "files": {PATH: {"size": BYTES, "sha256": HEX, "split": SPLIT, "num_rows": ROWS}, ...}}

``split`` and ``num_rows`` are set for the Parquet shards only.

Paths are relative to the folder, ``/``-separated; the manifest does not list
itself. It serves two checks: ``poet publish`` refuses a folder whose files
differ from it in any way (missing, changed, swapped, extra, or shard rows
that disagree with the card), and ``--overwrite`` only replaces a folder that
has one (a folder poet wrote). Beam-free: callers hash the files.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str
    split: str | None = None  # shards only
    num_rows: int | None = None


def dumps(entries: Iterable[FileEntry]) -> str:
    files = {}
    for entry in sorted(entries, key=lambda e: e.path):
        files[entry.path] = {"size": entry.size, "sha256": entry.sha256}
        if entry.split is not None:
            files[entry.path].update(split=entry.split, num_rows=entry.num_rows)
    return json.dumps({"manifest_version": MANIFEST_VERSION, "files": files}, indent=2) + "\n"


def loads(text: str) -> dict[str, FileEntry]:
    """The manifest's entries by path; ``ValueError`` when it is not a manifest of this version."""
    document = json.loads(text)
    if not isinstance(document, dict) or document.get("manifest_version") != MANIFEST_VERSION:
        raise ValueError(f"not a version {MANIFEST_VERSION} manifest")
    return {path: FileEntry(path, entry["size"], entry["sha256"], entry.get("split"), entry.get("num_rows"))
            for path, entry in document["files"].items()}


def first_difference(manifest: Mapping[str, FileEntry], found: Mapping[str, FileEntry], patterns: Iterable[str],
                     card_rows: Mapping[str, int]) -> str | None:
    """The first way the files ``found`` in a folder differ from its ``manifest``, or None when they agree.

    Only paths matching ``patterns`` (what gets published) are compared. ``card_rows``
    is each split's ``num_examples`` in the card: the shards' rows must add up to it.
    """
    patterns = tuple(patterns)
    expected = {p: e for p, e in manifest.items() if any(fnmatch.fnmatch(p, pattern) for pattern in patterns)}
    for path in sorted(expected):
        if path not in found:
            return f"{path} is missing"
    for path, entry in sorted(found.items()):
        want = expected.get(path)
        if want is None:
            return f"{path} was not written by poet prepare"
        if (entry.size, entry.sha256) != (want.size, want.sha256):
            return f"{path} changed since poet prepare wrote it"
    rows: dict[str, int] = {}
    for entry in expected.values():
        if entry.split is not None:
            rows[entry.split] = rows.get(entry.split, 0) + entry.num_rows
    for split in sorted(set(rows) | set(card_rows)):
        if rows.get(split, 0) != card_rows.get(split, 0):
            return (f"the card says split {split} has {card_rows.get(split, 0)} rows but its shards hold "
                    f"{rows.get(split, 0)}")
    return None
