"""Scale-out, tested as far as a machine without cloud access allows.

* Several worker processes (``--direct_num_workers 2 --direct_running_mode
  multi_processing``) write the same bytes as the default in-process run.
* So does a real ``dask.distributed`` cluster: a scheduler and two worker
  processes on 127.0.0.1, started like a Slurm job starts them, running
  ``--runner DaskRunner --dask_client_address tcp://...``.
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
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from hostile_corpus import KEPT, SHAREGPT_ROWS, assert_every_row_accounted_for, write_rows
from conftest import HH_SAMPLE, MINIMIND, REPO, SHAREGPT_SAMPLE, prepare
from quality_corpus import ALL_ON, expected, observed, quality_args, write_corpus

PROJECT_PACKAGES = ("poet.pipeline", "poet.transforms", "poet.trainer", "poet.dataset_cards")


def dataset_files(folder: Path) -> dict[str, bytes]:
    """Shards, dead letters and stats.json, byte for byte."""
    files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.glob("data/*.parquet"))}
    files.update({str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.glob("dead_letter/*.jsonl"))})
    files["stats.json"] = (folder / "stats.json").read_bytes()
    return files


# hostile rows too: each is kept or dead-lettered the same way on every runner (this chat template never raises)
HOSTILE = [(line, KEPT if reason == "template_error" else reason) for line, reason in SHAREGPT_ROWS]


@pytest.fixture(scope="module")
def scale_args(tmp_path_factory) -> list[str]:
    hostile = write_rows(tmp_path_factory.mktemp("hostile") / "hostile.jsonl", HOSTILE)
    return ["--input", f"train={HH_SAMPLE}", "--input", f"test={SHAREGPT_SAMPLE}", "--input", f"hostile={hostile}",
            "--tokenizer", str(MINIMIND), "--max-length", "512", "--num-shards", "3", "--batch-size", "100"]


@pytest.fixture(scope="module")
def in_process_run(tmp_path_factory, scale_args) -> dict[str, bytes]:
    """The files of the default run (one in-process worker) with ``scale_args``."""
    out = tmp_path_factory.mktemp("scale") / "one"
    assert prepare(out, *scale_args) == 0
    files = dataset_files(out)
    assert [name for name in files if name.startswith("data/")] == [
        f"data/{split}-{i:05d}-of-00003.parquet" for split in ("hostile", "test", "train") for i in range(3)
    ]
    assert [name for name in files if name.startswith("dead_letter/")] == [
        "dead_letter/hostile.jsonl", "dead_letter/test.jsonl", "dead_letter/train.jsonl"]
    assert_every_row_accounted_for(out, HOSTILE, "hostile")
    return files


def assert_same_files(expected: dict[str, bytes], folder: Path) -> None:
    got = dataset_files(folder)
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert got[name] == expected[name], name
    assert not list(folder.glob(".poet-fragments")), "temporary fragments must not reach the output"


def test_worker_processes_write_the_same_bytes_as_one_in_process_worker(tmp_path, scale_args, in_process_run, capfd):
    assert prepare(tmp_path / "two", *scale_args, "--direct_num_workers", "2",
                   "--direct_running_mode", "multi_processing", "--progress-every", "0.01") == 0
    assert_same_files(in_process_run, tmp_path / "two")
    assert_every_row_accounted_for(tmp_path / "two", HOSTILE, "hostile")
    progress = [line for line in capfd.readouterr().err.splitlines() if "rows read" in line]
    assert progress and all(line.startswith("poet worker ") for line in progress)  # each worker logs its own


def test_row_batches_travel_whole_and_are_measured_by_one_row():
    """The rows' PCollections are typed, so Beam moves them with ``RowBatchCoder``; its size estimate (Beam
    samples one for nearly every batch) pickles one row, not the batch again."""
    import pickle

    import apache_beam as beam

    from poet.pipeline.steps.prepare_pairs import PreparePairs
    from poet.pipeline.steps.read import ReadPreferenceFiles, RowBatch, RowBatchCoder
    from poet.pipeline.steps.tokenizer_source import TokenizerSource
    from poet.transforms.contract import PrepareOptions
    from poet.transforms.progress import ProgressSettings

    coder = beam.coders.registry.get_coder(RowBatch)
    assert isinstance(coder, RowBatchCoder)
    batch = RowBatch({"ids": list(range(i, i + 50)), "text": "x" * i} for i in range(40))
    impl = coder.get_impl()
    assert impl.decode(impl.encode(batch)) == batch and type(impl.decode(impl.encode(batch))) is RowBatch
    assert impl.estimate_size(batch) == len(pickle.dumps(batch[0], pickle.HIGHEST_PROTOCOL)) * 40
    assert impl.estimate_size(RowBatch()) == 1

    options = PrepareOptions(max_length=None, batch_size=8)
    progress = ProgressSettings(every_s=0, terminal=False)
    for spread in (False, True):
        pipeline = beam.Pipeline()
        chunks = pipeline | ReadPreferenceFiles([("train", 0, str(HH_SAMPLE))], progress, spread=spread)
        rows, _ = chunks | PreparePairs(TokenizerSource.resolve(str(MINIMIND), carry=False), options, True, progress)
        assert chunks.element_type is RowBatch and rows.element_type is RowBatch


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DaskCluster:
    """``dask scheduler`` and ``dask worker`` processes on 127.0.0.1, each in its own process group."""

    def __init__(self, folder: Path, workers: int):
        self.folder, self.address = folder, f"tcp://127.0.0.1:{_free_port()}"
        self.processes: list[subprocess.Popen] = []
        dask = Path(sys.executable).parent / "dask"
        port = self.address.rsplit(":", 1)[1]
        self._start("scheduler", [dask, "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"])
        for i in range(workers):
            self._start(f"worker-{i}", [dask, "worker", self.address, "--host", "127.0.0.1", "--nthreads", "1",
                                        "--no-dashboard", "--memory-limit", "3GB",
                                        "--local-directory", folder / f"worker-{i}"])

    def _start(self, name: str, command: list) -> None:
        log = open(self.folder / f"{name}.log", "wb")
        self.processes.append(subprocess.Popen([str(c) for c in command], stdout=log, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, start_new_session=True))
        log.close()

    def wait_for_workers(self, count: int, timeout: float = 90) -> None:
        from distributed import Client

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.processes):
                break
            try:
                with Client(self.address, timeout=5) as client:
                    client.wait_for_workers(count, timeout=max(1, deadline - time.monotonic()))
                    return
            except (OSError, TimeoutError):
                time.sleep(0.5)
        pytest.fail(f"the Dask cluster did not start:\n{self.logs()}")

    def executed_tasks(self) -> list[int]:
        """Tasks each worker has run so far."""
        from distributed import Client

        with Client(self.address, timeout=10) as client:
            return sorted(client.run(lambda dask_worker: dask_worker.state.executed_count).values())

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.folder.glob("*.log")))

    def stop(self) -> None:
        """Workers first, then the scheduler: each process group gets SIGTERM, then SIGKILL after 10 s."""
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory, request) -> DaskCluster:
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    cluster = DaskCluster(tmp_path_factory.mktemp("dask"), workers=2)
    request.addfinalizer(cluster.stop)
    cluster.wait_for_workers(2)
    return cluster


@pytest.mark.skipif(sys.platform == "win32", reason="process groups")
def test_a_two_worker_dask_cluster_writes_the_same_bytes_as_one_in_process_worker(tmp_path, scale_args,
                                                                                  in_process_run, dask_cluster):
    before = dask_cluster.executed_tasks()
    code = prepare(tmp_path / "dask", *scale_args, "--runner", "DaskRunner",
                   "--dask_client_address", dask_cluster.address)
    assert code == 0, dask_cluster.logs()
    assert_same_files(in_process_run, tmp_path / "dask")
    after = dask_cluster.executed_tasks()
    assert all(a > b for a, b in zip(after, before)), f"both workers must have worked: {before} -> {after}"


@pytest.mark.skipif(sys.platform == "win32", reason="process groups")
def test_dask_partitions_split_one_large_file_and_write_the_same_bytes(tmp_path, dask_cluster):
    """``--dask_npartitions 4`` on one ``.jsonl`` (and one ``.parquet`` of several row groups): the files are read
    in parts by both workers, and the dataset is byte for byte the in-process run's."""
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl = tmp_path / "hh.jsonl"
    jsonl.write_bytes(gzip.decompress(HH_SAMPLE.read_bytes()) + b"not json\n\n")
    rows = [json.loads(line) for line in SHAREGPT_SAMPLE.read_text().splitlines()] if SHAREGPT_SAMPLE.suffix == \
        ".jsonl" else json.loads(SHAREGPT_SAMPLE.read_text())
    parquet = tmp_path / "sharegpt.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet, row_group_size=50)
    args = ["--input", f"train={jsonl}", "--input", f"test={parquet}", "--tokenizer", str(MINIMIND),
            "--max-length", "512", "--num-shards", "3", "--batch-size", "100"]
    assert prepare(tmp_path / "one", *args) == 0
    before = dask_cluster.executed_tasks()
    code = prepare(tmp_path / "dask", *args, "--runner", "DaskRunner", "--dask_client_address", dask_cluster.address,
                   "--dask_npartitions", "4")
    assert code == 0, dask_cluster.logs()
    assert_same_files(dataset_files(tmp_path / "one"), tmp_path / "dask")
    after = dask_cluster.executed_tasks()
    assert all(a > b for a, b in zip(after, before)), f"both workers must have worked: {before} -> {after}"


