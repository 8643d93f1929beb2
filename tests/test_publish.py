"""`poet publish` and the download side, against the Hub-compatible server in hub_server.py.

The assertions are on the server's state (commits, stored bytes, upload counts), not on
what the clients report: `datasets` and `huggingface_hub` silently fall back to their
caches, so a client-side view alone would prove little.
"""

import argparse
import hashlib
import json
import logging
import shutil
import threading
import time
import uuid
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hub_server import GITATTRIBUTES, USERS

from poet.pipeline.commands import publish as publish_command
from poet.pipeline.hub.download import fetch_prepared
from poet.pipeline.hub.publish import publish
from poet.transforms import manifest
from poet.transforms.contract import MANIFEST_FILE
from poet.transforms.errors import UserError

ALICE, BOB = USERS["alice"], USERS["bob"]
SCHEMA = pa.schema([
    ("id", pa.string()),
    ("prompt_ids", pa.list_(pa.int32())),
    ("chosen_ids", pa.list_(pa.int32())),
    ("rejected_ids", pa.list_(pa.int32())),
    ("poet_length", pa.int32()),
])
CARD = """---
license: apache-2.0
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
  - split: test
    path: data/test-*
---
# Fabricated prepared dataset

Written by tests/test_publish.py until the pipeline's `prepared_sample` fixture exists.
"""


# --------------------------------------------------------------------------- prepared folders


def fabricate_prepared(root: Path) -> Path:
    """A folder shaped like `poet prepare --output` writes: card, stats, plots, shards, dead letters."""
    for split, rows, count in (("train", 12, 3), ("test", 4, 1)):
        write_shards(root, split, pa.Table.from_pylist([_row(split, i) for i in range(rows)], schema=SCHEMA), count)
    (root / "README.md").write_text(CARD)
    (root / "stats.json").write_text(json.dumps({"train": {"rows": 12}, "test": {"rows": 4}}, sort_keys=True))
    (root / "plots").mkdir()
    (root / "plots" / "poet_length.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (root / "dead_letter").mkdir()
    (root / "dead_letter" / "train.jsonl").write_text('{"error": "prompt too long", "id": "train-99"}\n')
    write_manifest(str(root), {})
    return root


def write_manifest(root: str, document: dict) -> None:
    """The manifest of a folder made by hand (poet's writers record each file's hash as they write it)."""
    files = sorted(p for p in Path(root).rglob("*") if p.is_file() and p.name != MANIFEST_FILE)
    (Path(root) / MANIFEST_FILE).write_text(manifest.dumps(
        manifest.FileEntry(p.relative_to(root).as_posix(), p.stat().st_size, sha256(p.read_bytes())) for p in files))


def _row(split: str, i: int) -> dict:
    return {"id": f"{split}-{i}", "prompt_ids": [i, i + 1, i + 2], "chosen_ids": [7, i], "rejected_ids": [8],
            "poet_length": 5 + i % 3}


def shards(root: Path, split: str) -> list[Path]:
    return sorted((root / "data").glob(f"{split}-*.parquet"))


def splits(root: Path) -> list[str]:
    return sorted({path.name.split("-")[0] for path in (root / "data").glob("*.parquet")})


def local_rows(root: Path, split: str) -> list[dict]:
    return pa.concat_tables(pq.read_table(path) for path in shards(root, split)).to_pylist()


def write_shards(root: Path, split: str, table: pa.Table, count: int) -> None:
    """Replace the shards of ``split`` by ``count`` shards holding ``table``'s rows, in order."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    for old in shards(root, split):
        old.unlink()
    per_shard = -(-len(table) // count)
    for i in range(count):
        pq.write_table(table.slice(i * per_shard, per_shard), root / "data" / f"{split}-{i:05d}-of-{count:05d}.parquet")


def reshard(root: Path, split: str, count: int, drop_last: int = 0) -> None:
    """Rewrite ``split`` (of a fabricated or a real prepared folder) as ``count`` shards."""
    table = pa.concat_tables(pq.read_table(path) for path in shards(root, split))
    write_shards(root, split, table.slice(0, len(table) - drop_last), count)
    write_manifest(str(root), {})  # as a new `poet prepare` run would


def published_files(root: Path) -> dict[str, bytes]:
    """What must land on the Hub: everything but dead letters and the manifest (the local record of the folder)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.relative_to(root).as_posix().startswith("dead_letter/")
            and p.name != MANIFEST_FILE}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    """A prepared folder the test may modify. The tests only assume the folder contract,
    so the pipeline's real output can replace the fabrication in one line, once `poet
    prepare` writes README.md: ``return Path(shutil.copytree(prepared_sample, tmp_path / "prepared"))``
    (with ``prepared_sample`` added to the fixture's arguments)."""
    return fabricate_prepared(tmp_path / "prepared")


