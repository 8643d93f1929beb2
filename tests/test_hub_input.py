"""``poet prepare --input 'hf://datasets/...'`` against the test Hub: UltraFeedback's layout and a raw JSONL.gz repo,
each pinned to one commit, recorded in stats.json and the card; Hub problems are one line."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import load_dataset
from huggingface_hub import CommitOperationAdd, DatasetCard, HfApi
from hub_server import USERS

from conftest import HH_SAMPLE, MINIMIND, SHAREGPT_SAMPLE, prepare, read_pairs

ALICE = USERS["alice"]
ULTRA = "alice/ultrafeedback-mini"
RAW = "alice/hh-raw"
ARGS = ["--tokenizer", str(MINIMIND), "--max-length", "512", "--license", "mit"]


def ultrafeedback_rows(pairs) -> list[dict]:
    """UltraFeedback binarized's columns: prompt, chosen/rejected as whole conversations, scores, prompt_id, messages."""
    rows = []
    for i, pair in enumerate(pairs):
        prompt = pair.prompt[-1]["content"]
        rows.append({"prompt": prompt, "prompt_id": hashlib.sha256(prompt.encode()).hexdigest(),
                     "chosen": pair.prompt + pair.chosen, "rejected": pair.prompt + pair.rejected,
                     "messages": pair.prompt + pair.chosen, "score_chosen": 8.0, "score_rejected": 4.0 + i % 3})
    rows[3]["rejected"] = rows[3]["chosen"]  # identical_responses
    rows[5]["chosen"] = None  # no chosen response
    return rows


def parquet_bytes(rows: list[dict]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


def commit(repo_id: str, files: dict[str, bytes], private: bool = False) -> str:
    api = HfApi(token=ALICE)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    operations = [CommitOperationAdd(path, data) for path, data in files.items()]
    return api.create_commit(repo_id, operations, commit_message="seed", repo_type="dataset").oid


def dataset_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "data").glob("*.parquet"))}


def dead_letters(folder: Path, split: str) -> list[dict]:
    path = folder / "dead_letter" / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def ultrafeedback_files() -> dict[str, bytes]:
    pairs = [p for p in read_pairs(SHAREGPT_SAMPLE) if len(p.prompt) == 1][:60]
    rows = ultrafeedback_rows(pairs)
    return {"data/train_prefs-00000-of-00001.parquet": parquet_bytes(rows[:40]),
            "data/test_prefs-00000-of-00001.parquet": parquet_bytes(rows[40:])}


def test_ultrafeedback_scores_and_hub_eval_prompts_for_the_quality_options(hub, tmp_path, ultrafeedback_files):
    """UltraFeedback's score_chosen/score_rejected feed --min-score-margin; --decontaminate reads eval prompts from
    the Hub (pinned like inputs) and the dead letters and the card name that source."""
    commit(ULTRA, ultrafeedback_files)
    train = pq.read_table(io.BytesIO(ultrafeedback_files["data/train_prefs-00000-of-00001.parquet"])).to_pylist()
    parsed = [i for i in range(len(train)) if i not in (3, 5)]  # rows 3 and 5 fail parsing, before any rule
    leaked = [i for i in parsed if len(train[i]["prompt"].split()) >= 13 and i % 3 != 2][:3]
    evals = "alice/evals"
    sha = commit(evals, {"mt/questions.parquet": parquet_bytes([{"question": train[i]["prompt"].upper()}
                                                                 for i in leaked] + [{"question": "unrelated"}])})
    out = tmp_path / "quality"
    assert prepare(out, "--input", f"train=hf://datasets/{ULTRA}/data/train_prefs-*.parquet", *ARGS,
                   "--min-score-margin", "3", "--decontaminate", f"hf://datasets/{evals}/mt/*.parquet") == 0
    reasons = {d["line"]: d for d in dead_letters(out, "train")}
    assert {line for line, d in reasons.items() if d["reason"] == "low_margin"} == {
        i + 1 for i in parsed if train[i]["score_chosen"] - train[i]["score_rejected"] < 3}
    contaminated = {line for line, d in reasons.items() if d["reason"] == "contaminated"}
    assert contaminated == {i + 1 for i in leaked}
    source = f"hf://datasets/{evals}@{sha}/mt/questions.parquet"
    assert {reasons[line]["eval_source"] for line in contaminated} == {source}
    assert f"| `{source}` | 4 | 1 | 3 |" in (out / "README.md").read_text()


