"""``WriteDeadLetters``: every set-aside row, in source order, in the split's dead-letter file (JSON lines).

Streamed: each chunk's dead letters (a few thousand rows at most, already in
line order) are written as one piece as soon as the chunk is prepared, and the
pieces are then appended to the split's file in file and line order, a buffer
at a time. A chunk set aside by two steps (the data-quality options, then
tokenization) has two pieces over the same lines: those are merged line by
line, so the file is in line order however the runner cut the chunks. What is gathered on one worker is one small record per piece, so no
worker's memory grows with the number or size of the dead letters, and the
order (hence the bytes) is the same on every runner.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import shutil

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from poet.pipeline.steps.file_records import create_recorded
from poet.transforms.contract import dead_letter_file, dead_letter_piece

_COPY_BYTES = 1 << 20


class DeadLetters(list):
    """The dead letters of one chunk of rows, in line order (what :class:`WriteDeadLetters` writes as one piece of its
    split's file)."""


class _WritePiece(beam.DoFn):
    def __init__(self, folder: str):
        self.folder = folder

    def process(self, letters):
        first = letters[0].origin
        path = f"{self.folder}/{dead_letter_piece(first.split, first.file_index, first.line)}"
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            for letter in letters:
                handle.write(letter.to_json_line().encode("utf-8"))
        yield first.split, (first.sort_key, letters[-1].origin.sort_key, path, len(letters))


class _JoinPieces(beam.DoFn):
    def __init__(self, folder: str):
        self.folder = folder

    def process(self, grouped):
        split, pieces = grouped
        pieces = sorted(pieces)  # one record per piece: (first and last file and line, path, count)
        with create_recorded(self.folder, dead_letter_file(split)) as target:  # hashed as written: the manifest's
            for group in _overlapping(pieces):
                if len(group) == 1:
                    with _open(group[0][2]) as piece:
                        shutil.copyfileobj(piece, target, _COPY_BYTES)
                else:
                    _merge([path for _, _, path, _ in group], target)
        FileSystems.delete([path for _, _, path, _ in pieces])
        yield split, sum(count for *_, count in pieces)


def _open(path: str):
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def _overlapping(pieces: list[tuple]) -> list[list[tuple]]:
    """Sorted pieces in runs whose line ranges overlap (pieces of different chunks never do)."""
    groups: list[list[tuple]] = []
    for piece in pieces:
        if groups and piece[0] <= max(last for _, last, _, _ in groups[-1]):
            groups[-1].append(piece)
        else:
            groups.append([piece])
    return groups


def _merge(paths: list[str], target) -> None:
    """Pieces of the same lines of one file, each in line order, written as one run in line order."""
    with contextlib.ExitStack() as stack:
        lines = [iter(stack.enter_context(_open(path)).readline, b"") for path in paths]
        for line in heapq.merge(*lines, key=lambda line: json.loads(line)["line"]):
            target.write(line)


class WriteDeadLetters(beam.PTransform):
    """Per-chunk ``DeadLetter`` lists → ``dead_letter/{split}.jsonl``; outputs ``(split, count)`` per file written."""

    def __init__(self, folder: str):
        super().__init__()
        self.folder = folder

    def expand(self, dead_letter_lists):
        return (
            dead_letter_lists
            | "WritePieces" >> beam.ParDo(_WritePiece(self.folder))
            | "GroupBySplit" >> beam.GroupByKey()
            | "JoinPieces" >> beam.ParDo(_JoinPieces(self.folder))
        )
