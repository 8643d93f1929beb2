"""Resolve ``--input`` globs into an ordered file list, and check the files before the job starts.

Runs on the launcher: a missing or unreadable file, an unsupported extension or
a mix of plain-text and conversational data ends the run here, with one line,
rather than deep inside a worker. Hub globs are pinned here to one commit per
repo and revision (see :mod:`pipeline.hub.input_files`).
"""

from __future__ import annotations

import itertools
import os
import stat
import warnings
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems

from poet.pipeline.hub.input_files import HubGlob, HubSource, is_hub_path, list_files, resolve_revision
from poet.pipeline.steps.read import open_input
from poet.transforms.contract import PrepareOptions
from poet.transforms.decontamination import EVAL_SUFFIXES, EvalSource
from poet.transforms.errors import UserError, describe, first_line, unreadable_file
from poet.transforms.formats import normalize
from poet.transforms.readers import SUFFIXES, is_splittable, is_supported, iter_rows, split_file
from poet.transforms.reasons import RowRejected

PEEK_ROWS = 200


@dataclass(frozen=True)
class InputPlan:
    files: list[tuple[str, int, str]]  # (split, file_index, path), file_index global and stable
    conversational: bool
    hub_sources: tuple[HubSource, ...] = ()  # the Hub repos read, each at one commit


@dataclass(frozen=True)
class EvalPlan:
    """``--decontaminate``: the eval files as ``(name, path)``, and what the launcher found in them."""

    files: list[tuple[str, str]]
    sources: tuple[EvalSource, ...]
    ngrams: int  # distinct n-grams of all of them


def _match(pattern: str, option: str) -> list[str]:
    try:
        with warnings.catch_warnings():  # Beam's glob compiles the escape `[[]` to a regex Python warns about
            warnings.simplefilter("ignore", FutureWarning)
            result = FileSystems.match([pattern])[0]
    except Exception as err:  # Beam raises BeamIOError with per-pattern causes
        raise UserError(f"cannot list {option} {pattern!r}: {first_line(err)}") from None
    return sorted(m.path for m in result.metadata_list)


def _paths(pattern: str, option: str, pinned: dict) -> list[str]:
    """The files of one glob, sorted; a Hub glob at one commit per repo and revision, whatever the number of globs
    (``pinned`` remembers them)."""
    if is_hub_path(pattern):
        glob = HubGlob.parse(pattern)
        key = (glob.repo_id, glob.requested)
        if key not in pinned:
            pinned[key] = resolve_revision(*key)
        paths = list_files(pinned[key], glob.glob)
    else:
        paths = _match(pattern, option)
    if not paths:
        raise UserError(f"{option} {pattern!r} matches no file; check the path or quote the glob")
    return paths


def _peek_kind(path: str, fmt: str | None, max_row_bytes: int) -> bool | None:
    """Whether the first valid pair of the file is conversational (None if none found early)."""
    try:
        with open_input(path) as stream:
            for source in itertools.islice(iter_rows(path, stream, max_row_bytes=max_row_bytes),
                                             PEEK_ROWS):
                if source.record is None:
                    continue
                try:
                    return normalize(source.record, fmt).conversational
                except RowRejected:
                    continue
    except Exception as err:  # noqa: BLE001 - any problem reading the file is one line naming it
        raise UserError(unreadable_file(path, describe(err))) from None
    return None


def _identity(path: str) -> tuple:
    """What makes two paths the same file: a local file's device and inode (another spelling, a symlink, a hard
    link, a bind mount); a Hub file's commit and path in it (another revision name or repo spelling of the same
    commit); any other URL as given."""
    if is_hub_path(path):
        return ("hub", path.partition("@")[2])  # list_files names the commit: hf://datasets/ORG/NAME@SHA/PATH
    if "://" in path:
        return ("url", path)
    info = os.stat(path)
    return ("local", info.st_dev, info.st_ino)


def _check_regular(path: str) -> None:
    """A FIFO, device or folder would hang or fail on the workers: refuse it here."""
    if "://" in path:
        return
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        raise UserError(unreadable_file(path, describe(err))) from None
    if not stat.S_ISREG(mode):
        raise UserError(f"{path} is not a regular file (a FIFO, device or folder?); pass files only")


def input_bytes(files: list[tuple[str, int, str]]) -> int | None:
    """The size of all input files, to estimate how much of a run is left; None when one is on the Hub or its
    size cannot be had (a file gone since planning: reading it ends the run with one line)."""
    total = 0
    for _, _, path in files:
        if is_hub_path(path):
            return None
        try:
            total += FileSystems.match([path])[0].metadata_list[0].size_in_bytes
        except Exception:  # noqa: BLE001 - a size we cannot learn only costs the estimate
            return None
    return total


def read_parts(files: list[tuple[str, int, str]], parts: int) -> list[tuple]:
    """The read specs for a runner that wants ``parts`` partitions: the files, whole, while they are at least as
    many; otherwise each ``.jsonl`` and ``.parquet`` cut into ``ceil(parts / files)`` parts (a ``.jsonl`` is
    scanned once here for its line boundaries), ``.gz`` and ``.json`` files whole."""
    if parts <= len(files):
        return list(files)
    each = -(-parts // len(files))
    reads = []
    for split, index, path in files:
        if not is_splittable(path):
            reads.append((split, index, path))
            continue
        try:
            with open_input(path) as stream:
                cuts = split_file(path, stream, each)
        except Exception as err:  # noqa: BLE001 - any problem reading the file is one line naming it
            raise UserError(unreadable_file(path, describe(err))) from None
        reads += [(split, index, path, part) for part in cuts]
    return reads


def plan_inputs(options: PrepareOptions) -> InputPlan:
    files, seen, pinned = [], {}, {}
    for spec in options.input_specs:
        for path in _paths(spec.pattern, "--input", pinned):
            if not is_supported(path):
                raise UserError(f"{path}: unsupported file type; use one of {', '.join(SUFFIXES)}")
            _check_regular(path)
            identity = _identity(path)
            if identity in seen:
                raise UserError(f"{path} is given twice in --input (as {seen[identity]}); "
                                "each file may feed one split only")
            seen[identity] = path
            files.append((spec.split, len(files), path))
    kinds = {path: _peek_kind(path, options.format, options.max_row_bytes) for _, _, path in files}
    found = {kind for kind in kinds.values() if kind is not None}
    if len(found) > 1:
        conv = next(p for p, k in kinds.items() if k)
        text = next(p for p, k in kinds.items() if k is False)
        raise UserError(
            f"mixed data: {conv} is conversational but {text} is plain text; prepare them in separate runs"
        )
    return InputPlan(files, conversational=found == {True}, hub_sources=tuple(pinned.values()))


def plan_eval_files(options: PrepareOptions, source_name) -> EvalPlan | None:
    """The ``--decontaminate`` files, each read once here so that a missing file, an unreadable one or a row
    without a prompt ends the run with one line before any worker starts; None without the option."""
    if not options.decontaminate:
        return None
    from poet.pipeline.steps.quality import build_ngram_index

    files, seen, pinned = [], set(), {}
    for pattern in options.decontaminate:
        for path in _paths(pattern, "--decontaminate", pinned):
            if not path.lower().endswith(EVAL_SUFFIXES):
                raise UserError(f"{path}: unsupported eval file type; use one of {', '.join(EVAL_SUFFIXES)}")
            _check_regular(path)
            if _identity(path) not in seen:
                seen.add(_identity(path))
                files.append((source_name(path), path))
    index = build_ngram_index(files, options.decontaminate_field)
    return EvalPlan(files, tuple(index.sources), len(index))