def test_more_partitions_than_files_cut_the_splittable_files(tmp_path):
    from poet.pipeline.launch.inputs import read_parts

    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("".join(f'{{"prompt": "p{i}", "chosen": "a", "rejected": "b"}}\n' for i in range(100)))
    files = [("train", 0, str(jsonl)), ("train", 1, str(HH_SAMPLE))]
    assert read_parts(files, 2) == files
    reads = read_parts(files, 6)
    assert [spec[:3] for spec in reads] == [files[0]] * 3 + [files[1]]  # gzip: read whole
    data = jsonl.read_bytes()
    assert [spec[3].first for spec in reads[:3]] == [data[:spec[3].start].count(b"\n") + 1 for spec in reads[:3]]
    assert reads[0][3].start == 0 and reads[1][3].start > 0


@pytest.mark.skipif(sys.platform == "win32", reason="process groups")
@pytest.mark.parametrize("test_size", ["0.25", "40"])
def test_the_data_quality_options_on_a_dask_cluster_like_pandas_and_in_process(tmp_path, dask_cluster, test_size):
    """Dedup, margin, decontamination (each worker builds the n-gram index in setup) and the test split by a
    fraction or a count: the same rows as pandas and the same bytes as the in-process run."""
    files, eval_file = write_corpus(tmp_path)
    args = quality_args(files, eval_file, *ALL_ON[:-1], test_size, "--num-shards", "2")
    assert prepare(tmp_path / "one", *args) == 0
    code = prepare(tmp_path / "dask", *args, "--runner", "DaskRunner", "--dask_client_address", dask_cluster.address,
                   "--dask_npartitions", "4")  # the two files read in parts
    assert code == 0, dask_cluster.logs()
    fraction, count = (float(test_size), None) if "." in test_size else (None, int(test_size))
    assert observed(tmp_path / "dask") == expected(files, eval_file, test_fraction=fraction, test_count=count)
    assert_same_files(dataset_files(tmp_path / "one"), tmp_path / "dask")
    assert (tmp_path / "one" / "README.md").read_bytes() == (tmp_path / "dask" / "README.md").read_bytes()


