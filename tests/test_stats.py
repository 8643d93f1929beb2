"""stats.json of the bundled sample equals a recomputation with pandas from the shards and the dead letters;
the exact histograms summarise and merge like pandas on the expanded values."""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import HH_SAMPLE, MINIMIND
from poet.transforms.stats import JOINT_EDGES, PERCENTILES, QUANTITIES, LengthStats, PairLengths, joint_bin, summarize
from poet.transforms.contract import STATS_FILE, PrepareOptions, RunDescription
from poet.transforms.stats_file import build_stats_document, dumps
from poet.transforms.stats_table import render

MAX_LENGTH = 512  # the fixtures' --max-length
LENGTH_COLUMNS = {"prompt": "prompt_length", "chosen": "chosen_length_orig", "rejected": "rejected_length_orig",
                  "poet": "poet_length"}


def read_document(folder: Path) -> dict:
    def no_constants(name):
        raise AssertionError(f"stats.json holds {name}")

    return json.loads((folder / STATS_FILE).read_text(), parse_constant=no_constants)


def read_shards(folder: Path) -> pd.DataFrame:
    tables = [pq.read_table(path) for path in sorted((folder / "data").glob("train-*.parquet"))]
    frame = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    room = MAX_LENGTH - frame["prompt_length"]
    frame["chosen_capped"] = np.minimum(frame["chosen_length_orig"], room)
    frame["rejected_capped"] = np.minimum(frame["rejected_length_orig"], room)
    frame["chosen_kept"] = frame["chosen_ids"].map(len)
    frame["rejected_kept"] = frame["rejected_ids"].map(len)
    return frame


def read_dead_letters(folder: Path, split: str = "train") -> list[dict]:
    path = folder / "dead_letter" / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def source_line_count(path: Path) -> int:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


def pandas_summary(values: pd.Series) -> dict:
    quantiles = values.quantile([p / 100 for p in PERCENTILES])  # linear interpolation, pandas' default
    return {
        "count": int(values.count()),
        "mean": values.mean(),
        "std": values.std(),  # ddof=1
        "min": int(values.min()),
        **{f"p{p}": quantiles[p / 100] for p in PERCENTILES},
        "max": int(values.max()),
    }