@pytest.fixture
def repo_id() -> str:
    return f"alice/poet-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record backoff delays (ours and huggingface_hub's) instead of waiting them out."""
    delays: list[float] = []
    monkeypatch.setattr(time, "sleep", delays.append)
    return delays


def lfs_oids(root: Path) -> set[str]:
    return {sha256(data) for path, data in published_files(root).items() if path.endswith((".parquet", ".png"))}


# --------------------------------------------------------------------------- publishing


def test_first_publish_is_one_commit_holding_exactly_the_folder(hub, prepared, repo_id):
    result = publish(prepared, repo_id, token=ALICE, message="first")

    history = hub.history(repo_id)
    assert [c.title for c in history] == ["first", "initial commit"]
    assert result.changed and result.commit_oid == history[0].oid and result.commit_url.endswith(history[0].oid)
    files = hub.files(repo_id)
    assert files.pop(".gitattributes") == GITATTRIBUTES
    assert files == published_files(prepared)
    assert not any(path.startswith("dead_letter/") for path in files)
    assert set(hub.lfs_uploads) == lfs_oids(prepared) and len(hub.lfs_uploads) == len(lfs_oids(prepared))


def test_republishing_an_unchanged_folder_makes_no_commit(hub, prepared, repo_id):
    first = publish(prepared, repo_id, token=ALICE)
    uploads = len(hub.lfs_uploads)

    again = publish(prepared, repo_id, token=ALICE)

    assert not again.changed and again.commit_oid == first.commit_oid == hub.head(repo_id)
    assert str(again).startswith("no change")
    assert hub.count("commit") == 1 and len(hub.lfs_uploads) == uploads


def test_republishing_changed_data_replaces_stale_shards_in_one_commit(hub, prepared, repo_id):
    publish(prepared, repo_id, token=ALICE)
    hub.write(repo_id, {"data/validation-00000-of-00001.parquet": b"a split this folder no longer has",
                        "notes/keep.txt": b"not a shard: left alone"})
    old_shards = {f"data/{path.name}" for path in shards(prepared, "train")}
    reshard(prepared, "train", len(old_shards) + 1, drop_last=3)
    new_shards = {f"data/{path.name}" for path in shards(prepared, "train")}
    before = len(hub.history(repo_id))

    result = publish(prepared, repo_id, token=ALICE)

    assert len(hub.history(repo_id)) == before + 1
    assert (result.uploaded, result.deleted) == (len(new_shards), len(old_shards) + 1)  # + the validation shard
    files = hub.files(repo_id)
    assert {path for path in files if path.startswith("data/train-")} == new_shards
    assert "data/validation-00000-of-00001.parquet" not in files  # the card and the data agree
    assert files["notes/keep.txt"] == b"not a shard: left alone"
    assert {path: files[path] for path in published_files(prepared)} == published_files(prepared)


def test_a_concurrent_writer_causes_a_412_then_both_changes_are_kept(hub, prepared, repo_id):
    hub.before_next_commit(lambda: hub.write(repo_id, {"NOTES.md": b"written meanwhile"}, message="concurrent"))

    result = publish(prepared, repo_id, token=ALICE, message="ours")

    assert result.attempts == 2
    assert [status for route, _, _, status in hub.requests if route == "commit"] == [412, 200]
    assert [c.title for c in hub.history(repo_id)] == ["ours", "concurrent", "initial commit"]
    files = hub.files(repo_id)
    assert files["NOTES.md"] == b"written meanwhile"
    assert {p: files[p] for p in published_files(prepared)} == published_files(prepared)


