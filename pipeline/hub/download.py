"""Download side of publishing: turn a local folder, an fsspec URL (``gs://...``) or a Hub
dataset repo id into a local prepared folder, so ``poet stats`` and the trainer accept any.

Only what a prepared folder shares is fetched (card, ``stats.json``, plots, shards; never
dead letters), and callers that need less say so with ``only``: ``poet stats`` needs
``stats.json`` alone, not gigabytes of shards. Hub downloads go through
``huggingface_hub``'s cache (a second call for the same commit downloads nothing) and
honour ``HF_ENDPOINT`` and the token (``HF_TOKEN`` or the login). ``huggingface_hub`` is
imported only when a download happens, to keep CLI start-up fast.
"""

from __future__ import annotations

import atexit
import fnmatch
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

from poet.transforms.contract import PUBLISHED_FILES
from poet.transforms.errors import UserError, describe
from poet.transforms.hub_ids import parse_dataset


@dataclass(frozen=True)
class PreparedSource:
    """Where a prepared folder named on the command line is: a local ``folder``, another fsspec ``url``
    (``gs://...``), or a Hub dataset ``repo_id`` at ``revision`` (None: its main branch)."""

    folder: Path | None = None
    url: str | None = None
    repo_id: str | None = None
    revision: str | None = None


def locate_prepared(path_or_repo_id: str) -> PreparedSource:
    """What ``path_or_repo_id`` names: a local folder; an fsspec URL other than ``hf://``; else a Hub dataset
    repo (``user/name``, ``user/name@rev``, ``hf://datasets/user/name``).

    A name is taken as a Hub repo id only when it looks like one and is no local path: ``out/missing`` where
    ``out`` is a local folder is a mistyped folder, said in one line, not a repo the Hub is asked for."""
    path = Path(path_or_repo_id).expanduser()
    if path.is_dir():
        return PreparedSource(folder=path)
    if "://" in path_or_repo_id and not path_or_repo_id.startswith("hf://"):
        return PreparedSource(url=path_or_repo_id.rstrip("/"))
    if path.exists():
        raise UserError(f"{path_or_repo_id} is a file: pass the folder `poet prepare` wrote")
    parsed = parse_dataset(path_or_repo_id)
    if parsed is None:
        raise UserError(f"no such folder: {path_or_repo_id} (nor is it a Hub dataset id like user/name)")
    if path.parent.is_dir() and not path_or_repo_id.startswith("hf://"):
        raise UserError(f"no such folder: {path_or_repo_id} (for the Hub dataset, not the local folder "
                        f"{path.parent}/, write hf://datasets/{path_or_repo_id})")
    return PreparedSource(repo_id=parsed[0], revision=parsed[1])


def fetch_prepared(path_or_repo_id: str, revision: str | None = None, *, only: Sequence[str] = PUBLISHED_FILES) -> Path:
    """A local folder for ``path_or_repo_id`` (see :func:`locate_prepared`): the folder itself if it is local; a
    temporary copy (kept until the process exits) for another fsspec URL; else a snapshot of the Hub dataset
    repo at ``revision`` (default: the one it names, else its main branch). Only files matching ``only`` are
    fetched."""
    source = locate_prepared(path_or_repo_id)
    if source.folder is not None:
        return source.folder
    if source.url is not None:
        return _copy_to_temporary(source.url, only)
    return _download(source.repo_id, revision or source.revision, only)


def prepared_paths(fs: fsspec.AbstractFileSystem, root: str, only: Sequence[str] = PUBLISHED_FILES) -> list[str]:
    """The files under ``root`` matching ``only``, relative to it, sorted."""
    prefix = root.rstrip("/") + "/"
    relative = (path[len(prefix):] for path in fs.find(root) if path.startswith(prefix))
    return sorted(p for p in relative if any(fnmatch.fnmatch(p, pattern) for pattern in only))


def copy_prepared(url: str, target: Path, only: Sequence[str] = PUBLISHED_FILES) -> None:
    """Copy the files of the prepared folder at ``url`` matching ``only`` into ``target``."""
    fs, root = fsspec.core.url_to_fs(url)
    if not fs.isdir(root):
        raise UserError(f"{url} is not a folder: pass the --output folder of `poet prepare`")
    for rel in prepared_paths(fs, root, only):
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(f"{root.rstrip('/')}/{rel}", str(target / rel))


def _copy_to_temporary(url: str, only: Sequence[str]) -> Path:
    fs, root = fsspec.core.url_to_fs(url)
    if isinstance(fs, LocalFileSystem):  # file:// URLs
        return Path(root)
    target = Path(tempfile.mkdtemp(prefix="poet-prepared-"))
    atexit.register(shutil.rmtree, target, True)
    copy_prepared(url, target, only)
    return target


def _download(repo_id: str, revision: str | None, only: Sequence[str]) -> Path:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RevisionNotFoundError

    from poet.pipeline.hub.http import bound_hub_requests

    where = f"on {constants.ENDPOINT}"
    bound_hub_requests()
    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", revision=revision, allow_patterns=list(only)))
    except RevisionNotFoundError:
        raise UserError(f"dataset {repo_id} {where} has no revision {revision!r}") from None
    except HfHubHTTPError:  # the Hub answers "not found" for private repos the token cannot read
        raise UserError(
            f"{repo_id} is neither a local folder nor a dataset {where} you can read: check the name, and for a "
            "private dataset log in with `hf auth login` or set HF_TOKEN"
        ) from None
    except LocalEntryNotFoundError:
        raise UserError(f"cannot reach {constants.ENDPOINT} to download {repo_id}, and it is not cached") from None
    except (KeyError, TypeError, AttributeError) as err:  # an answer of the wrong shape: not a Hub endpoint?
        raise UserError(f"{constants.ENDPOINT} answered with a document the Hub would not send ({describe(err)}) "
                        f"for {repo_id}: check HF_ENDPOINT") from None
