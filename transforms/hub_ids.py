"""Hugging Face Hub repo ids, in one pattern: ``user/name``, also written ``hf://datasets/user/name@revision``."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ID = r"[\w.-]+/[\w.-]+"
_REPO_ID = re.compile(REPO_ID)
_DATASET = re.compile(rf"(?:hf://datasets/)?(?P<repo_id>{REPO_ID})(?:@(?P<revision>[^/]+))?")
_DATASET_FILE = re.compile(rf"hf://datasets/(?P<repo_id>{REPO_ID})(?:@[^/]+)?/")


def is_repo_id(text: str) -> bool:
    """``user/name`` or ``org/name`` (a relative path such as ``./tok`` or ``../tok`` is not one)."""
    return bool(_REPO_ID.fullmatch(text)) and _hub_names(text)


def missing_local_path(name: str) -> bool:
    """``name`` can only be a local path (it has a ``/`` but is no Hub repo id: ``a/b/c``, ``./x``, ``/x``) and
    nothing is there: say so, rather than let transformers ask the Hub for it."""
    return "/" in name and not is_repo_id(name) and not Path(name).expanduser().exists()


def _hub_names(repo_id: str) -> bool:
    """The Hub's rules for each part: no ``..`` or ``--``, not starting or ending with ``.`` or ``-``
    (``alice/..`` would name a path, not a repo)."""
    return all(part and part[0] not in ".-" and part[-1] not in ".-" and ".." not in part and "--" not in part
               for part in repo_id.split("/"))


def parse_dataset(text: str) -> tuple[str, str | None] | None:
    """``(repo_id, revision or None)`` of ``user/name``, ``user/name@rev`` or ``hf://datasets/user/name[@rev]``."""
    match = _DATASET.fullmatch(text)
    return (match["repo_id"], match["revision"]) if match and _hub_names(match["repo_id"]) else None


def dataset_of_file(url: str) -> str | None:
    """The dataset repo id of a file URL ``hf://datasets/user/name[@rev]/path``, else None."""
    match = _DATASET_FILE.match(url)
    return match["repo_id"] if match else None
