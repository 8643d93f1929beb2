"""A small Hugging Face Hub-compatible HTTP server for tests.

No Hub-compatible server is installable here (mirrors are read-only), and a mock of the
client would only prove that we call the client the way we think it works. So the tests
talk HTTP to this server through the real ``huggingface_hub`` and ``datasets`` code,
and then assert on the server's state (commits, bytes), which cannot fall back to a
client-side cache.

What it implements is what those clients call for dataset repos: repo create/info,
validate-yaml, preupload, the classic LFS batch/upload/verify flow (the clients must run
with ``HF_HUB_DISABLE_XET=1``), NDJSON commits with ``parentCommit`` (412 on mismatch),
tree and paths-info, resolve with ``Range``, refs/branches/tags, commit listings and
pull requests (``refs/pr/N``, merge). State lives in memory, in a git-like shape: repos
hold refs -> commits -> trees of path -> entry, LFS objects are kept per repo.

Failure injection (``inject``, ``before_next_commit``) lets tests simulate crashes,
flaky storage and concurrent writers. ``configure_client_env`` must run before
``huggingface_hub`` or ``datasets`` is imported, because both read ``HF_ENDPOINT``,
``HF_HOME`` and ``HF_HUB_DISABLE_XET`` at import time.
"""

from __future__ import annotations

import atexit
import base64
import fnmatch
import hashlib
import itertools
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest
import yaml

USERS = {"alice": "hf_test_alice_5f0b8d1c", "bob": "hf_test_bob_93a7e2f4"}
"""user name -> API token; each user owns the namespace of the same name."""

GITATTRIBUTES = b"".join(
    b"%s filter=lfs diff=lfs merge=lfs -text\n" % pattern
    for pattern in (b"*.parquet", b"*.arrow", b"*.png", b"*.jpg", b"*.gz", b"*.zst", b"*.bin")
)
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024  # the Hub stores bigger files in LFS whatever their name


# --------------------------------------------------------------------------- store


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class Entry:
    """A file in a tree. Regular files carry their bytes, LFS files the sha256 of theirs."""

    blob_id: str  # git sha1 of the content (regular) or of the pointer (LFS)
    size: int
    data: bytes | None = None
    lfs_oid: str | None = None

    @classmethod
    def regular(cls, data: bytes) -> Entry:
        return cls(git_blob_sha1(data), len(data), data=data)

    @classmethod
    def lfs(cls, oid: str, size: int) -> Entry:
        return cls(git_blob_sha1(lfs_pointer(oid, size)), size, lfs_oid=oid)


@dataclass(frozen=True)
class Commit:
    oid: str
    parents: tuple[str, ...]
    title: str
    message: str
    author: str
    date: str
    tree: dict[str, Entry]


@dataclass
class PullRequest:
    num: int
    title: str
    author: str
    base: str  # branch name
    start: str  # commit the PR ref was created from
    created_at: str
    status: str = "open"
    merge_commit: str | None = None


@dataclass
class Repo:
    repo_id: str
    owner: str
    private: bool
    created_at: str
    refs: dict[str, str] = field(default_factory=dict)  # refs/heads/x, refs/tags/x, refs/pr/N -> oid
    commits: dict[str, Commit] = field(default_factory=dict)
    prs: dict[int, PullRequest] = field(default_factory=dict)
    lfs: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content


