"""Dataflow, proven offline: Beam's ``--dry_run True`` builds both jobs with no credentials and no network,
each setup mistake is one line, the launcher never reads a shard back, ``poet score`` reads a Hub repo through
``hf://`` at one commit, and the README's ``--setup_file ./setup.py`` builds with the setuptools of a fresh venv.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import HH_SAMPLE, MINIMIND, REPO, prepare

from poet.transforms.contract import REF_COLUMN_NAMES as REF_COLUMNS

pytest.importorskip("apache_beam.io.gcp.gcsio", reason="the gcp extra is not installed")

CLOUD = ["--runner", "DataflowRunner", "--project", "my-project", "--region", "us-central1",
         "--temp_location", "gs://my-bucket/tmp"]


@pytest.fixture
def offline(monkeypatch):
    """Any connection other than to 127.0.0.1 fails at once, as on a machine without credentials or network."""
    connect = socket.socket.connect

    def local_only(self, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "localhost", "::1"):
            raise OSError(f"test: no network to {address[0]}")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: (_ for _ in ()).throw(
        OSError(f"test: no DNS for {host}")) if host not in ("127.0.0.1", "localhost", "::1") else [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", a[0] if a else 0))])


@pytest.fixture(scope="module")
def small_prepared(tmp_path_factory) -> Path:
    """The first 60 pairs of the sample, prepared with --max-length 256 (the tiny reference model's context)."""
    import gzip
    import itertools

    folder = tmp_path_factory.mktemp("small")
    with gzip.open(HH_SAMPLE, "rt") as source, gzip.open(folder / "hh-60.jsonl.gz", "wt") as target:
        target.writelines(itertools.islice(source, 60))
    assert prepare(folder / "prepared", "--input", str(folder / "hh-60.jsonl.gz"), "--tokenizer", str(MINIMIND),
                   "--max-length", "256", "--license", "mit") == 0
    return folder / "prepared"


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_prepare_dry_run_builds_the_dataflow_job_offline_and_writes_nothing(tmp_path, offline, capsys, caplog,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert prepare("gs://my-bucket/prepared/hh", "--input", str(HH_SAMPLE), "--tokenizer", str(MINIMIND),
                   "--max-length", "512", "--license", "mit", *CLOUD, "--dry_run", "True") == 0
    captured = capsys.readouterr()
    summary = captured.out
    assert summary.startswith("dry run: Dataflow job ") and "not submitted" in summary
    steps = int(summary.split("steps: ")[1].split()[0])
    assert steps > 30  # every step of PrepareDataset is in the job
    assert "of Dataflow's 10.00 MiB limit" in summary
    assert f"inside the job: tokenizer {MINIMIND} (" in summary and "carried in the job" in summary
    assert f"workers read: train: 1 file(s), {HH_SAMPLE}" in summary
    assert "workers write: gs://my-bucket/prepared/hh" in summary
    # the local input is allowed, with a warning, only because this is a dry run
    assert "Dataflow workers cannot reach paths of this machine: --input" in caplog.text
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_score_dry_run_builds_the_dataflow_job_offline(small_prepared, tiny_model, offline, capsys):
    from poet.pipeline.commands.cli import main

    before = sorted(p.relative_to(small_prepared) for p in small_prepared.rglob("*"))
    assert main(["score", str(small_prepared), "--ref-model", str(tiny_model), "--output", "gs://my-bucket/scored",
                 *CLOUD, "--dry_run", "True"]) == 0
    summary = capsys.readouterr().out
    assert "steps: " in summary and "of Dataflow's 10.00 MiB limit" in summary
    assert f"inside the job: reference model {tiny_model} at sha256:" in summary
    assert f"workers read: 1 shard(s) of {small_prepared}" in summary
    assert sorted(p.relative_to(small_prepared) for p in small_prepared.rglob("*")) == before  # nothing written


def _args() -> list[str]:
    return ["--input", str(HH_SAMPLE), "--tokenizer", str(MINIMIND), "--license", "mit"]


@pytest.mark.parametrize("case", ["no project", "no region", "no temp_location", "bad temp_location",
                                  "local input", "dry run elsewhere", "no gcp extra", "job too large"])
def test_each_dataflow_setup_mistake_is_one_line(case, tmp_path, offline, capsys, monkeypatch):
    cloud = dict(zip(CLOUD[::2], CLOUD[1::2]))
    expected = {"no project": "needs --project", "no region": "needs --region",
                "no temp_location": "needs --temp_location", "bad temp_location": "temp_location",
                "local input": "Dataflow workers cannot reach paths of this machine: --input",
                "dry run elsewhere": "pass --runner DataflowRunner too",
                "no gcp extra": "pip install 'poet-data[gcp]'",
                "job too large": "over Dataflow's 0.00 MiB limit: pass --tokenizer as a Hub id"}[case]
    if case.startswith("no ") and case != "no gcp extra":
        del cloud["--" + case[3:]]
    if case == "bad temp_location":
        cloud["--temp_location"] = "/tmp/not-a-bucket"
    if case == "dry run elsewhere":
        cloud = {"--dry_run": "True"}
    if case == "no gcp extra":  # as without the extra: the Dataflow runner's module cannot be imported
        monkeypatch.setitem(sys.modules, "apache_beam.runners.dataflow.dataflow_runner", None)
    if case == "job too large":  # a dry run finds it: the job is built, then measured
        from poet.pipeline.launch import dataflow

        monkeypatch.setattr(dataflow, "JOB_REQUEST_LIMIT", 1000)
        cloud["--dry_run"] = "True"
    output = str(tmp_path / "out") if case == "local input" else "gs://my-bucket/out"
    assert prepare(output, *_args(), *[part for item in cloud.items() for part in item]) == 2
    line = _one_line(capsys)
    assert line.startswith("poet prepare: error: ") and expected in line, line
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_gs_output_is_one_line_after_a_bounded_wait(tmp_path, capsys, monkeypatch):
    """GCS made unreachable quickly: its client is pointed at a closed port of 127.0.0.1, where it would retry for
    two minutes; poet waits ``REACH_TIMEOUT_S`` (shortened here) and says so in one line."""
    import time

    from poet.pipeline.launch import output

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{closed}")
    monkeypatch.setattr(output, "REACH_TIMEOUT_S", 2.0)
    started = time.monotonic()
    assert prepare("gs://my-bucket/out", "--input", "gs://my-bucket/raw/*.jsonl.gz", "--tokenizer", str(MINIMIND),
                   *CLOUD) == 2
    assert time.monotonic() - started < 30
    line = _one_line(capsys)
    assert line.startswith("poet prepare: error: cannot reach --output gs://my-bucket/out"), line


def test_the_launcher_builds_the_manifest_without_reading_a_shard(tmp_path, monkeypatch):
    """Every FileSystems.open on the launcher after the pipeline ran is counted: the manifest step opens no shard,
    no dead-letter file, no plot, only the writers' small records (and stats.json, for the plots)."""
    from apache_beam.io.filesystems import FileSystems

    from poet.pipeline.launch import staged
    from poet.transforms import manifest

    opened: list[str] = []
    run_staged_read_stats = staged.read_stats

    def counting_read_stats(folder):  # from here on, the pipeline has run: count the launcher's reads
        real_open = FileSystems.open

        def counting_open(path, *args, **kwargs):
            opened.append(path)
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(FileSystems, "open", staticmethod(counting_open))
        return run_staged_read_stats(folder)

    monkeypatch.setattr(staged, "read_stats", counting_read_stats)
    out = tmp_path / "out"
    assert prepare(out, "--input", str(HH_SAMPLE), "--tokenizer", str(MINIMIND), "--max-length", "512",
                   "--num-shards", "3") == 0
    assert opened and all("/.poet-records/" in path or path.endswith("/stats.json") for path in opened), opened
    entries = manifest.loads((out / "manifest.json").read_text())
    files = {p.relative_to(out).as_posix(): p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"}
    assert sorted(entries) == sorted(files) and len([p for p in files if p.startswith("data/")]) == 3
    import hashlib
    for path, entry in entries.items():
        assert (entry.size, entry.sha256) == (files[path].stat().st_size, hashlib.sha256(files[path].read_bytes())
                                              .hexdigest()), path
    assert not (out / ".poet-records").exists()


def test_score_reads_a_hub_repo_through_hf_at_one_commit(hub, small_prepared, tiny_model, tmp_path, monkeypatch):
    """Nothing is downloaded on the launcher; the shards are read at the commit the revision pointed at when the
    run started, even after a later push replaced them."""
    from huggingface_hub import HfApi
    from hub_server import USERS

    from poet.pipeline.commands.cli import main
    from poet.pipeline.hub import download

    api = HfApi(token=USERS["alice"])
    api.create_repo("alice/prepared", repo_type="dataset")
    api.upload_folder(repo_id="alice/prepared", repo_type="dataset", folder_path=small_prepared,
                      allow_patterns=["stats.json", "data/*"])
    sha = hub.head("alice/prepared")
    hub.write("alice/prepared", {p.relative_to(small_prepared).as_posix(): b"not parquet"
                                 for p in (small_prepared / "data").iterdir()})  # a later push: the run reads `sha`
    monkeypatch.setattr(download, "fetch_prepared", lambda *a, **k: pytest.fail("downloaded on the launcher"))
    assert main(["score", "alice/prepared", "--revision", sha, "--ref-model", str(tiny_model),
                 "--output", str(tmp_path / "hub")]) == 0
    assert not list(Path(os.environ["HF_HOME"]).rglob("datasets--alice--prepared*"))  # no snapshot was downloaded
    (shard,) = (small_prepared / "data").iterdir()
    scored = pq.read_table(tmp_path / "hub" / "data" / shard.name)
    assert scored.drop_columns(list(REF_COLUMNS)).equals(pq.read_table(shard))  # the rows of commit `sha`
    assert scored.column(REF_COLUMNS[0]).null_count == 0


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX virtual environment layout")
def test_setup_py_sdist_builds_with_the_setuptools_of_a_fresh_venv(tmp_path):
    """What Beam's stager does for ``--setup_file ./setup.py`` when ``build`` is not installed: ``python setup.py
    sdist`` in the launcher's environment, here a fresh venv with setuptools 65.5 (Python 3.11's bundled one)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "setuptools==65.5.0"],
                   check=True, timeout=300)
    version = subprocess.run([python, "-c", "import setuptools; print(setuptools.__version__)"], capture_output=True,
                             text=True, check=True).stdout.strip()
    assert version == "65.5.0"
    checkout = tmp_path / "checkout"  # a copy: setup.py sdist leaves an egg-info folder where it runs
    shutil.copytree(REPO, checkout, ignore=shutil.ignore_patterns(".*", "out", "_work", "__pycache__", "*.egg-info"))
    result = subprocess.run([python, "setup.py", "-q", "sdist", "--dist-dir", tmp_path / "dist"], cwd=checkout,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (sdist,) = (tmp_path / "dist").glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"setup.py", "pipeline/launch/dataflow.py", "dataset_cards/README.md.j2"} <= names
    with tarfile.open(sdist) as archive:
        info = archive.extractfile(next(n for n in archive.getnames() if n.endswith("/PKG-INFO"))).read().decode()
    assert "Classifier: License :: OSI Approved :: Apache Software License" in info