def test_ultrafeedback_train_and_test_prefs_in_one_command(hub, tmp_path, ultrafeedback_files):
    sha = commit(ULTRA, ultrafeedback_files)
    base = f"hf://datasets/{ULTRA}/data"
    assert prepare(tmp_path / "hub", "--input", f"train={base}/train_prefs-*.parquet",
                   "--input", f"test={base}/test_prefs-*.parquet", *ARGS) == 0

    # every row is in a shard or a dead letter, with its reason
    train, test = (load_dataset(str(tmp_path / "hub"), split=split) for split in ("train", "test"))
    dead = dead_letters(tmp_path / "hub", "train")
    assert len(train) + len(dead) == 40 and len(test) + len(dead_letters(tmp_path / "hub", "test")) == 20
    assert (4, "identical_responses") in {(d["line"], d["reason"]) for d in dead}
    assert 6 in {d["line"] for d in dead}
    assert all(d["file"] == f"hf://datasets/{ULTRA}@{sha}/data/train_prefs-00000-of-00001.parquet" for d in dead)

    # the commit read is recorded in stats.json and in the card, and the card names the source repo
    run = json.loads((tmp_path / "hub" / "stats.json").read_text())["run"]
    assert run["source_repos"] == [{"repo_id": ULTRA, "revision": sha, "requested": "main"}]
    assert [s["file"] for s in run["sources"]] == [f"hf://datasets/{ULTRA}@{sha}/data/{split}_prefs-00000-of-00001.parquet"
                                                    for split in ("train", "test")]
    card = DatasetCard.load(tmp_path / "hub" / "README.md")
    assert card.data.source_datasets == [ULTRA]
    assert sha in card.text

    # the same files read locally give the same shards
    local = tmp_path / "local"
    for path, data in ultrafeedback_files.items():
        (local / path).parent.mkdir(parents=True, exist_ok=True)
        (local / path).write_bytes(data)
    assert prepare(tmp_path / "from-disk", "--input", f"train={local}/data/train_prefs-*.parquet",
                   "--input", f"test={local}/data/test_prefs-*.parquet", *ARGS) == 0
    assert dataset_bytes(tmp_path / "from-disk") == dataset_bytes(tmp_path / "hub")
    local_run = json.loads((tmp_path / "from-disk" / "stats.json").read_text())["run"]
    assert [s["file"] for s in local_run["sources"]] == ["train_prefs-00000-of-00001.parquet",
                                                          "test_prefs-00000-of-00001.parquet"]
    assert str(tmp_path) not in json.dumps(local_run) and str(tmp_path) not in (tmp_path / "from-disk" / "README.md").read_text()
    assert local_run["source_repos"] == []


def test_a_run_pinned_to_a_commit_reads_it_after_a_push(hub, tmp_path):
    with gzip.open(HH_SAMPLE, "rt", encoding="utf-8") as handle:
        lines = [line for line in handle if line.strip()][:200]
    old = commit(RAW, {"raw/harmless.jsonl.gz": gzip.compress("".join(lines[:150]).encode(), mtime=0)})
    assert prepare(tmp_path / "main", "--input", f"hf://datasets/{RAW}/raw/*.jsonl.gz", *ARGS) == 0
    new = commit(RAW, {"raw/harmless.jsonl.gz": gzip.compress("".join(lines).encode(), mtime=0)})
    assert prepare(tmp_path / "old", "--input", f"hf://datasets/{RAW}@{old}/raw/*.jsonl.gz", *ARGS) == 0
    assert prepare(tmp_path / "new", "--input", f"hf://datasets/{RAW}/raw/*.jsonl.gz", *ARGS) == 0

    assert dataset_bytes(tmp_path / "old") == dataset_bytes(tmp_path / "main")
    assert dataset_bytes(tmp_path / "new") != dataset_bytes(tmp_path / "main")
    for name, sha, read in (("main", old, 150), ("old", old, 150), ("new", new, 200)):
        document = json.loads((tmp_path / name / "stats.json").read_text())
        assert [r["revision"] for r in document["run"]["source_repos"]] == [sha]
        assert document["overall"]["read"] == read
        assert document["overall"]["pairs"] + len(dead_letters(tmp_path / name, "train")) == read


def test_a_private_repo_needs_hf_token(hub, tmp_path, monkeypatch, ultrafeedback_files):
    commit("alice/private-prefs", ultrafeedback_files, private=True)
    pattern = "hf://datasets/alice/private-prefs/data/test_prefs-*.parquet"
    assert prepare(tmp_path / "anonymous", "--input", pattern, *ARGS) == 2
    monkeypatch.setenv("HF_TOKEN", ALICE)
    assert prepare(tmp_path / "alice", "--input", pattern, *ARGS) == 0
    assert len(load_dataset(str(tmp_path / "alice"), split="train")) > 0


@pytest.mark.parametrize("pattern, message", [
    ("hf://datasets/alice/nothing-here/data/*.parquet", "dataset alice/nothing-here not found on http://127.0.0.1"),
    (f"hf://datasets/{ULTRA}@no-such-branch/data/*.parquet", f"dataset {ULTRA} on http://127.0.0.1"),
    (f"hf://datasets/{ULTRA}/data/validation-*.parquet", "matches no file"),
    (f"hf://datasets/{ULTRA}", "names no files of a dataset repo"),
    ("hf://alice/some-model/model.safetensors", "names no files of a dataset repo"),
])
def test_hub_problems_are_one_line(hub, tmp_path, capsys, ultrafeedback_files, pattern, message):
    commit(ULTRA, ultrafeedback_files)
    assert prepare(tmp_path / "out", "--input", pattern, *ARGS) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_one_hub_file_reached_through_two_revisions_is_refused(hub, tmp_path, capsys, ultrafeedback_files):
    """Files are compared at the commit read: the branch and its sha name the same file."""
    sha = commit(ULTRA, ultrafeedback_files)
    assert prepare(tmp_path / "out", "--input", f"train=hf://datasets/{ULTRA}/data/test_prefs-*.parquet",
                   "--input", f"test=hf://datasets/{ULTRA}@{sha}/data/test_prefs-*.parquet", *ARGS) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "given twice" in err, err
