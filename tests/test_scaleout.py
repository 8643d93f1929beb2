"""Scale-out, tested as far as a machine without cloud access allows.

* Several worker processes (``--direct_num_workers 2 --direct_running_mode
  multi_processing``) write the same bytes as the default in-process run.
* What a Dataflow worker does with ``--setup_file ./setup.py``: Beam's own
  stager builds the sdist from the repository, the sdist alone is installed into
  a fresh virtual environment, and its ``poet prepare``, run outside the
  checkout, writes the same dataset. The fresh environment sees the third-party
  packages of this one (as a worker image provides them) but none of the
  project: not the checkout, not the editable install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import HH_SAMPLE, MINIMIND, REPO, SHAREGPT_SAMPLE, prepare

PROJECT_PACKAGES = ("poet.pipeline", "poet.transforms", "poet.trainer", "poet.dataset_cards")


def dataset_files(folder: Path) -> dict[str, bytes]:
    """Shards and dead letters, byte for byte; stats.json without its creation time."""
    files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.glob("data/*.parquet"))}
    files.update({str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.glob("dead_letter/*.jsonl"))})
    stats = json.loads((folder / "stats.json").read_text())
    stats["run"].pop("created", None)
    files["stats.json"] = json.dumps(stats, sort_keys=True).encode()
    return files


def test_worker_processes_write_the_same_bytes_as_one_in_process_worker(tmp_path):
    args = ["--input", f"train={HH_SAMPLE}", "--input", f"test={SHAREGPT_SAMPLE}", "--tokenizer", str(MINIMIND),
            "--max-length", "512", "--num-shards", "3", "--batch-size", "100"]
    assert prepare(tmp_path / "one", *args) == 0
    assert prepare(tmp_path / "two", *args, "--direct_num_workers", "2",
                   "--direct_running_mode", "multi_processing") == 0
    one, two = dataset_files(tmp_path / "one"), dataset_files(tmp_path / "two")
    assert sorted(one) == sorted(two)
    assert [name for name in one if name.startswith("data/")] == [
        f"data/{split}-{i:05d}-of-00003.parquet" for split in ("test", "train") for i in range(3)
    ]
    for name in one:
        assert one[name] == two[name], name
    assert not list(tmp_path.glob("*/.poet-fragments")), "temporary fragments must not reach the output"


def _site_without_the_project(target: Path) -> Path:
    """This environment's site-packages as a folder of links, minus the project and its editable install."""
    target.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        name = entry.name
        if (name == "poet" or name.startswith(("__editable__", "poet_data")) or name.endswith(".pth")
                or name == "__pycache__"):
            continue
        (target / name).symlink_to(entry)
    return target


def _run(command: list, cwd: Path, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX virtual environment layout")
def test_the_sdist_alone_in_a_fresh_environment_runs_the_pipeline(tmp_path, prepared_sample):
    from apache_beam.runners.portability.stager import Stager

    # 1. The sdist, built the way `--setup_file ./setup.py` builds it for Dataflow workers.
    sdist = Path(Stager._build_setup_package(str(REPO / "setup.py"), str(tmp_path)))
    assert sdist.name.endswith(".tar.gz")

    # 2. A fresh environment: its own site-packages, plus links to the third-party packages only.
    fresh = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", fresh], tmp_path, os.environ.copy())
    python = fresh / "bin" / "python"
    fresh_site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           tmp_path, os.environ.copy()).stdout.strip())
    deps = _site_without_the_project(tmp_path / "deps")
    (fresh_site / "third_party.pth").write_text(f"{deps}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", PYTHONNOUSERSITE="1")
    elsewhere = tmp_path / "elsewhere"  # a working directory with no project files in it
    elsewhere.mkdir()
    before = {entry.name for entry in fresh_site.iterdir()}
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--no-build-isolation", "--quiet",
          "--disable-pip-version-check", sdist], elsewhere, env)

    # 3. The install adds one top-level name, `poet`, and the project comes from it and nowhere else.
    added = {entry.name for entry in fresh_site.iterdir()} - before
    assert {name for name in added if not name.endswith(".dist-info")} == {"poet"}
    where = json.loads(_run([python, "-c", (
        "import importlib, json, importlib.metadata as m; "
        f"print(json.dumps({{n: importlib.import_module(n).__file__ for n in {PROJECT_PACKAGES!r}}}"
        " | {'dist': str(m.distribution('poet-data')._path)}))"
    )], elsewhere, env).stdout)
    for name, path in where.items():
        assert Path(path).resolve().is_relative_to(fresh.resolve()), f"{name} imported from {path}"

    # 4. Its `poet prepare`, run outside the checkout, writes the same dataset as the checkout's.
    out = tmp_path / "from-sdist"
    _run([fresh / "bin" / "poet", "prepare", "--input", HH_SAMPLE, "--tokenizer", MINIMIND, "--license", "mit",
          "--max-length", "512", "--output", out], elsewhere, env)
    assert dataset_files(out) == dataset_files(prepared_sample)
    # the card is rendered from the template shipped as package data
    assert card_without_date(out) == card_without_date(prepared_sample)


def card_without_date(folder: Path) -> str:
    created = json.loads((folder / "stats.json").read_text())["run"]["created"]
    return (folder / "README.md").read_text().replace(created, "CREATED")
