"""The output side of a run at real scale: what poet writes, replaces, prints and reads back.

Nothing stale (a folder prepared again is what the next reader sees), nothing destroyed
(``--overwrite`` replaces only the folder poet wrote, symbolic links are refused, nothing is
left next to the output), and nothing from data, a stats.json or the Hub reaches the terminal
as a control sequence.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import GPT2, MINIMIND, prepare
from hostile_corpus import HOSTILE_STATS, PLAIN_ROWS, write_rows
from poet.pipeline.commands.cli import main


def one_line(capfd) -> str:
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("poet")]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


# --------------------------------------------------------------------------- what is printed


def test_stats_escapes_control_characters_from_the_document(tmp_path, capfd, plain_run):
    document = json.loads((plain_run[1] / "stats.json").read_text())
    train = document["splits"]["train"]
    document["splits"] = {"\x1b]0;pwned\x07train": train,
                          "test\x1b[2J": {**train, "dead_letter_reasons": {"\x1b[2Jclear": 1, "\x9bcsi": 2}}}
    (tmp_path / "stats.json").write_text(json.dumps(document))
    assert main(["stats", str(tmp_path)]) == 0
    out = capfd.readouterr().out
    assert "\x1b" not in out and "\x9b" not in out and "\x07" not in out
    assert "\\x1b]0;pwned\\x07train" in out and "\\x1b[2Jclear" in out


def test_error_lines_escape_control_characters(capfd):
    assert main(["stats", "\x1b]0;pwned\x07/x\x1b[2J"]) == 2
    line = one_line(capfd)
    assert "\x1b" not in line and "\\x1b[2J" in line


@pytest.mark.parametrize("case", sorted(HOSTILE_STATS))
def test_stats_refuses_a_stats_json_poet_did_not_write(tmp_path, capfd, plain_run, case):
    document = json.loads((plain_run[1] / "stats.json").read_text())
    HOSTILE_STATS[case](document)
    (tmp_path / "stats.json").write_text(json.dumps(document))
    assert main(["stats", str(tmp_path)]) == 2
    assert "is damaged or not poet's" in one_line(capfd)


# --------------------------------------------------------------------------- what --overwrite replaces


def _foreign(folder: Path, manifest: str) -> Path:
    folder.mkdir()
    (folder / "manifest.json").write_text(manifest)
    (folder / "background.js").write_text("years of work")
    return folder


@pytest.mark.parametrize("manifest", [
    '{"manifest_version": 3, "name": "my extension"}',  # a browser extension's
    '{"manifest_version": 1, "files": {}}',  # poet's schema, but the folder holds a file it does not list
    '{"manifest_version": 1, "files": {"background.js": {"size": 1, "sha256": "0"}}}',  # listed, but changed
    "not json",
], ids=["extension", "unlisted-file", "changed-file", "not-json"])
def test_overwrite_refuses_a_folder_whose_manifest_is_not_poets(tmp_path, capfd, plain_run, manifest):
    mine = _foreign(tmp_path / "mine", manifest)
    assert prepare(mine, "--input", str(plain_run[0]), "--tokenizer", str(GPT2), "--overwrite") == 2
    assert "--overwrite refuses to replace" in one_line(capfd)
    assert (mine / "background.js").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_overwrite_refuses_a_poet_folder_with_a_file_added(tmp_path, capfd, plain_run):
    folder = tmp_path / "out"
    shutil.copytree(plain_run[1], folder)
    (folder / ".notes.txt").write_text("mine")
    assert prepare(folder, "--input", str(plain_run[0]), "--tokenizer", str(GPT2), "--overwrite") == 2
    assert "holds .notes.txt, which poet did not write" in one_line(capfd)
    assert (folder / ".notes.txt").read_text() == "mine"


def test_overwrite_replaces_a_folder_poet_wrote(tmp_path, plain_run):
    folder = tmp_path / "out"
    shutil.copytree(plain_run[1], folder)
    assert prepare(folder, "--input", str(plain_run[0]), "--tokenizer", str(GPT2), "--overwrite") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("target", ["dangling", "poet-folder"])
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_a_symlinked_output_is_refused_in_one_line(tmp_path, capfd, plain_run, target, overwrite):
    real = tmp_path / "real"
    if target == "poet-folder":
        shutil.copytree(plain_run[1], real)
    link = tmp_path / "link"
    link.symlink_to(real)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert prepare(link, "--input", str(plain_run[0]), "--tokenizer", str(GPT2), *overwrite) == 2
    assert "is a symbolic link to " in one_line(capfd)
    assert sorted(p.name for p in tmp_path.iterdir()) == before and link.is_symlink()
    if target == "poet-folder":
        assert (real / "manifest.json").exists()


# --------------------------------------------------------------------------- what is left behind


def test_staging_folders_of_crashed_runs_are_removed_and_others_reported(tmp_path, capfd, caplog, plain_run):
    gone = subprocess.Popen(["true"])
    gone.wait()
    from poet.pipeline.launch.output import staging_folder

    host = staging_folder(str(tmp_path / "x")).rsplit("@", 1)[1]  # this host, as a run records it
    crashed = tmp_path / f"out.poet-staging-20260101-000000-deadbeef-{gone.pid}@{host}"
    running = tmp_path / f"out.poet-staging-20260101-000000-cafecafe-{os.getpid()}@{host}"
    elsewhere = tmp_path / f"out.poet-staging-20260101-000000-feedfeed-{gone.pid}@another-host"
    older = tmp_path / "out.poet-staging-20250101-000000-0badf00d"
    for folder in (crashed, running, elsewhere, older):
        folder.mkdir()
        (folder / "stats.json").write_text("{}")
    assert prepare(tmp_path / "out", "--input", str(plain_run[0]), "--tokenizer", str(GPT2)) == 0
    err = capfd.readouterr().err + caplog.text
    assert not crashed.exists() and running.exists() and elsewhere.exists() and older.exists()
    assert all(f"{folder} is the staging folder of another run" in err for folder in (running, elsewhere, older))


# --------------------------------------------------------------------------- what the trainer reads


def test_train_reads_a_folder_prepared_again_not_a_stale_cache(tmp_path):
    """Labels fixed at the source with identical lengths (chosen and rejected swapped): same card, same file
    names and sizes; the trainer must read the new rows."""
    from poet.trainer.data import load_pairs

    rows = [{"prompt": f"Question {i}?", "chosen": f" Good answer {i}.", "rejected": f" Bad reply {i}!"}
            for i in range(16)]
    source = tmp_path / "train.jsonl"
    output = tmp_path / "out"
    args = ("--input", str(source), "--tokenizer", str(GPT2), "--license", "mit")
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert prepare(output, *args) == 0
    first = load_pairs(str(output), "train")
    source.write_text("".join(json.dumps({**r, "chosen": r["rejected"], "rejected": r["chosen"]}) + "\n" for r in rows))
    assert prepare(output, *args, "--overwrite") == 0
    second = load_pairs(str(output), "train")
    assert list(second.chosen.lengths) == list(first.rejected.lengths)
    assert [list(second.chosen[i]) for i in range(16)] == [list(first.rejected[i]) for i in range(16)]


def _foreign_split(folder: Path, **columns) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = {"prompt_ids": [[1, 2], [3]], "chosen_ids": [[4, 5], [6]], "rejected_ids": [[7], [8, 9]]}
    (folder / "data").mkdir(parents=True)
    pq.write_table(pa.table({**base, **columns}), folder / "data" / "train-00000-of-00001.parquet")
    return folder


@pytest.mark.parametrize("columns, message", [
    ({"chosen_ids": [[4, -5], [6]]}, "holds token id -5"),
    ({"prompt_ids": [[1, 2**40], [3]]}, f"holds token id {2**40}"),
    ({"prompt_ids": [[], [3]]}, "empty prompt_ids"),
    ({"rejected_ids": [[7], []]}, "empty rejected_ids"),
    ({"ref_chosen_logps": [-1.0, math.nan], "ref_rejected_logps": [-1.0, -2.0]}, "holds nan"),
    ({"ref_chosen_logps": [-1.0, -2.0], "ref_rejected_logps": [-math.inf, -2.0]}, "holds -inf"),
    ({"ref_chosen_logps": [3e38, -2.0], "ref_rejected_logps": [-1.0, -2.0]}, "holds 3e\\+38"),
], ids=["negative-id", "huge-id", "empty-prompt", "empty-completion", "nan", "-inf", "3e38"])
def test_trainer_input_is_checked_before_the_first_step(tmp_path, columns, message):
    from poet.trainer.data import load_pairs
    from poet.transforms.errors import UserError

    folder = _foreign_split(tmp_path / "foreign", **columns)
    with pytest.raises(UserError, match=message):
        load_pairs(str(folder), "train")


# --------------------------------------------------------------------------- the card


def test_the_card_names_the_first_input_files_and_counts_the_rest(tmp_path):
    from poet.transforms.card import LISTED_FILES

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(LISTED_FILES + 30):
        (folder / f"part-{i:05d}.jsonl").write_text(json.dumps(
            {"prompt": f"Q{i}?", "chosen": " yes", "rejected": " no"}) + "\n")
    output = tmp_path / "out"
    assert prepare(output, "--input", str(folder / "part-*.jsonl"), "--tokenizer", str(GPT2), "--license", "mit") == 0
    card = (output / "README.md").read_text()
    assert card.count("part-00000.jsonl") == 2  # once in the YAML header, once in the provenance table
    assert f"part-{LISTED_FILES:05d}.jsonl" not in card and "and 30 more" in card


def test_score_in_place_keeps_the_dead_letters_its_stats_count(tmp_path, tiny_model):
    source = write_rows(tmp_path / "plain.jsonl", PLAIN_ROWS)
    folder = tmp_path / "out"
    assert prepare(folder, "--input", str(source), "--tokenizer", str(MINIMIND), "--license", "mit",
                   "--max-length", "256") == 0
    letters = (folder / "dead_letter" / "train.jsonl").read_bytes()
    assert main(["score", str(folder), "--output", str(folder), "--overwrite", "--ref-model", str(tiny_model)]) == 0
    stats = json.loads((folder / "stats.json").read_text())["splits"]["train"]
    assert stats["dead_lettered"] > 0 and (folder / "dead_letter" / "train.jsonl").read_bytes() == letters
    assert main(["score", str(folder), "--output", str(tmp_path / "again"), "--ref-model", str(tiny_model)]) == 0
    assert (tmp_path / "again" / "dead_letter" / "train.jsonl").read_bytes() == letters


# --------------------------------------------------------------------------- a Dask cluster that is not there


@pytest.fixture
def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.mark.parametrize("address", ["silent", "not-an-address", "tls://127.0.0.1:9"])
def test_a_dask_address_that_is_no_scheduler_is_one_line_in_bounded_time(tmp_path, capfd, plain_run, silent_server,
                                                                         address):
    pytest.importorskip("distributed")
    address = silent_server if address == "silent" else address
    started = time.monotonic()
    assert prepare(tmp_path / "out", "--input", str(plain_run[0]), "--tokenizer", str(GPT2), "--runner", "DaskRunner",
                   "--dask_client_address", address, "--dask_connection_timeout", "2") == 2
    assert "Dask scheduler at" in one_line(capfd) and time.monotonic() - started < 30
    assert not list(tmp_path.iterdir())


def test_a_dask_cluster_without_workers_ends_in_one_line(tmp_path, capfd, plain_run, monkeypatch):
    distributed = pytest.importorskip("distributed")
    import poet.pipeline.launch.runners as runners

    monkeypatch.setattr(runners, "NO_WORKERS_TIMEOUT", 2.0)
    monkeypatch.setattr(runners, "_DASK_POLL", 0.5)
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        assert prepare(tmp_path / "out", "--input", str(plain_run[0]), "--tokenizer", str(GPT2), "--runner",
                       "DaskRunner", "--dask_client_address", cluster.scheduler_address) == 2
    assert "has had no worker for 2 s" in one_line(capfd)
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- a disk that fills up


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS], ids=["full", "read-only"])
@pytest.mark.parametrize("after", [2, 1000], ids=["in-a-worker", "at-the-end"])
def test_a_full_or_read_only_disk_mid_run_is_one_line(tmp_path, capfd, plain_run, monkeypatch, code, after):
    """The writes of the run start failing after ``after`` files (a worker's shard or dead letters, or the
    launcher's manifest at the end): one line, nothing at --output."""
    from apache_beam.io.filesystems import FileSystems

    create, created = FileSystems.create, []

    def failing(path, *args, **kwargs):
        created.append(path)
        if len(created) > after or path.endswith("manifest.json"):
            raise OSError(code, os.strerror(code), path)
        return create(path, *args, **kwargs)

    monkeypatch.setattr(FileSystems, "create", staticmethod(failing))
    output = tmp_path / "out"
    assert prepare(output, "--input", str(plain_run[0]), "--tokenizer", str(GPT2)) == 2
    line = one_line(capfd)
    assert f"cannot write {output} ({os.strerror(code)})" in line
    assert not list(tmp_path.iterdir())