def test_commits_are_retried_with_backoff_on_429_and_5xx(hub, prepared, repo_id, sleeps):
    hub.inject("commit", 503)
    hub.inject("commit", 429)

    result = publish(prepared, repo_id, token=ALICE)

    assert result.attempts == 3 and sleeps[-2:] == [1.0, 2.0]
    assert len(hub.history(repo_id)) == 2 and len(hub.lfs_uploads) == len(lfs_oids(prepared))


def test_repo_creation_and_the_first_head_lookup_are_retried(hub, prepared, repo_id, sleeps):
    hub.inject("create", 503)
    hub.inject("create", 429)
    hub.inject("info", 502)

    result = publish(prepared, repo_id, token=ALICE)

    assert result.attempts == 4 and sleeps[-3:] == [1.0, 2.0, 4.0]
    assert [status for route, _, _, status in hub.requests if route == "create"] == [503, 429, 200]
    assert {p: data for p, data in hub.files(repo_id).items() if p != ".gitattributes"} == published_files(prepared)


def _swap(a: Path, b: Path) -> None:
    data = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(data)


TAMPERING = {
    "missing shard": (lambda root: shards(root, "train")[0].unlink(), "is missing"),
    "edited shard": (lambda root: shards(root, "train")[1].write_bytes(shards(root, "train")[1].read_bytes()[:-1]),
                     "changed since"),
    "swapped shards": (lambda root: _swap(*shards(root, "train")[:2]), "changed since"),
    "stray plot": (lambda root: (root / "plots" / "secret.png").write_bytes(b"HF_TOKEN=hf_xxx"), "not written by"),
    "stray shard": (lambda root: shutil.copy(shards(root, "test")[0], root / "data" / "val-00000-of-00001.parquet"),
                    "not written by"),
    "edited card": (lambda root: (root / "README.md").write_text(CARD.replace("apache-2.0", "mit")), "changed since"),
    "no manifest": (lambda root: (root / MANIFEST_FILE).unlink(), f"has no {MANIFEST_FILE}"),
    "damaged manifest": (lambda root: (root / MANIFEST_FILE).write_text("{"), "is damaged"),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERING))
def test_a_tampered_folder_is_refused_with_no_commit(hub, prepared, repo_id, tamper):
    change, message = TAMPERING[tamper]
    change(prepared)
    commits = hub.count("commit")
    with pytest.raises(UserError, match=message) as refused:
        publish(prepared, repo_id, token=ALICE)
    assert "\n" not in str(refused.value)
    assert hub.count("commit") == commits and hub.count("create") == 0  # refused before any Hub call


def test_shard_rows_must_add_up_to_the_cards_num_examples():
    from poet.transforms.manifest import FileEntry, first_difference

    shard = FileEntry("data/train-00000-of-00001.parquet", 10, "ab", "train", 7)
    found = {shard.path: FileEntry(shard.path, 10, "ab")}
    assert first_difference({shard.path: shard}, found, ["data/*.parquet"], {"train": 7}) is None
    assert "says split train has 8 rows but its shards hold 7" in first_difference(
        {shard.path: shard}, found, ["data/*.parquet"], {"train": 8})
    assert "split test has 3 rows" in first_difference({shard.path: shard}, found, ["data/*.parquet"],
                                                        {"train": 7, "test": 3})


def test_transient_upload_failures_are_retried_without_failing_the_publish(hub, prepared, repo_id):
    hub.inject("lfs-upload", 500)
    hub.inject("lfs-upload", "drop")

    publish(prepared, repo_id, token=ALICE)

    assert hub.count("lfs-upload") == len(lfs_oids(prepared)) + 2
    assert sorted(hub.lfs_uploads) == sorted(lfs_oids(prepared))
    assert len(hub.history(repo_id)) == 2


@pytest.mark.parametrize("failure", [500, "drop"])
def test_a_crash_mid_upload_resumes_without_re_uploading(hub, prepared, repo_id, failure):
    reshard(prepared, "train", 3)
    victim_path = shards(prepared, "train")[1]
    victim = sha256(victim_path.read_bytes())
    hub.inject("lfs-upload", failure, times=1000, match=victim)  # every try of this shard fails

    with pytest.raises(UserError, match="run the same command again to resume") as failed:
        publish(prepared, repo_id, token=ALICE)

    assert victim_path.name in str(failed.value)
    assert len(hub.history(repo_id)) == 1  # nothing committed: readers see no half-published data
    stored = list(hub.lfs_uploads)
    assert set(stored) == lfs_oids(prepared) - {victim}
    hub.faults.clear()

    publish(prepared, repo_id, token=ALICE)

    assert hub.lfs_uploads[len(stored):] == [victim]  # only the missing shard is sent again
    assert {p: hub.files(repo_id)[p] for p in published_files(prepared)} == published_files(prepared)
    assert len(hub.history(repo_id)) == 2


