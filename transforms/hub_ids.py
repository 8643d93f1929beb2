"""Hugging Face Hub repo ids, in one pattern: ``user/name``, also written ``hf://datasets/user/name@revision``."""

from __future__ import annotations

import re

REPO_ID = r"[\w.-]+/[\w.-]+"
_REPO_ID = re.compile(REPO_ID)
_DATASET = re.compile(rf"(?:hf://datasets/)?(?P<repo_id>{REPO_ID})(?:@(?P<revision>[^/]+))?")
_DATASET_FILE = re.compile(rf"hf://datasets/(?P<repo_id>{REPO_ID})(?:@[^/]+)?/")


def is_repo_id(text: str) -> bool:
    """``user/name`` or ``org/name`` (a relative path such as ``./tok`` or ``../tok`` is not one)."""
    return bool(_REPO_ID.fullmatch(text)) and not text.startswith(".")


def parse_dataset(text: str) -> tuple[str, str | None] | None:
    """``(repo_id, revision or None)`` of ``user/name``, ``user/name@rev`` or ``hf://datasets/user/name[@rev]``."""
    match = _DATASET.fullmatch(text)
    return (match["repo_id"], match["revision"]) if match and not match["repo_id"].startswith(".") else None


def dataset_of_file(url: str) -> str | None:
    """The dataset repo id of a file URL ``hf://datasets/user/name[@rev]/path``, else None."""
    match = _DATASET_FILE.match(url)
    return match["repo_id"] if match else None