def assert_summary(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected)
    for key, value in expected.items():
        if isinstance(value, float) and np.isnan(value):
            assert actual[key] is None, key
        else:
            assert actual[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


def pct(part: int, total: int) -> float:
    return round(100.0 * part / total, 4)


@pytest.fixture(scope="module")
def eos_id() -> int:
    from poet.transforms.tokenization import load_tokenizer

    return load_tokenizer(str(MINIMIND)).eos_token_id


@pytest.fixture(scope="module")
def untruncated_has_eos(prepared_sample_no_poet, eos_id) -> dict[str, tuple[bool, bool]]:
    """Per row id: whether the untruncated chosen/rejected completion holds an EOS token.

    The ``--no-poet`` shards hold every completion whole unless the max-length cap cut it. ChatML ends
    every assistant turn with ``<|im_end|>`` (the EOS), so a completion cut by the cap had one too; the
    completions we can see whole all have one, which the first assertion checks."""
    frame = read_shards(prepared_sample_no_poet)
    whole_chosen = frame["chosen_kept"] == frame["chosen_length_orig"]
    whole_rejected = frame["rejected_kept"] == frame["rejected_length_orig"]
    assert frame.loc[whole_chosen, "chosen_ids"].map(lambda ids: eos_id in ids).all()
    assert frame.loc[whole_rejected, "rejected_ids"].map(lambda ids: eos_id in ids).all()
    assert (~whole_chosen).sum() > 0 and (~whole_rejected).sum() > 0  # the cap did cut some
    return {row.id: (True, True) for row in frame.itertuples()}


@pytest.fixture(scope="module", params=["poet", "no_poet"])
def prepared(request) -> tuple[str, Path]:
    name = {"poet": "prepared_sample", "no_poet": "prepared_sample_no_poet"}[request.param]
    return request.param, request.getfixturevalue(name)


def test_length_summaries_and_histograms_equal_pandas(prepared):
    _, folder = prepared
    document, frame = read_document(folder), read_shards(folder)
    stats = document["splits"]["train"]
    assert stats["pairs"] == len(frame) > 2000
    for quantity, column in LENGTH_COLUMNS.items():
        assert_summary(stats["lengths"][quantity], pandas_summary(frame[column]))
        counts = frame[column].value_counts().sort_index()
        assert stats["histograms"][quantity] == [[int(k), int(v)] for k, v in counts.items()]
    assert document["overall"] == stats  # one split: the overall statistics are the split's


def test_poet_lengths_are_what_the_shards_hold(prepared):
    mode, folder = prepared
    frame = read_shards(folder)
    assert (frame["poet_length"] == np.minimum(frame["chosen_capped"], frame["rejected_capped"])).all()
    if mode == "poet":
        assert (frame["chosen_kept"] == frame["poet_length"]).all()
        assert (frame["rejected_kept"] == frame["poet_length"]).all()
    else:
        assert (frame["chosen_kept"] == frame["chosen_capped"]).all()
        assert (frame["rejected_kept"] == frame["rejected_capped"]).all()


def test_shares_and_token_totals_equal_pandas(prepared):
    mode, folder = prepared
    stats, frame = read_document(folder)["splits"]["train"], read_shards(folder)
    n = len(frame)
    chosen, rejected = frame["chosen_length_orig"], frame["rejected_length_orig"]
    unequal_after_cap = frame["chosen_capped"] != frame["rejected_capped"]
    cut = (frame["chosen_kept"] < frame["chosen_capped"]) | (frame["rejected_kept"] < frame["rejected_capped"])
    expected_shares = {
        "chosen_longer": int((chosen > rejected).sum()),
        "rejected_longer": int((rejected > chosen).sum()),
        "equal_length": int((chosen == rejected).sum()),
        "poet_cut": int(cut.sum()),
        "poet_would_cut": int(unequal_after_cap.sum()),
    }
    for key, count in expected_shares.items():
        assert stats[key] == {"count": count, "pct": pct(count, n)}, key
    assert sum(expected_shares[k] for k in ("chosen_longer", "rejected_longer", "equal_length")) == n
    if mode == "poet":
        assert stats["poet_cut"] == stats["poet_would_cut"] and stats["poet_cut"]["count"] > n // 2
    else:
        assert stats["poet_cut"]["count"] == 0 and stats["poet_would_cut"]["count"] > n // 2

    before = int((frame["chosen_capped"] + frame["rejected_capped"]).sum())
    after = int((frame["chosen_kept"] + frame["rejected_kept"]).sum())
    prompts = int(2 * frame["prompt_length"].sum())
    assert stats["completion_tokens"] == {"before_poet": before, "after_poet": after, "removed": before - after,
                                          "removed_pct": pct(before - after, before)}
    assert stats["training_tokens"] == {"before_poet": before + prompts, "after_poet": after + prompts,
                                        "removed": before - after, "removed_pct": pct(before - after, before + prompts)}
    if mode == "poet":
        assert after == 2 * int(frame["poet_length"].sum()) and before - after > 0
    else:
        assert before == after


def test_poet_savings_are_counted_by_the_statistics(prepared):
    """The tokens the POET rule removes (or would remove, for --no-poet) come from the statistics, for the card."""
    mode, folder = prepared
    stats, frame = read_document(folder)["splits"]["train"], read_shards(folder)
    before = int((frame["chosen_capped"] + frame["rejected_capped"]).sum())
    removed = before - 2 * int(frame["poet_length"].sum())
    assert removed > 0 and stats["poet_removed_tokens"] == {"count": removed, "pct": pct(removed, before)}
    if mode == "poet":
        assert removed == stats["completion_tokens"]["removed"]
    card = (folder / "README.md").read_text()
    shown = f"{removed:,} ({stats['poet_removed_tokens']['pct']:.1f}%)"
    assert shown in card


def test_lost_eos_counts_equal_a_recount_from_the_ids(prepared, prepared_sample_no_poet, untruncated_has_eos, eos_id):
    mode, folder = prepared
    stats, frame = read_document(folder)["splits"]["train"], read_shards(folder)
    full = read_shards(prepared_sample_no_poet).set_index("id")
    lost = Counter()
    for row in frame.itertuples():
        has_chosen, has_rejected = untruncated_has_eos[row.id]
        if mode == "poet":  # the POET ids are a prefix of the capped ids of the same pair
            assert list(row.chosen_ids) == list(full.at[row.id, "chosen_ids"][: row.poet_length])
            assert list(row.rejected_ids) == list(full.at[row.id, "rejected_ids"][: row.poet_length])
        lost["chosen"] += has_chosen and eos_id not in row.chosen_ids
        lost["rejected"] += has_rejected and eos_id not in row.rejected_ids
    assert (stats["chosen_lost_eos"], stats["rejected_lost_eos"]) == (lost["chosen"], lost["rejected"])
    assert lost["chosen"] > 0 and lost["rejected"] > 0


def test_dead_letters_and_row_accounting(prepared):
    _, folder = prepared
    stats, frame = read_document(folder)["splits"]["train"], read_shards(folder)
    letters = read_dead_letters(folder)
    assert stats["dead_letter_reasons"] == dict(sorted(Counter(d["reason"] for d in letters).items()))
    assert stats["dead_lettered"] == len(letters) > 0
    assert stats["read"] == stats["pairs"] + stats["dead_lettered"] == source_line_count(HH_SAMPLE) == 2312
    assert stats["pairs"] == len(frame)


def test_joint_histogram_equals_pandas(prepared):
    _, folder = prepared
    stats, frame = read_document(folder)["splits"]["train"], read_shards(folder)
    edges = np.array(JOINT_EDGES)
    assert stats["chosen_rejected"]["edges"] == list(JOINT_EDGES)
    bins = pd.DataFrame({
        "chosen": edges[np.searchsorted(edges, frame["chosen_length_orig"], side="right") - 1],
        "rejected": edges[np.searchsorted(edges, frame["rejected_length_orig"], side="right") - 1],
    })
    counts = bins.value_counts().sort_index()
    assert stats["chosen_rejected"]["counts"] == [[int(c), int(r), int(v)] for (c, r), v in counts.items()]


def test_shard_manifest_matches_the_files(prepared):
    _, folder = prepared
    shards = read_document(folder)["shards"]["train"]
    assert [s["file"] for s in shards] == sorted(f"data/{p.name}" for p in (folder / "data").glob("*.parquet"))
    for shard in shards:
        table = pq.read_table(folder / shard["file"])
        assert shard["num_rows"] == table.num_rows
        assert shard["num_bytes"] == table.combine_chunks().nbytes  # one chunk, as written (and as push_to_hub counts)
        assert shard["file_size"] == os.path.getsize(folder / shard["file"])


def test_run_provenance_is_recorded(prepared_sample):
    run = read_document(prepared_sample)["run"]
    assert run["options"]["max_length"] == MAX_LENGTH and run["options"]["license"] == "mit"
    assert run["sources"] == [{"split": "train", "file": HH_SAMPLE.name}] and run["source_repos"] == []
    assert run["options"]["inputs"] == [f"train={HH_SAMPLE.name}"]
    assert run["tokenizer"]["name"] == MINIMIND.name and run["tokenizer"]["chat_template"] is True
    for folder in (HH_SAMPLE.parent, MINIMIND.parent):  # no path of the machine that ran the job
        assert str(folder) not in json.dumps(run) and str(folder) not in (prepared_sample / "README.md").read_text()
    assert len(run["tokenizer"]["sha256"]) == 64 and run["versions"]["datasets"]


def test_poet_stats_prints_the_table(prepared, capsys):
    from poet.pipeline.commands.cli import main

    mode, folder = prepared
    assert main(["stats", str(folder)]) == 0
    out = capsys.readouterr().out
    stats = read_document(folder)["splits"]["train"]
    assert out == render(read_document(folder)) + "\n"
    assert f"{stats['read']:,} read, {stats['pairs']:,} kept" in out
    assert ("POET cut" in out) == (mode == "poet") and ("POET would cut" in out) == (mode == "no_poet")
    assert main(["stats", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == read_document(folder)


def test_poet_stats_says_a_missing_local_folder_in_one_line(hub, tmp_path, monkeypatch, capsys):
    """Only a name that looks like ORG/NAME, with no local folder ORG, is looked up on the Hub."""
    from poet.pipeline.commands.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stats.json").write_text("{}")
    cases = {
        "out/missing-folder": "no such folder: out/missing-folder (for the Hub dataset, not the local folder out/",
        str(tmp_path / "out" / "missing"): f"no such folder: {tmp_path / 'out' / 'missing'} (nor is it a Hub dataset",
        "missing": "no such folder: missing (nor is it a Hub dataset id like user/name)",
        "out/stats.json": "out/stats.json is a file: pass the folder `poet prepare` wrote",
    }
    for name, message in cases.items():
        assert main(["stats", name]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("poet stats: error: ") and message in err, err
    assert hub.requests == []
    assert main(["stats", "alice/missing-folder"]) == 2  # no local folder alice: a Hub repo id, asked for
    assert "neither a local folder nor a dataset" in capsys.readouterr().err and hub.requests


def test_an_empty_split_has_null_statistics_and_valid_json():
    document = build_stats_document({"test": LengthStats()}, [("test", "data/test-00000-of-00001.parquet", 0, 0)],
                                    RunDescription(options=PrepareOptions(poet=True)), {"data/test-00000-of-00001.parquet": 123})
    text = dumps(document)
    assert "NaN" not in text and "Infinity" not in text
    stats = json.loads(text)["splits"]["test"]
    assert stats["pairs"] == stats["read"] == 0
    for quantity in QUANTITIES:
        assert stats["lengths"][quantity]["count"] == 0
        assert all(v is None for k, v in stats["lengths"][quantity].items() if k != "count")
        assert stats["histograms"][quantity] == []
    assert stats["chosen_longer"] == {"count": 0, "pct": None}
    assert stats["completion_tokens"]["removed_pct"] is None
    assert "0 kept" in render(json.loads(text))


# --- properties of the exact histograms ------------------------------------------------------------------------

histograms = st.dictionaries(st.integers(0, 5000), st.integers(0, 40), min_size=1, max_size=30).filter(
    lambda h: sum(h.values()) > 0)


@settings(max_examples=200, deadline=None)
@given(histograms)
def test_summarize_equals_pandas_on_the_expanded_values(histogram):
    values = pd.Series(np.repeat(list(histogram), list(histogram.values())), dtype="int64")
    assert_summary(summarize(Counter(histogram)), pandas_summary(values))


def test_summarize_of_nothing_is_null():
    assert summarize(Counter()) == summarize(Counter({7: 0})) == {
        "count": 0, "mean": None, "std": None, "min": None, "p10": None, "p50": None, "p90": None, "p99": None,
        "max": None}


@st.composite
def pair_lengths(draw) -> PairLengths:
    prompt, chosen, rejected = draw(st.integers(1, 300)), draw(st.integers(1, 400)), draw(st.integers(1, 400))
    room = draw(st.integers(1, 500))
    chosen_capped, rejected_capped = min(chosen, room), min(rejected, room)
    poet = min(chosen_capped, rejected_capped)
    truncate = draw(st.booleans())
    return PairLengths(prompt, chosen, rejected, chosen_capped, rejected_capped, poet,
                       poet if truncate else chosen_capped, poet if truncate else rejected_capped,
                       draw(st.booleans()), draw(st.booleans()))


def build(pairs, reasons) -> LengthStats:
    stats = LengthStats()
    for pair in pairs:
        stats.add(pair)
    for reason in reasons:
        stats.add_dead_letter(reason)
    return stats


reasons = st.lists(st.sampled_from(["prompt_too_long", "empty_response", "malformed_json"]), max_size=5)


@settings(max_examples=100, deadline=None)
@given(st.lists(pair_lengths(), max_size=30), st.lists(pair_lengths(), max_size=30), reasons, reasons)
def test_merging_equals_the_statistics_of_the_concatenation(a, b, dead_a, dead_b):
    merged = build(a, dead_a).merge(build(b, dead_b))
    assert merged.to_dict() == build(a + b, dead_a + dead_b).to_dict()
    assert build(b, dead_b).merge(build(a, dead_a)).to_dict() == merged.to_dict()
    assert merged.to_dict()["read"] == len(a) + len(b) + len(dead_a) + len(dead_b)
    json.dumps(merged.to_dict(), allow_nan=False)


@given(st.integers(0, 2**26))
def test_joint_bins_cover_every_length(length):
    low = joint_bin(length)
    assert low <= length
    position = JOINT_EDGES.index(low)
    assert position == len(JOINT_EDGES) - 1 or length < JOINT_EDGES[position + 1]


def test_sequence_lengths_are_prompt_plus_the_longer_completion(prepared):
    mode, folder = prepared
    stats, frame = read_document(folder)["splits"]["train"], read_shards(folder)
    sequence = frame["prompt_length"] + np.maximum(frame["chosen_length_orig"], frame["rejected_length_orig"])
    assert_summary(stats["lengths"]["sequence"], pandas_summary(sequence))
    assert stats["histograms"]["sequence"] == [[int(k), int(v)] for k, v in sequence.value_counts().sort_index().items()]
