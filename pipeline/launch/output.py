"""Write the output folder atomically: build it next to the target, move it in when the run succeeded.

A crashed run leaves only ``DIR.poet-staging-*``, never something that looks
like a complete ``DIR``. The last file written into the staging folder is its
manifest (:mod:`transforms.manifest`): it marks a folder poet wrote, the only
kind ``--overwrite`` replaces. The final move never replaces a folder that
appeared during the run (another run on the same ``--output``) unless
``--overwrite`` was given.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from poet.transforms import manifest
from poet.transforms.contract import MANIFEST_FILE
from poet.transforms.errors import UserError

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
    if _exists(output):
        if not overwrite:
            raise UserError(f"output folder {output} already exists; pass --overwrite to replace it")
        _check_replaceable(output)


def _check_local_output(output: str) -> None:
    real = os.path.realpath(output)
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
    """Only a folder poet wrote (it has a manifest) may be replaced: never a user's folder of other files."""
    if not _exists(f"{output}/{MANIFEST_FILE}"):
        raise UserError(f"--overwrite refuses to replace {output}: it has no {MANIFEST_FILE}, so poet did "
                        "not write it; remove it yourself or choose another --output")


def write_manifest(folder: str, document: dict) -> None:
    """Record the size and sha256 of every file in ``folder``, and the rows of every shard (from ``document``)."""
    shards = {shard["file"]: (split, shard["num_rows"])
              for split, files in document.get("shards", {}).items() for shard in files}
    prefix = folder.rstrip("/") + "/"
    entries = []
    for meta in FileSystems.match([prefix + "**"])[0].metadata_list:
        path = meta.path[len(prefix):].replace(os.sep, "/") if _is_local(folder) else meta.path[len(prefix):]
        digest = hashlib.sha256()
        with FileSystems.open(meta.path, compression_type=CompressionTypes.UNCOMPRESSED) as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
        split, rows = shards.get(path, (None, None))
        entries.append(manifest.FileEntry(path, meta.size_in_bytes, digest.hexdigest(), split, rows))
    with FileSystems.create(prefix + MANIFEST_FILE) as handle:
        handle.write(manifest.dumps(entries).encode("utf-8"))


def staging_folder(output: str) -> str:
    return f"{output}.poet-staging-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"


def discard(folder: str) -> None:
    if _is_local(folder):
        shutil.rmtree(folder, ignore_errors=True)
    elif _exists(folder):
        FileSystems.delete([folder.rstrip("/") + "/"])


def commit(staging: str, output: str, overwrite: bool) -> None:
    """Move ``staging`` to ``output`` (a rename on local disks, copy-and-delete on object stores).

    A folder at ``output`` that appeared during the run is replaced only with ``overwrite``, and only if poet wrote it.
    """
    if _exists(output):
        if not overwrite:
            raise UserError(f"output folder {output} appeared while this run was working (another poet run?); "
                            "nothing was replaced: pass --overwrite or choose another --output")
        _check_replaceable(output)
    if _is_local(output):
        if os.path.lexists(output):
            old = f"{output}.poet-old-{uuid.uuid4().hex[:8]}"
            os.replace(output, old)
            os.rename(staging, output)
            shutil.rmtree(old)
            return
        try:
            os.rename(staging, output)
        except OSError as err:  # the folder appeared between the check and the move
            raise UserError(f"cannot move the finished folder to {output} ({err.strerror}); nothing was replaced: "
                            "pass --overwrite or choose another --output") from None
        return
    discard(output)
    sources = [m.path for m in FileSystems.match([staging.rstrip("/") + "/**"])[0].metadata_list]
    FileSystems.rename(sources, [output + path[len(staging):] for path in sources])
    discard(staging)