@pytest.mark.skipif(sys.platform == "win32", reason="process groups")
def test_prepare_preference_pairs_in_a_users_pipeline_on_the_dask_cluster_gives_the_commands_rows(tmp_path,
                                                                                              dask_cluster):
    from test_api import a_users_row, command_output, conversational_records, transform_output

    source, records = conversational_records(tmp_path)
    assert prepare(tmp_path / "command", "--input", str(source), "--tokenizer", str(MINIMIND), "--max-length", "512",
                   "--batch-size", "16") == 0
    rows, letters = command_output(tmp_path / "command")
    before = dask_cluster.executed_tasks()
    from apache_beam.runners.dask.dask_runner import DaskRunner

    got = transform_output(records, MINIMIND, tmp_path / "dask", DaskRunner(), max_length=512, batch_size=16,
                           beam_args=("--dask_client_address", dask_cluster.address))
    assert len(rows) > 50 and got == (rows, [letter for letter in letters if a_users_row(json.loads(letter)["row"])])
    assert dask_cluster.executed_tasks() > before, dask_cluster.logs()


def test_runner_problems_are_one_line(tmp_path, capsys):
    args = ["--input", str(SHAREGPT_SAMPLE), "--tokenizer", str(MINIMIND)]
    assert prepare(tmp_path / "out", *args, "--runner", "FlinkRunner") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown --runner 'FlinkRunner'" in err
    assert all(name in err for name in ("DirectRunner", "DaskRunner", "DataflowRunner"))
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    closed = f"tcp://127.0.0.1:{_free_port()}"
    assert prepare(tmp_path / "out", *args, "--runner", "apache_beam.runners.dask.dask_runner.DaskRunner",
                   "--dask_client_address", closed, "--dask_connection_timeout", "2") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot reach the Dask scheduler at {closed}" in err
    assert not (tmp_path / "out").exists()


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
    assert (out / "README.md").read_bytes() == (prepared_sample / "README.md").read_bytes()


