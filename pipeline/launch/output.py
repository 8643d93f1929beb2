"""Write the output folder atomically: build it next to the target, move it in when the run succeeded.

A crashed run leaves only ``DIR.poet-staging-*-PID@HOST``, never something that
looks like a complete ``DIR``; the next run on ``DIR`` removes it when that process
of this host is gone, and names the staging folders it must leave alone. The last file written into the staging folder is its
manifest (:mod:`transforms.manifest`): it marks a folder poet wrote, the only
kind ``--overwrite`` replaces. The final move never replaces a folder that
appeared during the run (another run on the same ``--output``) unless
``--overwrite`` was given.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import threading
import time
import uuid

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from poet.pipeline.commands.logs import REACH_THREAD
from poet.pipeline.steps.file_records import RECORDS, read_records
from poet.transforms import manifest
from poet.transforms.contract import MANIFEST_FILE
from poet.transforms.errors import UserError, first_line

_SYSTEM_FOLDERS = ("/proc", "/sys", "/dev")


def _is_local(path: str) -> bool:
    return "://" not in path


def _exists(path: str) -> bool:
    if _is_local(path):
        return os.path.exists(path)
    return bool(FileSystems.match([path.rstrip("/") + "/**"])[0].metadata_list)


def check_output(output: str, overwrite: bool) -> None:
    """Refuse, before any work, an ``--output`` the run could not (or must not) end up replacing."""
    if _is_local(output):
        _check_local_output(output)
    if _exists(output) if _is_local(output) else _reach(output):
        if not overwrite:
            raise UserError(f"output folder {output} already exists; pass --overwrite to replace it")
        _check_replaceable(output)


REACH_TIMEOUT_S = 20.0


def _reach(output: str) -> bool:
    """Whether a remote ``output`` exists, asked once with a bound: an unreachable object store is one line
    after ``REACH_TIMEOUT_S``, not minutes of the client's retries and a traceback. The question is asked in a
    daemon thread, which a hung client cannot keep from ending the command."""
    answer: list = []

    def ask():
        try:
            answer.append(_exists(output))
        except Exception as err:  # noqa: BLE001 - no credentials, no such bucket...: reported below
            answer.append(err)

    asking = threading.Thread(target=ask, name=REACH_THREAD, daemon=True)
    asking.start()
    asking.join(REACH_TIMEOUT_S)
    if not answer:
        raise UserError(f"cannot reach --output {output}: no answer in {REACH_TIMEOUT_S:.0f} s; check the network "
                        "and the credentials (gcloud auth application-default login)")
    if isinstance(answer[0], Exception):
        raise UserError(f"cannot reach --output {output}: {first_line(answer[0])}")
    return answer[0]


def _check_local_output(output: str) -> None:
    real = os.path.realpath(output)
    if os.path.islink(output.rstrip("/") or "/"):  # replacing it would move the link, not the folder it names
        where = "a folder that does not exist" if not os.path.exists(output) else real
        raise UserError(f"--output {output} is a symbolic link to {where}; pass the folder itself: --output {real}")
    if real == os.path.realpath("/") or any(real == f or real.startswith(f + "/") for f in _SYSTEM_FOLDERS):
        raise UserError(f"--output {output} is a system location; choose a folder of your own, e.g. out/my-dataset")
    if os.path.exists(output) and not os.path.isdir(output):
        raise UserError(f"--output {output} is a file, not a folder; choose another path")
    parent = os.path.dirname(real)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UserError(f"--output {output} is inside {parent}, which is a file, not a folder; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--output {output}: cannot write in {parent} (permission denied); choose another path")


def _check_replaceable(output: str) -> None:
    """Only a folder poet wrote may be replaced: its manifest is poet's (schema) and the folder holds exactly the
    files it lists, so a user's folder (or another tool's with its own ``manifest.json``) is never deleted."""
    prefix = output.rstrip("/") + "/"
    refuse = f"--overwrite refuses to replace {output}: "
    hint = "; remove it yourself or choose another --output"
    try:
        with FileSystems.open(prefix + MANIFEST_FILE, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            entries = manifest.loads(handle.read().decode("utf-8"))
    except OSError:
        raise UserError(f"{refuse}it has no {MANIFEST_FILE}, so poet did not write it{hint}") from None
    except (ValueError, KeyError, TypeError, AttributeError):  # UnicodeDecodeError is a ValueError
        raise UserError(f"{refuse}its {MANIFEST_FILE} is not poet's, so poet did not write it{hint}") from None
    found = _files(output)
    found.pop(MANIFEST_FILE, None)
    for path, entry in sorted(entries.items()):
        if found.get(path) != entry.size:
            raise UserError(f"{refuse}{path}, listed in its {MANIFEST_FILE}, is missing or changed, so it is "
                            f"not the folder poet wrote{hint}")
    if extra := sorted(set(found) - set(entries)):
        raise UserError(f"{refuse}it holds {extra[0]}, which poet did not write{hint}")


def _files(folder: str) -> dict[str, int]:
    """Every file under ``folder`` (hidden ones too), by ``/``-separated relative path, with its size."""
    if not _is_local(folder):
        prefix = folder.rstrip("/") + "/"
        return {meta.path[len(prefix):]: meta.size_in_bytes for meta in FileSystems.match([prefix + "**"])[0].metadata_list}
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            found[os.path.relpath(path, folder).replace(os.sep, "/")] = os.lstat(path).st_size
    return found


_FULL_OR_READ_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def write_problem(err: BaseException, output: str) -> UserError | None:
    """A full disk (or quota) or a read-only file system behind an error of the run, as one line, or None.

    The error may come from this process or from a worker, wrapped by the runner in its own (on some
    runners only as the text of a remote traceback): both the chain of causes and the text are searched.
    """
    seen, text = err, str(err)
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _FULL_OR_READ_ONLY:
            return _cannot_write(output, seen.errno)
        seen = seen.__cause__ or seen.__context__
    for code in _FULL_OR_READ_ONLY:
        if os.strerror(code) in text:
            return _cannot_write(output, code)
    return None


def _cannot_write(output: str, code: int) -> UserError:
    fix = "make it writable" if code == errno.EROFS else "free some space"
    return UserError(f"cannot write {output} ({os.strerror(code)}); nothing was replaced: {fix} or choose another "
                     "--output, then run again")


def write_manifest(folder: str, document: dict) -> None:
    """Record the size and sha256 of every file in ``folder``, and the rows of every shard (from ``document``).

    Built from the records the writers made as they wrote (:mod:`pipeline.steps.file_records`): the launcher
    lists the folder and reads those small records, never a shard. A file without a record, or of another
    size than its record says, is a bug, not something to hash here."""
    shards = {shard["file"]: (split, shard["num_rows"])
              for split, files in document.get("shards", {}).items() for shard in files}
    prefix = folder.rstrip("/") + "/"
    records = read_records(folder)
    entries = []
    for meta in FileSystems.match([prefix + "**"])[0].metadata_list:
        path = meta.path[len(prefix):].replace(os.sep, "/") if _is_local(folder) else meta.path[len(prefix):]
        if path.startswith(RECORDS + "/"):
            continue
        record = records.get(path)
        if record is None or record.size != meta.size_in_bytes:
            raise RuntimeError(f"{meta.path} was written without a record of its bytes")
        split, rows = shards.get(path, (None, None))
        entries.append(manifest.FileEntry(path, record.size, record.sha256, split, rows))
    discard(prefix + RECORDS)
    with FileSystems.create(prefix + MANIFEST_FILE) as handle:
        handle.write(manifest.dumps(entries).encode("utf-8"))


def staging_folder(output: str) -> str:
    """A new staging folder's name: it records the run's process id and host, so a later run can tell a crashed
    run's folder (:func:`clear_crashed_staging`) from one still being written."""
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    return f"{output}{_STAGING}{stamp}-{os.getpid()}@{_host()}"


