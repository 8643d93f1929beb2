"""``--input hf://datasets/ORG/NAME[@REVISION]/GLOB``: the files of a Hub dataset repo, pinned to one commit.

On the launcher, :func:`resolve_revision` turns the revision (a branch, a tag
or a sha; ``main`` when the path names none) into its commit sha, once per run,
and :func:`list_files` lists the glob at that sha. Every path it returns names
the commit (``hf://datasets/ORG/NAME@SHA/PATH``), so every worker reads the
same bytes even if someone pushes to the repo mid-run. Workers read with
:func:`open_hub_file` through ``huggingface_hub``'s ``HfFileSystem`` (HTTP
range requests), with ``HF_ENDPOINT`` and ``HF_TOKEN`` (private or gated repos)
taken from their own environment. Each Hub problem is one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from poet.transforms.errors import UserError, first_line

SCHEME = "hf://"
USAGE = "use 'hf://datasets/ORG/NAME[@REVISION]/GLOB' (a dataset repo, the glob quoted)"


@dataclass(frozen=True)
class HubGlob:
    """One ``--input`` on the Hub, parsed."""

    repo_id: str
    requested: str  # the revision asked for
    glob: str  # inside the repo

    @classmethod
    def parse(cls, pattern: str) -> "HubGlob":
        from huggingface_hub.errors import HfUriError
        from huggingface_hub.utils import parse_hf_uri

        try:
            uri = parse_hf_uri(pattern)
        except HfUriError as err:
            raise UserError(f"--input {pattern!r}: {first_line(err)}; {USAGE}") from None
        if uri.type != "dataset" or not uri.path_in_repo:
            raise UserError(f"--input {pattern!r} names no files of a dataset repo; {USAGE}")
        return cls(uri.id, uri.revision or "main", uri.path_in_repo)


@dataclass(frozen=True)
class HubSource:
    """A source repo of the run and the commit every worker reads (recorded in stats.json and the card)."""

    repo_id: str
    requested: str
    revision: str  # commit sha


def is_hub_path(path: str) -> bool:
    return path.startswith(SCHEME)


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def resolve_revision(repo_id: str, requested: str) -> HubSource:
    """The commit sha ``requested`` points at now."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = HfApi().dataset_info(repo_id, revision=requested)
    except GatedRepoError:
        raise UserError(f"dataset {repo_id} is gated: accept its conditions on the Hub, then set HF_TOKEN "
                        "to a token of that account") from None
    except RevisionNotFoundError:
        raise UserError(f"dataset {repo_id} on {_endpoint()} has no revision {requested!r}") from None
    except RepositoryNotFoundError:
        raise UserError(f"dataset {repo_id} not found on {_endpoint()}: check the name, and for a private "
                        "dataset set HF_TOKEN (or `hf auth login`)") from None
    except Exception as err:  # connection refused, 5xx after retries...
        raise UserError(f"cannot read dataset {repo_id} on {_endpoint()}: {first_line(err)}") from None
    return HubSource(repo_id, requested, info.sha)


def list_files(source: HubSource, glob: str) -> list[str]:
    """``hf://datasets/ORG/NAME@SHA/PATH`` of every file matching ``glob`` at the pinned commit, sorted."""
    from huggingface_hub import HfFileSystem

    root = f"datasets/{source.repo_id}@{source.revision}"
    try:
        found = HfFileSystem().glob(f"{root}/{glob}", detail=True)
    except Exception as err:
        raise UserError(f"cannot list {glob!r} in dataset {source.repo_id}: {first_line(err)}") from None
    return sorted(SCHEME + path for path, info in found.items() if info["type"] == "file")


def open_hub_file(path: str) -> BinaryIO:
    from huggingface_hub import HfFileSystem

    return HfFileSystem().open(path, "rb")