class HubError(Exception):
    """An HTTP error answer; ``code`` becomes the ``X-Error-Code`` the client dispatches on."""

    def __init__(self, status: int, message: str, code: str | None = None, *, header_message: bool = False,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message = status, message
        self.headers = dict(headers or {})
        if code:
            self.headers["X-Error-Code"] = code
        if header_message:
            self.headers["X-Error-Message"] = message


@dataclass
class _Fault:
    route: str
    action: int | str  # an HTTP status, or "drop"
    remaining: int
    match: str | None


_oid_counter = itertools.count()


# --------------------------------------------------------------------------- server


class HubServer:
    """The in-memory Hub plus its HTTP front end; tests inspect and steer it directly."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.lock = threading.RLock()
        self.tokens = {token: user for user, token in USERS.items()}
        self.tree_page_size = 1000
        self._httpd = ThreadingHTTPServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.hub = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None
        self.reset()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def reset(self) -> None:
        """Forget every repo, fault and counter (the server itself keeps running)."""
        with self.lock:
            self.repos: dict[str, Repo] = {}
            self.faults: list[_Fault] = []
            self.commit_hooks: list[Callable[[], None]] = []
            self.requests: list[tuple[str, str, str, int]] = []  # (route, method, path, status)
            self.lfs_uploads: list[str] = []  # oids stored by successful PUTs, in order
            self.unhandled: list[str] = []
            self.errors: list[str] = []  # tracebacks of server bugs

    # ----------------------------------------------------------- test steering

    def inject(self, route: str, action: int | str, *, times: int = 1, match: str | None = None) -> None:
        """Answer the next ``times`` requests of ``route`` (whose path contains ``match``) with
        the HTTP status ``action``, or drop the connection when ``action == "drop"`` (uploads are
        cut after half their body). Routes are the names in ``_ROUTES``, e.g. ``"lfs-upload"``."""
        with self.lock:
            self.faults.append(_Fault(route, action, times, match))

    def before_next_commit(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` inside the next commit request, before its parent is checked: a
        concurrent writer landing between a client's read of the head and its commit."""
        with self.lock:
            self.commit_hooks.append(hook)

    def write(self, repo_id: str, files: dict[str, bytes | None], *, revision: str = "main",
              message: str = "write") -> str:
        """Commit directly to the store (``None`` deletes a path); returns the new head."""
        with self.lock:
            repo = self.repos[repo_id]
            ref = f"refs/heads/{revision}"
            tree = dict(repo.commits[repo.refs[ref]].tree)
            for path, data in files.items():
                if data is None:
                    tree.pop(path)
                else:
                    tree[path] = Entry.regular(data)
            return self._commit(repo, ref, tree, message, "", "system")

    # ------------------------------------------------------------- inspection

    def head(self, repo_id: str, revision: str = "main") -> str:
        with self.lock:
            return self._resolve(self.repos[repo_id], revision)

    def history(self, repo_id: str, revision: str = "main") -> list[Commit]:
        """Commits reachable from ``revision`` by first parents, newest first."""
        with self.lock:
            repo = self.repos[repo_id]
            oid: str | None = self._resolve(repo, revision)
            out = []
            while oid is not None:
                commit = repo.commits[oid]
                out.append(commit)
                oid = commit.parents[0] if commit.parents else None
            return out

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """Every file of ``revision`` with its real content (LFS resolved)."""
        with self.lock:
            repo = self.repos[repo_id]
            tree = repo.commits[self._resolve(repo, revision)].tree
            return {path: self._content(repo, entry) for path, entry in tree.items()}

    def count(self, route: str, method: str | None = None) -> int:
        with self.lock:
            return sum(1 for r, m, _, _ in self.requests if r == route and method in (None, m))

    # ------------------------------------------------------------ store logic

    def _content(self, repo: Repo, entry: Entry) -> bytes:
        return entry.data if entry.lfs_oid is None else repo.lfs[entry.lfs_oid]

    def _commit(self, repo: Repo, ref: str, tree: dict[str, Entry], title: str, message: str, author: str) -> str:
        parents = (repo.refs[ref],) if ref in repo.refs else ()
        oid = hashlib.sha1(f"{next(_oid_counter)}:{os.urandom(8).hex()}:{title}".encode()).hexdigest()
        repo.commits[oid] = Commit(oid, parents, title, message, author, _now(), tree)
        repo.refs[ref] = oid
        return oid

    def _ref(self, repo: Repo, revision: str) -> str | None:
        """The full ref name a revision names, or None (a commit id or unknown)."""
        for ref in (revision, f"refs/heads/{revision}", f"refs/tags/{revision}"):
            if ref.startswith("refs/") and ref in repo.refs:
                return ref
        return None

    def _resolve(self, repo: Repo, revision: str) -> str:
        ref = self._ref(repo, revision)
        if ref is not None:
            return repo.refs[ref]
        if len(revision) >= 7:
            matches = [oid for oid in repo.commits if oid.startswith(revision.lower())]
            if len(matches) == 1:
                return matches[0]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _upload_mode(self, tree: dict[str, Entry], path: str, size: int, sample: bytes) -> str:
        attributes = tree.get(".gitattributes")
        patterns = [
            line.split()[0]
            for line in (attributes.data.decode() if attributes else "").splitlines()
            if "filter=lfs" in line
        ]
        name = path.rsplit("/", 1)[-1]
        is_lfs = size > LFS_SIZE_THRESHOLD or b"\0" in sample or any(
            fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in patterns
        )
        return "lfs" if is_lfs else "regular"

    def _last_commit(self, repo: Repo, head: str, path: str) -> Commit:
        """The newest commit that changed ``path`` (or anything under it), by first parents."""
        commit = repo.commits[head]
        while commit.parents:
            parent = repo.commits[commit.parents[0]]
            if _subtree(commit.tree, path) != _subtree(parent.tree, path):
                return commit
            commit = parent
        return commit

    def _pop_fault(self, route: str, path: str) -> int | str | None:
        with self.lock:
            for fault in self.faults:
                if fault.route == route and fault.remaining > 0 and (fault.match is None or fault.match in path):
                    fault.remaining -= 1
                    return fault.action
        return None


def _subtree(tree: dict[str, Entry], path: str) -> list[tuple[str, Entry]]:
    return sorted((p, e) for p, e in tree.items() if p == path or p.startswith(path + "/"))


def _folders(tree: dict[str, Entry]) -> set[str]:
    return {"/".join(p.split("/")[:i]) for p in tree for i in range(1, p.count("/") + 1)}


def _tree_oid(tree: dict[str, Entry], folder: str) -> str:
    return hashlib.sha1(repr([(p, e.blob_id) for p, e in _subtree(tree, folder)]).encode()).hexdigest()


# --------------------------------------------------------------------------- HTTP

REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
_ROUTES: list[tuple[str, str, str]] = [  # (methods, path regex, route name == handler suffix)
    ("POST", r"/api/repos/create", "create"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("GET", rf"/api/datasets/{REPO}(?:/revision/(?P<rev>[^/]+))?", "info"),
    ("POST", rf"/api/datasets/{REPO}/preupload/(?P<rev>[^/]+)", "preupload"),
    ("POST", rf"/datasets/{REPO}\.git/info/lfs/objects/batch", "lfs_batch"),
    ("PUT", r"/lfs-upload/(?P<key>[^/]+)/(?P<oid>[0-9a-f]{64})", "lfs_upload"),
    ("POST", rf"/datasets/{REPO}\.git/info/lfs/objects/verify", "lfs_verify"),
    ("POST", rf"/api/datasets/{REPO}/commit/(?P<rev>[^/]+)", "commit"),
    ("GET", rf"/api/datasets/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?", "tree"),
    ("POST", rf"/api/datasets/{REPO}/paths-info/(?P<rev>[^/]+)", "paths_info"),
    ("GET HEAD", rf"/datasets/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    ("GET", rf"/api/datasets/{REPO}/refs", "refs"),
    ("GET", rf"/api/datasets/{REPO}/commits/(?P<rev>[^/]+)", "commits"),
    ("POST DELETE", rf"/api/datasets/{REPO}/branch/(?P<branch>[^/]+)", "branch"),
    ("POST", rf"/api/datasets/{REPO}/tag/(?P<rev>[^/]+)", "tag"),
    ("GET", rf"/api/datasets/{REPO}/discussions/(?P<num>\d+)", "discussion"),
    ("POST", rf"/api/datasets/{REPO}/discussions/(?P<num>\d+)/merge", "merge"),
]
_COMPILED = [(methods.split(), re.compile(pattern), name) for methods, pattern, name in _ROUTES]


def _route(method: str, path: str) -> tuple[str, re.Match | None]:
    for methods, pattern, name in _COMPILED:
        match = pattern.fullmatch(path)
        if match and method in methods:
            return name, match
    return "", None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
    disable_nagle_algorithm = True  # headers and body go out in two writes: do not wait 40 ms between

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        """Silence the per-request stderr log; ``HubServer.requests`` records them instead."""

    @property
    def hub(self) -> HubServer:
        return self.server.hub  # type: ignore[attr-defined]

    def do_GET(self):
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    # --------------------------------------------------------------- plumbing

    def _dispatch(self) -> None:
        self._body: bytes | None = None  # one handler serves every request of a keep-alive connection
        split = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        name, match = _route(self.command, split.path)
        if match is None:
            self.body()
            self.route = "?"
            self.hub.unhandled.append(f"{self.command} {self.path}")
            return self._send(404, {"error": f"not implemented by the test server: {self.command} {split.path}"})
        self.route = name.replace("_", "-")
        self.args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
        fault = self.hub._pop_fault(self.route, split.path)
        if fault == "drop":
            return self._drop()
        self.body()  # always drain it, so errors keep the keep-alive connection in sync
        try:
            if fault is not None:
                raise HubError(fault, f"injected {fault}")
            getattr(self, f"_{name}")()
        except HubError as err:
            self._send(err.status, {"error": err.message}, err.headers)
        except Exception:  # a bug here must fail the test, not look like a flaky network
            self.hub.errors.append(traceback.format_exc())
            self._send(500, {"error": "test server bug, see HubServer.errors"})

    def body(self) -> bytes:
        if self._body is not None:
            return self._body
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            self._body = b"".join(chunks)
        else:
            self._body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return self._body

    def json(self) -> dict:
        return json.loads(self.body() or b"{}")

    def _drop(self) -> None:
        """Cut the connection mid-request: read part of the body, then close without answering."""
        self._record(0)
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length // 2)
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _record(self, status: int) -> None:
        with self.hub.lock:
            self.hub.requests.append((self.route, self.command, self.path, status))

    def _send(self, status: int, payload: object = None, headers: dict[str, str] | None = None,
              raw: bytes | None = None) -> None:
        self._record(status)
        data = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream" if raw is not None else "application/json")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    # ------------------------------------------------------------------ auth

    def _user(self) -> str | None:
        header = self.headers.get("Authorization", "")
        if not header:
            return None
        user = self.hub.tokens.get(header.removeprefix("Bearer ").strip())
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header", header_message=True)
        return user

    def _repo(self, write: bool = False) -> Repo:
        """The repo of the URL, if the caller may read it (and write it, with ``write``).

        Like the Hub, a private repo the caller cannot read looks missing."""
        user = self._user()
        repo = self.hub.repos.get(self.args["repo"])
        if repo is None or (repo.private and user != repo.owner):
            raise HubError(401 if user is None else 404, "Repository not found", "RepoNotFound")
        if write and user is None:
            raise HubError(401, "You must be authenticated to write to a repo", "RepoNotFound")
        if write and user != repo.owner:
            raise HubError(403, f"You don't have the rights to write to {repo.repo_id}", header_message=True)
        return repo

    # -------------------------------------------------------------- handlers

    def _create(self) -> None:
        user, payload = self._user(), self.json()
        if user is None:
            raise HubError(401, "You must be logged in to create a repo", header_message=True)
        namespace = payload.get("organization") or user
        repo_id = f"{namespace}/{payload['name']}"
        url = f"{self.hub.url}/datasets/{repo_id}"
        if payload.get("type") != "dataset":
            raise HubError(400, "this test server only hosts dataset repos")
        if namespace != user:
            raise HubError(403, f"You don't have the rights to create a dataset under {namespace}", header_message=True)
        with self.hub.lock:
            if repo_id in self.hub.repos:
                return self._send(409, {"error": "You already created this dataset repo", "url": url})
            repo = Repo(repo_id, user, payload.get("visibility") == "private" or bool(payload.get("private")), _now())
            self.hub._commit(repo, "refs/heads/main", {".gitattributes": Entry.regular(GITATTRIBUTES)},
                             "initial commit", "", "system")
            self.hub.repos[repo_id] = repo
        self._send(200, {"url": url, "name": repo_id})

    def _validate_yaml(self) -> None:
        content = self.json().get("content", "")
        errors = []
        if content.startswith("---"):
            try:
                if not isinstance(yaml.safe_load(content.split("---")[1]) or {}, dict):
                    errors.append({"message": "metadata must be a YAML mapping"})
            except yaml.YAMLError as err:
                errors.append({"message": f"invalid YAML: {err}"})
        self._send(400 if errors else 200, {"errors": errors, "warnings": []})

    def _info(self) -> None:
        with self.hub.lock:
            repo = self._repo()
            commit = repo.commits[self.hub._resolve(repo, self.args.get("rev", "main"))]
            readme = commit.tree.get("README.md")
            card = {}
            if readme is not None and (readme.data or b"").startswith(b"---"):
                card = yaml.safe_load(readme.data.decode().split("---")[1]) or {}
            blobs = self.query.get("blobs", "").lower() == "true"
            siblings = [
                {"rfilename": p}
                | ({"size": e.size, "blobId": e.blob_id} if blobs else {})
                | ({"lfs": {"sha256": e.lfs_oid, "size": e.size, "pointerSize": len(lfs_pointer(e.lfs_oid, e.size))}}
                   if blobs and e.lfs_oid else {})
                for p, e in sorted(commit.tree.items())
            ]
        self._send(200, {
            "_id": repo.repo_id, "id": repo.repo_id, "author": repo.owner, "sha": commit.oid,
            "private": repo.private, "gated": False, "disabled": False, "downloads": 0, "likes": 0,
            "tags": [], "createdAt": repo.created_at, "lastModified": commit.date,
            "cardData": card, "siblings": siblings,
        })

    def _preupload(self) -> None:
        with self.hub.lock:
            repo = self._repo(write=self.query.get("create_pr") != "1")
            tree = repo.commits[self.hub._resolve(repo, self.args["rev"])].tree
            files = []
            for item in self.json()["files"]:
                mode = self.hub._upload_mode(tree, item["path"], item["size"], base64.b64decode(item["sample"]))
                entry = tree.get(item["path"])
                remote_oid = None if entry is None else (entry.lfs_oid or entry.blob_id)
                files.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": remote_oid})
        self._send(200, {"files": files, "commitOid": None})

    def _lfs_batch(self) -> None:
        with self.hub.lock:
            repo = self._repo(write=True)
            payload = self.json()
            if payload.get("operation") != "upload":
                raise HubError(400, "only uploads go through the batch API here")
            key = quote(repo.repo_id, safe="")
            objects = []
            for obj in payload["objects"]:
                item = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                if obj["oid"] not in repo.lfs:  # what the server holds is not asked again: uploads resume
                    item["actions"] = {
                        # pre-signed, like S3: the query is a credential that must never be printed
                        "upload": {"href": f"{self.hub.url}/lfs-upload/{key}/{obj['oid']}"
                                           f"?X-Amz-Signature=SIGNED{obj['oid'][:8]}"},
                        "verify": {"href": f"{self.hub.url}/datasets/{repo.repo_id}.git/info/lfs/objects/verify"},
                    }
                objects.append(item)
        self._send(200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"})

    def _lfs_upload(self) -> None:
        """The pre-signed storage URL: no Authorization header, like S3."""
        data, oid = self.body(), self.args["oid"]
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, "uploaded content does not match its sha256")
        with self.hub.lock:
            repo = self.hub.repos.get(self.args["key"])
            if repo is None:
                raise HubError(404, "no such upload target")
            repo.lfs[oid] = data
            self.hub.lfs_uploads.append(oid)
        self._send(200, {})

    def _lfs_verify(self) -> None:
        with self.hub.lock:
            repo, obj = self._repo(write=True), self.json()
            stored = repo.lfs.get(obj["oid"])
        if stored is None or len(stored) != obj["size"]:
            raise HubError(404, f"LFS object {obj['oid']} is missing or has the wrong size")
        self._send(200, {})

    def _commit(self) -> None:
        lines = [json.loads(line) for line in self.body().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "a commit starts with a header line")
        header, create_pr = lines[0]["value"], self.query.get("create_pr") == "1"
        with self.hub.lock:
            hooks, self.hub.commit_hooks = self.hub.commit_hooks, []
            for hook in hooks:
                hook()
            repo, user = self._repo(write=not create_pr), self._user()
            ref = self.hub._ref(repo, self.args["rev"])
            if ref is None or ref.startswith("refs/tags/"):
                raise HubError(404, f"Invalid rev id: {self.args['rev']}", "RevisionNotFound")
            parent = header.get("parentCommit")
            if create_pr:
                start = self.hub._resolve(repo, parent) if parent else repo.refs[ref]
                pr = PullRequest(max(repo.prs, default=0) + 1, header["summary"], user, ref.removeprefix("refs/heads/"),
                                 start, _now())
                repo.prs[pr.num] = pr
                ref = f"refs/pr/{pr.num}"
                repo.refs[ref] = start
            elif parent and not repo.refs[ref].startswith(parent.lower()):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            tree = dict(repo.commits[repo.refs[ref]].tree)
            for line in lines[1:]:
                self._apply(repo, tree, line["key"], line["value"])
            oid = self.hub._commit(repo, ref, tree, header["summary"], header.get("description", ""), user)
        base = f"{self.hub.url}/datasets/{repo.repo_id}"
        self._send(200, {
            "success": True, "commitOid": oid, "commitUrl": f"{base}/commit/{oid}", "hookOutput": "",
            "pullRequestUrl": f"{base}/discussions/{pr.num}" if create_pr else None,
        })

    @staticmethod
    def _apply(repo: Repo, tree: dict[str, Entry], key: str, value: dict) -> None:
        path = value["path"]
        if key == "file":
            tree[path] = Entry.regular(base64.b64decode(value["content"]))
        elif key == "lfsFile":
            data = repo.lfs.get(value["oid"])
            if data is None:
                raise HubError(422, f"LFS object {value['oid']} of {path} was never uploaded")
            tree[path] = Entry.lfs(value["oid"], len(data))
        elif key == "deletedFile":
            if tree.pop(path, None) is None:
                raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
        elif key == "deletedFolder":
            for doomed in [p for p in tree if p.startswith(path.rstrip("/") + "/")]:
                del tree[doomed]
        else:
            raise HubError(400, f"unknown commit operation {key}")

    def _tree(self) -> None:
        expand = self.query.get("expand", "").lower() == "true"
        recursive = self.query.get("recursive", "").lower() == "true"
        folder = self.args.get("path", "").strip("/")
        with self.hub.lock:
            repo = self._repo()
            head = self.hub._resolve(repo, self.args["rev"])
            tree = repo.commits[head].tree
            folders = _folders(tree)
            if folder and folder not in folders:
                raise HubError(404, f"{folder} is not a folder", "EntryNotFound")
            prefix = folder + "/" if folder else ""
            paths = sorted(p for p in set(tree) | folders if p.startswith(prefix))
            if not recursive:
                paths = [p for p in paths if "/" not in p[len(prefix):]]
            entries = [self._entry_json(repo, head, p, expand) for p in paths]
        page = self.hub.tree_page_size if not expand else min(50, self.hub.tree_page_size)
        start = int(self.query.get("cursor", 0))
        headers = {}
        if start + page < len(entries):
            query = f"recursive={recursive}&expand={expand}&cursor={start + page}"
            headers["Link"] = f'<{self.hub.url}{urlsplit(self.path).path}?{query}>; rel="next"'
        self._send(200, entries[start:start + page], headers)

    def _paths_info(self) -> None:
        form = parse_qs(self.body().decode())
        expand = form.get("expand", ["false"])[-1].lower() == "true"
        with self.hub.lock:
            repo = self._repo()
            head = self.hub._resolve(repo, self.args["rev"])
            known = set(repo.commits[head].tree) | _folders(repo.commits[head].tree)
            out = [self._entry_json(repo, head, p.strip("/"), expand) for p in form.get("paths", [])
                   if p.strip("/") in known]
        self._send(200, out)

    def _entry_json(self, repo: Repo, head: str, path: str, expand: bool) -> dict:
        entry = repo.commits[head].tree.get(path)
        if entry is None:
            out = {"type": "directory", "oid": _tree_oid(repo.commits[head].tree, path), "size": 0, "path": path}
        else:
            out = {"type": "file", "oid": entry.blob_id, "size": entry.size, "path": path}
            if entry.lfs_oid:
                pointer_size = len(lfs_pointer(entry.lfs_oid, entry.size))
                out["lfs"] = {"oid": entry.lfs_oid, "size": entry.size, "pointerSize": pointer_size}
        if expand:
            last = self.hub._last_commit(repo, head, path)
            out["lastCommit"] = {"id": last.oid, "title": last.title, "date": last.date}
        return out

    def _resolve(self) -> None:
        with self.hub.lock:
            repo = self._repo()
            head = self.hub._resolve(repo, self.args["rev"])
            entry = repo.commits[head].tree.get(self.args["path"])
            if entry is None:  # the client caches the miss under the commit named here
                raise HubError(404, "Entry not found", "EntryNotFound", headers={"X-Repo-Commit": head})
            data = self.hub._content(repo, entry)
        etag = entry.lfs_oid or entry.blob_id
        headers = {"X-Repo-Commit": head, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if entry.lfs_oid:
            headers |= {"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(entry.size)}
        status, body = 200, data
        requested = self.headers.get("Range")
        if requested:
            start_s, _, end_s = requested.removeprefix("bytes=").partition("-")
            start = int(start_s) if start_s else max(len(data) - int(end_s), 0)
            end = min(int(end_s), len(data) - 1) if start_s and end_s else len(data) - 1
            if start >= len(data):
                return self._send(416, {"error": "Range Not Satisfiable"}, {"Content-Range": f"bytes */{len(data)}"})
            status, body = 206, data[start:end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        self._send(status, headers=headers, raw=body)

    def _refs(self) -> None:
        with self.hub.lock:
            refs = dict(self._repo().refs)

        def listed(prefix: str, strip: bool) -> list[dict]:
            return [{"name": r.removeprefix(prefix) if strip else r, "ref": r, "targetCommit": oid}
                    for r, oid in sorted(refs.items()) if r.startswith(prefix)]

        out = {"branches": listed("refs/heads/", True), "converts": [], "tags": listed("refs/tags/", True)}
        if self.query.get("include_prs"):
            out["pullRequests"] = listed("refs/pr/", False)
        self._send(200, out)

    def _commits(self) -> None:
        with self.hub.lock:
            repo = self._repo()
            self.hub._resolve(repo, self.args["rev"])  # 404 on unknown revisions
            history = self.hub.history(repo.repo_id, self.args["rev"])
        self._send(200, [
            {"id": c.oid, "title": c.title, "message": c.message, "authors": [{"user": c.author}], "date": c.date}
            for c in history
        ])

    def _branch(self) -> None:
        with self.hub.lock:
            repo, ref = self._repo(write=True), f"refs/heads/{self.args['branch']}"
            if self.command == "DELETE":
                if repo.refs.pop(ref, None) is None:
                    raise HubError(404, f"Invalid rev id: {self.args['branch']}", "RevisionNotFound")
                return self._send(200, {})
            if ref in repo.refs:
                raise HubError(409, f"Reference already exists: {ref}")
            repo.refs[ref] = self.hub._resolve(repo, self.json().get("startingPoint") or "main")
        self._send(200, {})

    def _tag(self) -> None:
        with self.hub.lock:
            repo, payload = self._repo(write=True), self.json()
            ref = f"refs/tags/{payload['tag']}"
            if ref in repo.refs:
                raise HubError(409, f"Tag already exists: {payload['tag']}")
            repo.refs[ref] = self.hub._resolve(repo, self.args["rev"])
        self._send(200, {})

    def _discussion(self) -> None:
        with self.hub.lock:
            repo = self._repo()
            pr = repo.prs.get(int(self.args["num"]))
            if pr is None:
                raise HubError(404, "Discussion not found")
        self._send(200, {
            "num": pr.num, "title": pr.title, "author": {"name": pr.author}, "createdAt": pr.created_at,
            "status": pr.status, "repo": {"name": repo.repo_id, "type": "dataset"}, "isPullRequest": True,
            "events": [], "filesWithConflicts": [], "diff": "",
            "changes": {"base": f"refs/heads/{pr.base}", "mergeCommitId": pr.merge_commit},
        })

    def _merge(self) -> None:
        """Squash-merge a PR; if the base moved meanwhile, replay the PR's changes on it
        (a file changed on both sides since the PR started is a conflict)."""
        with self.hub.lock:
            repo = self._repo(write=True)
            pr = repo.prs.get(int(self.args["num"]))
            if pr is None or pr.status != "open":
                raise HubError(404 if pr is None else 409, "No open pull request with this number")
            base_ref = f"refs/heads/{pr.base}"
            start, ours, theirs = (repo.commits[oid].tree for oid in
                                   (pr.start, repo.refs[f"refs/pr/{pr.num}"], repo.refs[base_ref]))
            changed = {p for p in set(start) | set(ours) if start.get(p) != ours.get(p)}
            conflicts = sorted(p for p in changed if start.get(p) != theirs.get(p) != ours.get(p))
            if conflicts:
                raise HubError(409, f"Merge conflict on {', '.join(conflicts)}")
            tree = {p: e for p, e in theirs.items() if p not in changed} | {p: ours[p] for p in changed if p in ours}
            pr.merge_commit = self.hub._commit(repo, base_ref, tree, pr.title, f"Merge pull request #{pr.num}",
                                               self._user())
            pr.status = "merged"
        self._send(200, {})


# --------------------------------------------------------------------------- pytest wiring

_ENV_MARK = "POET_TEST_HUB_PORT"


def configure_client_env() -> None:
    """Point ``huggingface_hub`` and ``datasets`` at a local port, with Xet off, no token,
    and a throw-away ``HF_HOME``. Idempotent; must run before either library is imported."""
    if os.environ.get(_ENV_MARK):
        return
    imported = [name for name in ("huggingface_hub", "datasets") if name in sys.modules]
    if imported:
        raise RuntimeError(
            f"{', '.join(imported)} was imported before hub_server.configure_client_env(): "
            "call it at the top of tests/conftest.py so HF_ENDPOINT reaches the clients"
        )
    with socket.socket() as probe:  # a free port now; the session fixture binds it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    home = tempfile.mkdtemp(prefix="poet-hf-home-")
    atexit.register(shutil.rmtree, home, True)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_CACHE", "HF_DATASETS_CACHE",
                 "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HUGGINGFACE_CO_STAGING"):
        os.environ.pop(name, None)
    os.environ.update({
        _ENV_MARK: str(port),
        "HF_ENDPOINT": f"http://127.0.0.1:{port}",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HOME": home,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    })


@dataclass
class _Shared:
    server: HubServer | None = None
    users: int = 0


_shared = _Shared()  # one server per process, however many test modules import the fixture


@pytest.fixture(scope="session")
def running_hub() -> Iterator[HubServer]:
    """The server behind ``HF_ENDPOINT``, for the whole session.

    Each test module importing this fixture gets its own session-scoped instance (pytest
    keys fixtures by where they are defined), so they share one server and the last one
    stops it."""
    configure_client_env()
    if _shared.server is None:
        _shared.server = HubServer(port=int(os.environ[_ENV_MARK])).start()
    _shared.users += 1
    yield _shared.server
    _shared.users -= 1
    if _shared.users == 0:
        _shared.server.stop()
        _shared.server = None


@pytest.fixture
def hub(running_hub: HubServer) -> Iterator[HubServer]:
    """The server, emptied; fails the test if a client called an endpoint it lacks."""
    running_hub.reset()
    yield running_hub
    assert not running_hub.errors, "test server bugs:\n" + "\n".join(running_hub.errors)
    assert not running_hub.unhandled, f"endpoints the test server lacks: {running_hub.unhandled}"