_STAGING = ".poet-staging-"
_OWNER = re.compile(r"-(\d+)@([A-Za-z0-9._-]+)$")


def _host() -> str:
    """This host's name and, on Linux, its process-id namespace: containers that share a host name (``--net=host``)
    and a folder do not see each other's processes, so their runs must not look like the same host's."""
    try:
        namespace = "." + re.sub(r"\D", "", os.readlink("/proc/self/ns/pid"))
    except OSError:
        namespace = ""
    return (re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "unknown") + namespace


def clear_crashed_staging(output: str) -> list[str]:
    """Remove the staging folders next to a local ``output`` left by runs of this host whose process is gone
    (killed, out of memory, power lost); returns those left alone: another host's, a live process's, or an
    older poet's (no owner recorded), which the user removes (``rm -r``) once no run is writing them."""
    if not _is_local(output):
        return []
    parent, name = os.path.split(os.path.abspath(output))
    left = []
    for entry in sorted(os.listdir(parent)) if os.path.isdir(parent) else []:
        if not entry.startswith(name + _STAGING):
            continue
        owner = _OWNER.search(entry)
        if owner and owner.group(2) == _host() and not _alive(int(owner.group(1))):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
        else:
            left.append(os.path.join(parent, entry))
    return left


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def discard(folder: str) -> None:
    if _is_local(folder):
        shutil.rmtree(folder, ignore_errors=True)
    elif _exists(folder):
        FileSystems.delete([folder.rstrip("/") + "/"])


def commit(staging: str, output: str, overwrite: bool) -> None:
    """Move ``staging`` to ``output`` (a rename on local disks; on object stores, which have no rename, each file
    is copied inside the store, the manifest last, then the staging folder deleted: nothing passes through here).

    A folder at ``output`` that appeared during the run is replaced only with ``overwrite``, and only if poet wrote it.
    """
    if _exists(output):
        if not overwrite:
            raise UserError(f"output folder {output} appeared while this run was working (another poet run?); "
                            "nothing was replaced: pass --overwrite or choose another --output")
        _check_replaceable(output)
    if _is_local(output):
        _check_local_output(output)  # a symbolic link that appeared during the run is refused, not moved away
        if os.path.lexists(output):
            old = f"{output}.poet-old-{uuid.uuid4().hex[:8]}"
            os.replace(output, old)
            try:
                os.rename(staging, output)
            except OSError:
                os.replace(old, output)
                raise
            shutil.rmtree(old, ignore_errors=True)
            return
        try:
            os.rename(staging, output)
        except OSError as err:  # the folder appeared between the check and the move
            raise UserError(f"cannot move the finished folder to {output} ({err.strerror}); nothing was replaced: "
                            "pass --overwrite or choose another --output") from None
        return
    discard(output)
    sources = [m.path for m in FileSystems.match([staging.rstrip("/") + "/**"])[0].metadata_list]
    last = [path for path in sources if path.endswith("/" + MANIFEST_FILE)]  # a folder with it is complete
    for batch in ([path for path in sources if path not in last], last):
        FileSystems.rename(batch, [output + path[len(staging):] for path in batch])  # copies inside the store
    discard(staging)