def test_dask_workers_read_hub_files_at_the_commit_pinned_at_launch(hub, tmp_path, dask_cluster):
    import gzip

    from huggingface_hub import CommitOperationAdd, HfApi
    from hub_server import USERS

    api = HfApi(token=USERS["alice"])
    api.create_repo("alice/hh", repo_type="dataset")
    with gzip.open(HH_SAMPLE, "rt", encoding="utf-8") as handle:
        lines = [line for line in handle if line.strip()][:300]
    files = {f"raw/part-{i}.jsonl.gz": gzip.compress("".join(lines[i::2]).encode(), mtime=0) for i in range(2)}
    api.create_commit("alice/hh", [CommitOperationAdd(p, d) for p, d in files.items()], commit_message="seed",
                      repo_type="dataset")
    sha = hub.head("alice/hh")
    args = ["--input", "hf://datasets/alice/hh/raw/*.jsonl.gz", "--tokenizer", str(MINIMIND), "--max-length", "512"]
    assert prepare(tmp_path / "one", *args) == 0
    hub.write("alice/hh", {path: b"not gzip" for path in files})  # a push after launch: workers still read `sha`
    assert prepare(tmp_path / "dask", "--input", f"hf://datasets/alice/hh@{sha}/raw/*.jsonl.gz", *args[2:],
                   "--runner", "DaskRunner", "--dask_client_address", dask_cluster.address) == 0, dask_cluster.logs()
    one, dask = dataset_files(tmp_path / "one"), dataset_files(tmp_path / "dask")
    assert [name for name in one if name.startswith("data/")] and sorted(one) == sorted(dask)
    for name in one:
        if name != "stats.json":  # the runs' options name the inputs differently (main, then the sha)
            assert one[name] == dask[name], name
    stats = [json.loads((tmp_path / run / "stats.json").read_text()) for run in ("one", "dask")]
    assert [s["run"]["source_repos"] for s in stats] == [[{"repo_id": "alice/hh", "revision": sha, "requested": r}]
                                                         for r in ("main", sha)]
    assert [{k: v for k, v in s.items() if k != "run"} for s in stats][0] == {
        k: v for k, v in stats[1].items() if k != "run"}
