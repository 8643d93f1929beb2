"""Publish a prepared folder to the Hugging Face Hub as a dataset repo.

Nothing is sent unless the folder is exactly what ``poet prepare`` wrote: its files are
checked against the manifest first (:mod:`transforms.manifest`), so a missing, edited,
swapped or stray file is refused with no commit.

Why not ``push_to_hub`` or ``upload_folder``: readers of the branch must never see old
and new shards mixed, publishing the same folder twice must be a no-op, and a re-run
after a crash must not upload again what the Hub already holds. So:

1. the folder is compared with the branch's tree (sha256 of LFS files, git blob sha1 of
   the others): unchanged files are skipped, and a folder identical to the branch makes
   no commit at all (the pipeline writes deterministic shards, which makes this work);
2. changed files are pre-uploaded (``preupload_lfs_files``; the Hub answers "already have
   it" for objects uploaded by a crashed run, so those are not sent again);
3. a single ``create_commit`` adds them and deletes every stale ``data/{split}-*`` shard
   (of a replaced split or of a split the folder no longer has) and stale plots, with
   ``parent_commit`` pinned to the head
   the comparison was made against. A concurrent writer turns that into a 412: the head
   is read again, the plan recomputed and the commit retried, with backoff, as on 409,
   429 and 5xx answers.

When one commit cannot hold everything (``max_files_per_commit``,
``max_bytes_per_commit``), the changes go to a pull request ref in several commits and
the PR is merged, which lands them on the branch in one step.

The token comes from the argument, ``HF_TOKEN`` or the ``huggingface_hub`` login; it is
never printed, nor is a signed upload URL's query, and Hub errors (a refusal, a timeout:
:mod:`pipeline.hub.http`, an answer of the wrong shape) become one-line :class:`UserError`
messages without them. The prepared folder is only read: the card naming the repo is rendered in memory.
``HF_ENDPOINT`` (a private Hub deployment) is honoured by ``huggingface_hub`` itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fsspec
import httpx2
from fsspec.implementations.local import LocalFileSystem
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    RepoFile,
    get_token,
    metadata_load,
)
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from poet.pipeline.hub.download import copy_prepared, prepared_paths
from poet.pipeline.hub.http import bound_hub_requests
from poet.transforms import manifest
from poet.transforms.contract import (CARD_FILE, MANIFEST_FILE, PUBLISHED_FILES, REPLACED_WITH_A_SPLIT, SHARD_PATTERN,
                                      STATS_FILE)
from poet.transforms.errors import UserError, describe, first_line
from poet.transforms.hub_ids import is_repo_id
from poet.transforms.terminal import printable

RETRIED_STATUSES = frozenset({409, 412, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class LocalFile:
    path_in_repo: str
    local_path: Path
    size: int
    sha256: str  # what the Hub keys LFS files by
    git_sha1: str  # what it keys regular files by
    content: bytes | None = None  # what is sent instead of the file (the card, rendered for the repo)


@dataclass(frozen=True)
class Plan:
    """What publishing changes relative to the branch head ``head``."""

    head: str
    additions: tuple[LocalFile, ...]
    deletions: tuple[str, ...]
    unchanged: int

    def operations(self) -> list[CommitOperationAdd | CommitOperationDelete]:
        return [_add_operation(f) for f in self.additions] + [CommitOperationDelete(p) for p in self.deletions]


@dataclass(frozen=True)
class PublishResult:
    repo_id: str
    revision: str
    commit_oid: str  # the commit made (on the PR ref when one is left open), or the head found when nothing changed
    commit_url: str | None  # None when nothing changed
    pr_url: str | None  # set when a pull request was left open (``create_pr``)
    uploaded: int  # files added or replaced
    deleted: int
    unchanged: int
    attempts: int

    @property
    def changed(self) -> bool:
        return self.commit_url is not None

    def __str__(self) -> str:  # the oid and URLs are the Hub's answer: printed escaped
        if not self.changed:
            return printable(f"no change: {self.repo_id}@{self.revision} is already at {self.commit_oid}")
        return printable(self.pr_url or self.commit_url)


def publish(
    folder: str | Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    create_pr: bool = False,
    message: str | None = None,
    token: str | None = None,
    max_files_per_commit: int = 100,
    max_bytes_per_commit: int = 20 * 1024**3,
    max_attempts: int = 5,
) -> PublishResult:
    """Publish the prepared ``folder`` (a local path or any fsspec URL) to the dataset
    repo ``repo_id``, on branch ``revision`` (default ``main``, created if missing).

    ``private`` applies when the repo is created; ``create_pr`` opens a pull request
    instead of committing to the branch."""
    if not is_repo_id(repo_id):
        raise UserError(f"--repo-id must look like user/name or org/name, got {repo_id!r}")
    if _offline():
        raise UserError("HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set, so nothing can be sent to the Hub: unset "
                        f"it, then run: poet publish {shlex.quote(str(folder))} --repo-id {repo_id}")
    token = token or get_token()
    if not token:
        raise UserError("no Hugging Face token: run `hf auth login` or set HF_TOKEN, then publish again")
    bound_hub_requests()
    api = HfApi(token=token)
    branch = revision or "main"
    with _local_folder(str(folder)) as root, _signed_urls_redacted():
        files = _name_the_repo_in_the_card(root, repo_id, _scan(root, str(folder)))
        _say(f"{len(files)} files to publish from {folder} ({_size(sum(f.size for f in files))})")
        try:
            return _publish(api, files, repo_id, branch, private=private, create_pr=create_pr,
                            message=message or f"Publish {repo_id} with poet",
                            max_files=max_files_per_commit, max_bytes=max_bytes_per_commit, max_attempts=max_attempts)
        except HfHubHTTPError as err:
            raise UserError(_redact(_explain(err, repo_id, api.endpoint), token)) from None
        except (RuntimeError, httpx2.HTTPError) as err:  # an upload failed after the client's own retries
            raise UserError(_redact(
                f"publishing to {repo_id} on {api.endpoint} failed ({_describe(err)}); run the same command "
                "again to resume: files the Hub already holds are not uploaded twice", token)) from None
        except ValueError as err:  # the Hub refused the card's YAML header or an upload request
            raise UserError(_redact(f"the Hub refused the upload: {' '.join(str(err).split())}", token)) from None
        except (KeyError, TypeError, AttributeError) as err:  # an answer of the wrong shape: not a Hub endpoint?
            raise UserError(_redact(
                f"{api.endpoint} answered with a document the Hub would not send ({describe(err)}): check "
                "HF_ENDPOINT, then publish again", token)) from None


def _publish(api: HfApi, files: list[LocalFile], repo_id: str, branch: str, *, private: bool, create_pr: bool,
             message: str, max_files: int, max_bytes: int, max_attempts: int) -> PublishResult:
    retrying = _Retrying(max_attempts)
    retrying(lambda: api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True))
    if branch != "main":
        retrying(lambda: api.create_branch(repo_id, repo_type="dataset", branch=branch, exist_ok=True))
    return retrying(lambda: _publish_once(api, files, repo_id, branch, create_pr=create_pr, message=message,
                                          max_files=max_files, max_bytes=max_bytes, attempt=retrying.attempt))


def _publish_once(api: HfApi, files: list[LocalFile], repo_id: str, branch: str, *, create_pr: bool, message: str,
                  max_files: int, max_bytes: int, attempt: int) -> PublishResult:
    """Read the branch head, compare, commit: one attempt (a concurrent writer's 412 means: all of it again)."""
    plan = _plan(api, repo_id, branch, files)
    if not plan.additions and not plan.deletions:
        _say(f"nothing to publish: {repo_id}@{branch} already holds these {plan.unchanged} files")
        return PublishResult(repo_id, branch, plan.head, None, None, 0, 0, plan.unchanged, attempt)
    _say(f"{len(plan.additions)} new or changed files ({_size(sum(f.size for f in plan.additions))}), "
         f"{plan.unchanged} unchanged skipped, {len(plan.deletions)} stale to delete")
    commit_oid, commit_url, pr_url = _commit(api, repo_id, branch, plan, message=message,
                                             create_pr=create_pr, max_files=max_files, max_bytes=max_bytes)
    return PublishResult(repo_id, branch, commit_oid, commit_url, pr_url, len(plan.additions),
                         len(plan.deletions), plan.unchanged, attempt)


class _Retrying:
    """Call a Hub request again, with exponential backoff, on 409, 412, 429 and 5xx answers.

    ``attempt`` counts the attempts of the whole publish (shared by its requests), up to ``max_attempts``."""

    def __init__(self, max_attempts: int):
        self.max_attempts = max_attempts
        self.attempt = 1

    def __call__(self, request):
        while True:
            try:
                return request()
            except HfHubHTTPError as err:
                status = err.response.status_code if err.response is not None else None
                if status not in RETRIED_STATUSES or self.attempt >= self.max_attempts:
                    raise
                delay = min(2.0 ** (self.attempt - 1), 30.0)
                self.attempt += 1
                _say(f"the Hub answered {status}; reading the branch again and retrying in {delay:.0f}s "
                     f"(attempt {self.attempt}/{self.max_attempts})")
                time.sleep(delay)


def _plan(api: HfApi, repo_id: str, branch: str, files: list[LocalFile]) -> Plan:
    """Compare ``files`` with the tree at the branch head (listed at that exact commit)."""
    head = api.repo_info(repo_id, repo_type="dataset", revision=branch).sha
    remote = {
        entry.path: entry
        for entry in api.list_repo_tree(repo_id, repo_type="dataset", revision=head, recursive=True)
        if isinstance(entry, RepoFile)
    }
    additions = tuple(f for f in files if not _same(f, remote.get(f.path_in_repo)))
    local = {f.path_in_repo for f in files}
    # the folder is the whole dataset: shards of splits it no longer has would disagree with its card
    deletions = tuple(sorted(p for p in remote if p not in local
                             and (SHARD_PATTERN.fullmatch(p) or p.startswith(REPLACED_WITH_A_SPLIT))))
    return Plan(head, additions, deletions, len(files) - len(additions))


def _same(local: LocalFile, remote: RepoFile | None) -> bool:
    if remote is None:
        return False
    if remote.lfs is not None:
        return remote.lfs.sha256 == local.sha256
    return remote.blob_id == local.git_sha1


def _commit(api: HfApi, repo_id: str, branch: str, plan: Plan, *, message: str, create_pr: bool,
            max_files: int, max_bytes: int) -> tuple[str, str, str | None]:
    """Land ``plan`` on ``branch``; returns (commit oid, commit url, open PR url or None)."""
    operations = plan.operations()
    additions = [op for op in operations if isinstance(op, CommitOperationAdd)]
    api.preupload_lfs_files(repo_id, additions=additions, repo_type="dataset", revision=branch, create_pr=create_pr)
    batches = _batches(operations, max_files, max_bytes)
    if len(batches) == 1:
        info = api.create_commit(repo_id, operations, commit_message=message, repo_type="dataset",
                                 revision=branch, create_pr=create_pr, parent_commit=plan.head)
        return info.oid, info.commit_url, info.pr_url
    _say(f"too much for one commit: committing {len(batches)} parts to a pull request, then merging it")
    first = api.create_commit(repo_id, batches[0], commit_message=f"{message} (part 1/{len(batches)})",
                              repo_type="dataset", revision=branch, create_pr=True, parent_commit=plan.head)
    last = first
    for number, batch in enumerate(batches[1:], start=2):
        last = api.create_commit(repo_id, batch, commit_message=f"{message} (part {number}/{len(batches)})",
                                 repo_type="dataset", revision=first.pr_revision, parent_commit=last.oid)
    if create_pr:
        return last.oid, last.commit_url, first.pr_url
    api.merge_pull_request(repo_id, first.pr_num, repo_type="dataset")
    merged = api.get_discussion_details(repo_id, first.pr_num, repo_type="dataset").merge_commit_oid
    return merged, f"{api.endpoint}/datasets/{repo_id}/commit/{merged}", None


def _batches(operations: list, max_files: int, max_bytes: int) -> list[list]:
    """Split operations into commits of at most ``max_files`` files and ``max_bytes`` bytes."""
    batches: list[list] = [[]]
    size = 0
    for op in operations:
        op_size = op.upload_info.size if isinstance(op, CommitOperationAdd) else 0
        if batches[-1] and (len(batches[-1]) >= max_files or size + op_size > max_bytes):
            batches.append([])
            size = 0
        batches[-1].append(op)
        size += op_size
    return batches


def _add_operation(f: LocalFile) -> CommitOperationAdd:
    op = CommitOperationAdd(path_in_repo=f.path_in_repo, path_or_fileobj=f.local_path if f.content is None else f.content)
    op.upload_info.sha256 = bytes.fromhex(f.sha256)  # already computed: do not read the file again
    return op


# --------------------------------------------------------------------------- local side


@contextlib.contextmanager
def _local_folder(folder: str) -> Iterator[Path]:
    """The folder as a local path: itself, or a temporary copy of what gets published
    when it lives on another filesystem (``gs://``, ``memory://``...)."""
    fs, root = fsspec.core.url_to_fs(folder)
    if not fs.isdir(root):
        raise UserError(f"{folder} is not a folder: pass the --output folder of `poet prepare`")
    if isinstance(fs, LocalFileSystem):
        yield Path(root)
        return
    with tempfile.TemporaryDirectory(prefix="poet-publish-") as tmp:
        copy_prepared(folder, Path(tmp), only=(*PUBLISHED_FILES, MANIFEST_FILE))
        yield Path(tmp)


def _name_the_repo_in_the_card(root: Path, repo_id: str, files: list[LocalFile]) -> list[LocalFile]:
    """Render the checked folder's card again with ``repo_id`` in its title and snippets (what ``prepare
    --push-to-hub`` writes), in memory: the published card names its repo, and the prepared folder is never
    changed (it may be read-only, or shared). Returns ``files`` with the card's new content. A folder whose
    stats.json poet did not write (no ``schema_version``) keeps its card as it is."""
    try:
        document = json.loads((root / STATS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return files
    shards = sorted(root / f.path_in_repo for f in files if SHARD_PATTERN.fullmatch(f.path_in_repo))
    if not isinstance(document, dict) or "schema_version" not in document or not shards:
        return files
    import pyarrow.parquet as pq
    from datasets import Features

    from poet.transforms.card import render_card

    card = render_card(document, Features.from_arrow_schema(pq.read_schema(shards[0])), repo_id=repo_id)
    if (root / CARD_FILE).read_text(encoding="utf-8") == card:
        return files
    data = card.encode("utf-8")
    rewritten = LocalFile(CARD_FILE, root / CARD_FILE, len(data), hashlib.sha256(data).hexdigest(),
                          hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(), data)
    _say(f"{CARD_FILE} published naming {repo_id} in its title and snippets")
    return [rewritten if f.path_in_repo == CARD_FILE else f for f in files]


def _scan(root: Path, shown_as: str) -> list[LocalFile]:
    paths = prepared_paths(LocalFileSystem(), str(root))
    if CARD_FILE not in paths or not any(SHARD_PATTERN.fullmatch(p) for p in paths):
        raise UserError(f"{shown_as} is not a prepared folder (it needs {CARD_FILE} and Parquet shards): "
                        f"run `poet prepare --output {shown_as}` first")
    if not (metadata_load(root / CARD_FILE) or {}).get("license"):
        raise UserError(f"{shown_as}/{CARD_FILE} declares no license, which the Hub needs to share a dataset: "
                        "re-run `poet prepare` with --license ID (e.g. mit, apache-2.0, cc-by-4.0)")
    files = [_hash(root / p, p) for p in paths]
    _verify(root, shown_as, files)
    return files


def _verify(root: Path, shown_as: str, files: list[LocalFile]) -> None:
    """Refuse a folder that is not exactly what ``poet prepare`` wrote (its manifest), before any Hub call."""
    try:
        recorded = manifest.loads((root / MANIFEST_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{shown_as} has no {MANIFEST_FILE}, so what it holds cannot be checked: "
                        f"prepare it again with this version of poet") from None
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{shown_as}/{MANIFEST_FILE} is damaged ({describe(err)}): prepare the folder "
                        "again") from None
    card = metadata_load(root / CARD_FILE) or {}
    splits = (card.get("dataset_info") or {}).get("splits") or []
    card_rows = {s.get("name"): s.get("num_examples", 0) for s in splits if isinstance(s, dict)}
    found = {f.path_in_repo: manifest.FileEntry(f.path_in_repo, f.size, f.sha256) for f in files}
    difference = manifest.first_difference(recorded, found, PUBLISHED_FILES, card_rows)
    if difference:
        raise UserError(f"refusing to publish {shown_as}: {difference}; nothing was uploaded. "
                        "Prepare the folder again rather than editing it")


def _hash(path: Path, path_in_repo: str) -> LocalFile:
    size = path.stat().st_size
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % size)
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            sha256.update(chunk)
            sha1.update(chunk)
    return LocalFile(path_in_repo, path, size, sha256.hexdigest(), sha1.hexdigest())


# --------------------------------------------------------------------------- messages


def _explain(err: HfHubHTTPError, repo_id: str, endpoint: str) -> str:
    status = err.response.status_code if err.response is not None else None
    if isinstance(err, RepositoryNotFoundError) or status in (401, 403, 404):
        return (f"the Hub at {endpoint} refused access to dataset {repo_id} (HTTP {status}): check that your token "
                "(HF_TOKEN or `hf auth login`) has write access to it")
    detail = first_line(err.server_message or "") or "no details"
    return (f"publishing to {repo_id} on {endpoint} failed (HTTP {status}: {detail}); run the same command again "
            "to resume: files the Hub already holds are not uploaded twice")


def _describe(err: BaseException | None) -> str:
    """The error and its causes, one phrase each. An HTTP error is reduced to its status:
    its message holds the request URL, which for uploads is a signed storage link."""
    parts = []
    while err is not None:
        if isinstance(err, HfHubHTTPError) and err.response is not None:
            parts.append(f"HTTP {err.response.status_code}")
            break
        parts.append(first_line(err).rstrip(".") or type(err).__name__)
        err = err.__cause__
    return ": ".join(parts)


_QUERY = re.compile(r"(https?://[^\s?'\"]+)\?[^\s'\"]*")


def _redact(text: str, token: str) -> str:
    """``text`` without the token, nor the query of any URL (a signed upload link's is a credential)."""
    return _without_queries(text.replace(token, "***"))


def _without_queries(text: str) -> str:
    return _QUERY.sub(r"\1?<redacted>", text)


def _offline() -> bool:
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return constants.is_offline_mode() or any((flag or "").upper() in {"1", "ON", "YES", "TRUE"} for flag in flags)


class _SignedUrlFilter(logging.Filter):
    """``huggingface_hub`` logs each retried request with its URL; for uploads that is a signed storage link
    whose query is a credential: it is logged without its query."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "?" in message:
            record.msg, record.args = _without_queries(message), None
        return True


@contextlib.contextmanager
def _signed_urls_redacted() -> Iterator[None]:
    """:class:`_SignedUrlFilter` on every ``huggingface_hub`` logger while publishing (a record is filtered by
    the logger that makes it, so each one gets it)."""
    names = [n for n in logging.Logger.manager.loggerDict if n == "huggingface_hub" or n.startswith("huggingface_hub.")]
    loggers, redacting = [logging.getLogger(n) for n in names], _SignedUrlFilter()
    for logger in loggers:
        logger.addFilter(redacting)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(redacting)


def _size(n: float) -> str:
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}"


def _say(message: str) -> None:
    print(f"publish: {printable(message)}", file=sys.stderr, flush=True)
