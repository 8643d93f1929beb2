"""Static tools can read the package: mypy resolves every ``poet.*`` import to the checkout's files.

``poet`` maps the repository's top-level folders to one installed name; in the checkout, ``poet/pipeline``,
``poet/transforms``, ... are links to them, so a type checker or an editor follows ``poet.*`` imports without
running the import system or an install. Only whether imports resolve is checked here, not the types.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE_FOLDERS = ("poet", "pipeline", "transforms", "trainer", "dataset_cards")
UNRESOLVED = re.compile(r'error: (Cannot find implementation or library stub for module named "poet[."]'
                        r'|Module "poet[.\w]*" has no attribute'
                        r'|Skipping analyzing "poet|Library stubs not installed for "poet)')


def mypy(*targets: str, path: Path) -> str:
    """mypy's report on ``targets``, run in the checkout, with ``path`` searched for modules too."""
    done = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
                           "--cache-dir", str(REPO / ".mypy_cache"), *targets],
                          capture_output=True, text=True, cwd=REPO, timeout=900, env={**os.environ, "MYPYPATH": str(path)})
    assert done.returncode in (0, 1), done.stderr  # 1: type errors, which this test does not judge
    return done.stdout


def test_every_poet_import_resolves_to_the_checkouts_files():
    pytest.importorskip("mypy", reason="the test extra is not installed")
    folder = REPO / ".mypy_cache" / "probe"  # one place, so mypy's cache knows it
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / "poet_probe.py"  # two imports that do not resolve: the check must see them
    probe.write_text("import poet.no_such_module\nfrom poet.transforms.contract import NO_SUCH_NAME\n")
    output = mypy("-p", "poet", "-m", "poet_probe", path=folder)
    unresolved = [line for line in output.splitlines() if UNRESOLVED.search(line)]
    assert [Path(line.split(":")[0]).name for line in unresolved] == [probe.name] * 2, "\n".join(unresolved)
    modules = sum(1 for folder in PACKAGE_FOLDERS for _ in (REPO / folder).rglob("*.py"))
    checked = re.search(r"(?:checked|in) (\d+) source files?\)?$", output.strip())
    assert checked and int(checked.group(1)) == modules + 1, output[-500:]  # every module of the package, read
    assert all(line.startswith(("poet/", f"{folder}/")) for line in output.splitlines()[:-1]
               if "error:" in line and probe.name not in line), "read outside poet/"
