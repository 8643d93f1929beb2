"""Write the output folder atomically: build it next to the target, move it in when the run succeeded.

A crashed run leaves only ``DIR.poet-staging-*``, never something that looks
like a complete ``DIR``.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid

from apache_beam.io.filesystems import FileSystems

from poet.transforms.errors import UserError


def _is_local(path: str) -> bool:
    return "://" not in path


def _exists(path: str) -> bool:
    if _is_local(path):
        return os.path.exists(path)
    return bool(FileSystems.match([path.rstrip("/") + "/**"])[0].metadata_list)


def check_output(output: str, overwrite: bool) -> None:
    if _exists(output) and not overwrite:
        raise UserError(f"output folder {output} already exists; pass --overwrite to replace it")


def staging_folder(output: str) -> str:
    return f"{output}.poet-staging-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"


def discard(folder: str) -> None:
    if _is_local(folder):
        shutil.rmtree(folder, ignore_errors=True)
    elif _exists(folder):
        FileSystems.delete([folder.rstrip("/") + "/"])


def commit(staging: str, output: str) -> None:
    """Replace ``output`` by ``staging`` (a rename on local disks, copy-and-delete on object stores)."""
    if _is_local(output):
        if os.path.exists(output):
            old = f"{output}.poet-old-{uuid.uuid4().hex[:8]}"
            os.replace(output, old)
            os.replace(staging, output)
            shutil.rmtree(old)
        else:
            os.replace(staging, output)
        return
    discard(output)
    sources = [m.path for m in FileSystems.match([staging.rstrip("/") + "/**"])[0].metadata_list]
    FileSystems.rename(sources, [output + path[len(staging):] for path in sources])
    discard(staging)