def test_too_many_files_for_one_commit_land_through_one_merged_pull_request(hub, prepared, repo_id):
    result = publish(prepared, repo_id, token=ALICE, max_files_per_commit=2)

    main = hub.history(repo_id)
    assert len(main) == 2 and result.commit_oid == main[0].oid  # readers of main saw a single change
    files = hub.files(repo_id)
    assert {p: files[p] for p in published_files(prepared)} == published_files(prepared)
    parts = -(-len(published_files(prepared)) // 2)
    assert len(hub.history(repo_id, "refs/pr/1")) == parts + 1
    assert hub.repos[repo_id].prs[1].status == "merged"
    assert not publish(prepared, repo_id, token=ALICE).changed


def test_create_pr_leaves_the_branch_untouched(hub, prepared, repo_id):
    result = publish(prepared, repo_id, token=ALICE, create_pr=True)

    assert result.pr_url.endswith("/discussions/1") and str(result) == result.pr_url
    assert len(hub.history(repo_id)) == 1
    assert hub.repos[repo_id].prs[1].status == "open"
    pr_files = hub.files(repo_id, "refs/pr/1")
    assert {p: pr_files[p] for p in published_files(prepared)} == published_files(prepared)


def test_publishes_to_another_branch(hub, prepared, repo_id):
    publish(prepared, repo_id, token=ALICE, revision="v2")

    assert len(hub.history(repo_id)) == 1
    assert len(hub.history(repo_id, "v2")) == 2 and "stats.json" in hub.files(repo_id, "v2")


def test_publishes_from_an_fsspec_url(hub, prepared, repo_id):
    fs = fsspec.filesystem("memory")
    url = f"memory://poet-test-{repo_id.split('/')[1]}"
    fs.put(str(prepared), url, recursive=True)
    try:
        publish(url, repo_id, token=ALICE)
    finally:
        fs.rm(url, recursive=True)

    files = hub.files(repo_id)
    files.pop(".gitattributes")
    assert files == published_files(prepared)


# --------------------------------------------------------------------------- tokens and user errors


def test_a_private_repo_refuses_anonymous_and_other_users(hub, prepared, repo_id, monkeypatch):
    publish(prepared, repo_id, token=ALICE, private=True)
    assert hub.repos[repo_id].private

    with pytest.raises(UserError, match="HF_TOKEN"):
        publish(prepared, repo_id)  # no token anywhere
    with pytest.raises(UserError, match="refused access") as refused:
        publish(prepared, repo_id, token=BOB)
    with pytest.raises(UserError, match="private dataset"):
        fetch_prepared(repo_id)  # anonymous download

    assert BOB not in str(refused.value) and len(hub.history(repo_id)) == 2
    monkeypatch.setenv("HF_TOKEN", ALICE)
    assert (fetch_prepared(repo_id) / "stats.json").exists()


def test_the_token_never_appears_in_output_logs_errors_or_files(hub, prepared, repo_id, monkeypatch, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HF_TOKEN", ALICE)
    publish(prepared, repo_id)  # token from the environment
    reshard(prepared, "train", 1, drop_last=1)
    hub.inject("commit", 500, times=10)
    errors = []
    for token in (None, BOB):
        with pytest.raises(UserError) as failed:
            publish(prepared, repo_id, token=token, max_attempts=2)
        errors.append(str(failed.value))

    captured = capfd.readouterr()
    for text in (caplog.text, captured.out, captured.err, *errors):
        assert ALICE not in text and BOB not in text
    assert "HTTP 500" in errors[0] and "HTTP 403" in errors[1]
    assert not any(ALICE.encode() in data for data in hub.files(repo_id).values())


def test_what_is_not_a_prepared_folder_is_a_user_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="is not a folder"):
        publish(tmp_path / "missing", "alice/x", token=ALICE)
    with pytest.raises(UserError, match="is not a prepared folder"):
        publish(tmp_path / "empty", "alice/x", token=ALICE)
    with pytest.raises(UserError, match="user/name"):
        publish(tmp_path / "empty", "not-a-repo-id", token=ALICE)


def test_the_publish_command_prints_the_commit_url_then_no_change(hub, prepared, repo_id, monkeypatch, capsys):
    parser = argparse.ArgumentParser()
    publish_command.add_arguments(parser)
    args = parser.parse_args([str(prepared), "--repo-id", repo_id, "--message", "from the CLI"])
    monkeypatch.setenv("HF_TOKEN", ALICE)

    assert publish_command.run(args) == 0
    first = capsys.readouterr()
    assert publish_command.run(args) == 0
    second = capsys.readouterr()

    assert first.out.strip() == f"{hub.url}/datasets/{repo_id}/commit/{hub.head(repo_id)}"
    assert f"{len(published_files(prepared))} new or changed files" in first.err and "0 unchanged skipped" in first.err
    assert second.out.startswith("no change") and hub.history(repo_id)[0].title == "from the CLI"


# --------------------------------------------------------------------------- download side


@pytest.mark.parametrize("streaming", [False, True])
def test_load_dataset_returns_exactly_the_local_rows(hub, prepared, repo_id, tmp_path, streaming):
    import datasets

    publish(prepared, repo_id, token=ALICE)
    first_shard = shards(prepared, "train")[0]
    assert hub.files(repo_id)[f"data/{first_shard.name}"] == first_shard.read_bytes()

    loaded = datasets.load_dataset(repo_id, cache_dir=str(tmp_path / "cache"), streaming=streaming)

    assert sorted(loaded) == splits(prepared)
    for split in splits(prepared):
        assert list(loaded[split]) == local_rows(prepared, split)
    shards_read = {path for route, method, path, _ in hub.requests if route == "resolve" and "/data/" in path}
    assert shards_read, "the rows must come from the server, not from a cache"


def test_fetch_prepared_downloads_card_stats_plots_and_shards(hub, prepared, repo_id):
    publish(prepared, repo_id, token=ALICE)

    folder = fetch_prepared(repo_id)

    assert published_files(folder) == published_files(prepared)
    assert fetch_prepared(f"hf://datasets/{repo_id}") == folder
    assert fetch_prepared(str(prepared)) == prepared
    with pytest.raises(UserError, match="neither a local folder nor a dataset"):
        fetch_prepared("alice/does-not-exist")
    with pytest.raises(UserError, match="has no revision"):
        fetch_prepared(repo_id, revision="nope")


def test_fetch_prepared_fetches_only_what_is_asked_from_the_hub_or_fsspec(hub, prepared, repo_id):
    publish(prepared, repo_id, token=ALICE)
    fs = fsspec.filesystem("memory")
    url = f"memory://poet-fetch-{repo_id.split('/')[1]}"
    fs.put(str(prepared), url, recursive=True)
    try:
        copied = fetch_prepared(url)
        stats_only = fetch_prepared(url, only=["stats.json"])
    finally:
        fs.rm(url, recursive=True)
    hub.requests.clear()

    from_hub = fetch_prepared(repo_id, only=["stats.json"])

    assert published_files(copied) == published_files(prepared)  # dead letters stay behind
    for folder in (stats_only, from_hub):
        assert published_files(folder) == {"stats.json": (prepared / "stats.json").read_bytes()}
    assert not any("/data/" in path for _, _, path, _ in hub.requests)


# --------------------------------------------------------------------------- the real pipeline output


def test_a_real_prepared_folder_round_trips_through_the_hub(hub, prepared_sample, repo_id, tmp_path, capsys):
    """prepare -> publish (one commit, then a no-op) -> load_dataset / poet stats / poet train by repo id."""
    import datasets

    from poet.pipeline.commands.cli import main

    folder = Path(shutil.copytree(prepared_sample, tmp_path / "prepared"))
    assert publish(folder, repo_id, token=ALICE).changed
    assert len(hub.history(repo_id)) == 2  # the repo's initial commit, then ours
    remote = hub.files(repo_id)
    remote.pop(".gitattributes")  # written by the repo's initial commit
    card = remote.pop("README.md")  # rendered for the repo, in memory: the folder keeps its own
    assert remote == {p: data for p, data in published_files(folder).items() if p != "README.md"}
    assert f'load_dataset("{repo_id}")'.encode() in card
    assert not publish(folder, repo_id, token=ALICE).changed
    assert len(hub.history(repo_id)) == 2

    loaded = datasets.load_dataset(repo_id, split="train", cache_dir=str(tmp_path / "cache"))
    assert loaded.to_list() == local_rows(folder, "train")
    assert loaded.features == datasets.load_dataset(str(folder), split="train").features

    assert main(["stats", repo_id]) == 0
    assert f"{len(loaded):,} kept" in capsys.readouterr().out


def test_publishing_needs_a_license(hub, prepared, repo_id):
    card = prepared / "README.md"
    card.write_text(card.read_text().replace("license: apache-2.0\n", ""))
    with pytest.raises(UserError, match="--license"):
        publish(prepared, repo_id, token=ALICE)
    assert not any(route == "commit" for route, *_ in hub.requests)


def test_prepare_push_to_hub_publishes_a_card_that_names_the_repo(hub, repo_id, tmp_path, monkeypatch, caplog):
    import logging

    from conftest import MINIMIND, SHAREGPT_SAMPLE, prepare

    caplog.set_level(logging.INFO)
    monkeypatch.setenv("HF_TOKEN", ALICE)
    assert prepare(tmp_path / "out", "--input", str(SHAREGPT_SAMPLE), "--tokenizer", str(MINIMIND),
                   "--license", "apache-2.0", "--push-to-hub", repo_id) == 0
    card = hub.files(repo_id)["README.md"].decode()
    assert f'load_dataset("{repo_id}")' in card
    assert card == (tmp_path / "out" / "README.md").read_text()
    assert not [r for r in caplog.records if r.name.startswith("httpx")]  # no line per HTTP request


def test_a_failed_push_to_hub_names_the_command_that_finishes_the_job(hub, tmp_path, monkeypatch, capfd):
    from conftest import MINIMIND, SHAREGPT_SAMPLE, prepare

    monkeypatch.setenv("HF_TOKEN", ALICE)
    output = tmp_path / "my out"
    assert prepare(output, "--input", str(SHAREGPT_SAMPLE), "--tokenizer", str(MINIMIND), "--license", "apache-2.0",
                   "--push-to-hub", "bob/not-alices") == 2
    err = [line for line in capfd.readouterr().err.splitlines() if line.startswith("poet prepare: error")]
    assert len(err) == 1 and err[0].endswith(f"run: poet publish '{output}' --repo-id bob/not-alices")
    assert (output / "manifest.json").is_file()  # the prepared folder stays


def test_re_preparing_and_re_publishing_the_same_data_makes_no_commit(hub, repo_id, tmp_path):
    from conftest import GPT2, prepare
    from hostile_corpus import PLAIN_ROWS, write_rows

    source = write_rows(tmp_path / "train.jsonl", PLAIN_ROWS)
    args = ["--input", str(source), "--input", f"test={source}.copy.jsonl", "--tokenizer", str(GPT2), "--license", "mit"]
    shutil.copy(source, f"{source}.copy.jsonl")
    assert prepare(tmp_path / "first", *args) == 0
    assert prepare(tmp_path / "second", *args) == 0
    assert published_files(tmp_path / "first") == published_files(tmp_path / "second")

    assert publish(tmp_path / "first", repo_id, token=ALICE).changed
    commits = hub.count("commit")
    again = publish(tmp_path / "second", repo_id, token=ALICE)
    assert not again.changed and hub.count("commit") == commits


def test_publish_names_the_repo_in_the_card(hub, prepared_sample, repo_id, tmp_path, capsys):
    """A folder prepared without --push-to-hub has placeholders in its card; publishing fills in the repo id, in
    the published card only: the prepared folder never changes (so a read-only one publishes too)."""
    folder = Path(shutil.copytree(prepared_sample, tmp_path / "prepared"))
    assert "PATH_OR_REPO_ID" in (folder / "README.md").read_text()
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert publish(folder, repo_id, token=ALICE).changed
    assert not publish(folder, repo_id, token=ALICE).changed
    card = hub.files(repo_id)["README.md"].decode()
    assert f'load_dataset("{repo_id}")' in card and f"poet train --data {repo_id} " in card
    assert "PATH_OR_REPO_ID" not in card
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    err = capsys.readouterr().err
    assert "README.md published naming" in err and "published:" not in err  # the URL goes to stdout, once


def test_without_a_token_the_error_names_the_current_login_command(prepared, repo_id, monkeypatch):
    """huggingface-hub 2.x installs `hf`, not `huggingface-cli`: every hint says `hf auth login`."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("poet.pipeline.hub.publish.get_token", lambda: None)
    with pytest.raises(UserError, match="run `hf auth login` or set HF_TOKEN"):
        publish(prepared, repo_id)
    repo = Path(__file__).resolve().parents[1]
    texts = [repo / "README.md", *(p for d in ("pipeline", "transforms", "trainer") for p in (repo / d).rglob("*.py"))]
    assert not [p for p in texts if "huggingface-cli" in p.read_text(encoding="utf-8")]


# --------------------------------------------------------------------------- a Hub that misbehaves


def test_retried_uploads_never_print_their_signed_url(hub, prepared, repo_id, capfd, caplog):
    hub.inject("lfs-upload", 500, times=3)
    publish(prepared, repo_id, token=ALICE)
    printed = capfd.readouterr().err + caplog.text
    assert "lfs-upload" in printed and "?<redacted>" in printed  # the warnings are there...
    assert "SIGNED" not in printed  # ...without the signature


@pytest.fixture
def endpoint(monkeypatch):
    """Point publish at a server of the test's own making (``serve(handler_class)``), with short timeouts."""
    import socketserver
    import threading

    import httpx2
    from huggingface_hub import constants

    import poet.pipeline.hub.http as http

    monkeypatch.setattr(http, "HUB_TIMEOUT", httpx2.Timeout(0.5))
    servers = []

    def serve(handler) -> str:
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setattr(constants, "ENDPOINT", url)
        return url

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_an_endpoint_that_never_answers_ends_in_one_line_with_the_resume_hint(endpoint, prepared, repo_id):
    import socketserver

    release = threading.Event()

    class Silent(socketserver.BaseRequestHandler):
        def handle(self):
            release.wait(30)  # accepts the connection, reads nothing, answers nothing

    endpoint(Silent)
    started = time.monotonic()
    try:
        with pytest.raises(UserError, match="run the same command again to resume"):
            publish(prepared, repo_id, token=ALICE)
    finally:
        release.set()
    assert time.monotonic() - started < 20


def _answering(answer: bytes):
    """A request handler that answers every request with ``answer`` as JSON."""
    from http.server import BaseHTTPRequestHandler

    class Odd(BaseHTTPRequestHandler):
        def do_GET(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_POST = do_PUT = do_HEAD = do_GET

        def log_message(self, *args):
            pass

    return Odd


WRONG_SHAPES = [b"[]", b'{"url": 5, "sha": {"a": 1}, "siblings": 3}', b'"text"']


@pytest.mark.parametrize("answer", WRONG_SHAPES)
def test_a_hub_answer_of_the_wrong_shape_is_one_line(endpoint, prepared, repo_id, answer):
    endpoint(_answering(answer))
    with pytest.raises(UserError) as refused:
        publish(prepared, repo_id, token=ALICE)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("answer", WRONG_SHAPES)
def test_stats_of_a_repo_whose_hub_answers_the_wrong_shape_is_one_line(endpoint, repo_id, capfd, answer):
    from poet.pipeline.commands.cli import main

    endpoint(_answering(answer))
    assert main(["stats", repo_id]) == 2
    err = capfd.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("name", ["alice/..", "../x", "alice/.", "alice/-x", "a--b/c"])
def test_a_repo_id_that_names_a_path_is_one_line(name, capfd):
    from poet.pipeline.commands.cli import main

    assert main(["stats", name]) == 2
    err = capfd.readouterr().err
    assert f"no such folder: {name} (nor is it a Hub dataset id" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_offline_mode_at_publish_is_one_line(hub, prepared, repo_id, monkeypatch, variable):
    monkeypatch.setenv(variable, "1")
    with pytest.raises(UserError, match=f"{variable}|HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set"):
        publish(prepared, repo_id, token=ALICE)
    assert hub.count("create") == 0
