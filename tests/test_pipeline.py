"""End to end: ``poet prepare`` on real data, checked against TRL and against the source files."""

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import load_dataset

from conftest import GPT2, HH_SAMPLE, MINIMIND, SHAREGPT_SAMPLE, prepare, trl_reference_ids
from poet.transforms.formats import PreferencePair
from poet.transforms.tokenization import load_tokenizer

COLUMNS = ["id", "prompt_ids", "chosen_ids", "rejected_ids", "prompt_length", "chosen_length_orig",
           "rejected_length_orig", "poet_length", "prompt", "chosen", "rejected"]


def source_lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [line for line in handle if line.strip()]


def dead_letters(folder: Path, split: str = "train") -> list[dict]:
    path = folder / "dead_letter" / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def shard_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "data").glob("*.parquet"))}


def test_every_row_equals_trl_then_the_poet_rule(prepared_sample):
    rows = load_dataset(str(prepared_sample), split="train")
    assert rows.column_names == COLUMNS
    assert rows.features["prompt_ids"].feature.dtype == "int32"
    pairs = [PreferencePair(r["prompt"], r["chosen"], r["rejected"]) for r in rows]
    reference = trl_reference_ids(load_tokenizer(str(MINIMIND)), pairs)
    max_length = 512
    for row, ref in zip(rows, reference):
        room = max_length - len(ref["prompt_ids"])
        chosen, rejected = ref["chosen_ids"][:room], ref["rejected_ids"][:room]
        length = min(len(chosen), len(rejected))
        assert row["prompt_ids"] == ref["prompt_ids"]
        assert row["chosen_ids"] == chosen[:length] and row["rejected_ids"] == rejected[:length]
        assert len(row["chosen_ids"]) == len(row["rejected_ids"]) == row["poet_length"] == min(
            row["chosen_length_orig"], row["rejected_length_orig"], room)
        assert (row["chosen_length_orig"], row["rejected_length_orig"]) == (
            len(ref["chosen_ids"]), len(ref["rejected_ids"]))
        assert row["prompt_length"] == len(row["prompt_ids"])


def test_nothing_is_lost(prepared_sample):
    lines = source_lines(HH_SAMPLE)
    kept = load_dataset(str(prepared_sample), split="train")
    dead = dead_letters(prepared_sample)
    assert len(kept) + len(dead) == len(lines) == 2312
    for letter in dead:
        assert letter["file"].endswith("harmless-base-test.jsonl.gz")
        assert letter["row"] == json.loads(lines[letter["line"] - 1])
        assert letter["reason"] in {"bad_role_order", "empty_response", "prompt_too_long",
                                    "identical_after_truncation"}
    assert len({r["id"] for r in kept}) == len(kept)


def test_no_poet_keeps_lengths_and_same_rows(prepared_sample, prepared_sample_no_poet):
    poet = load_dataset(str(prepared_sample), split="train")
    full = load_dataset(str(prepared_sample_no_poet), split="train")
    assert poet["id"] == full["id"][: len(poet)] or set(poet["id"]) <= set(full["id"])
    by_id = {r["id"]: r for r in full}
    for row in poet:
        other = by_id[row["id"]]
        length = row["poet_length"]
        assert other["poet_length"] == length
        assert other["chosen_ids"][:length] == row["chosen_ids"]
        assert other["rejected_ids"][:length] == row["rejected_ids"]
    assert any(len(r["chosen_ids"]) != len(r["rejected_ids"]) for r in full)


def test_shards_are_deterministic_balanced_and_in_source_order(tmp_path):
    args = ["--input", str(SHAREGPT_SAMPLE), "--tokenizer", str(MINIMIND), "--num-shards", "3"]
    assert prepare(tmp_path / "a", *args) == 0
    assert prepare(tmp_path / "b", *args) == 0
    first, second = shard_bytes(tmp_path / "a"), shard_bytes(tmp_path / "b")
    assert list(first) == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    assert first == second
    counts = [pq.read_metadata(tmp_path / "a" / "data" / name).num_rows for name in first]
    dead_lines = {d["line"] for d in dead_letters(tmp_path / "a")}
    assert max(counts) - min(counts) <= 1 and sum(counts) + len(dead_lines) == 300
    schema = pq.read_schema(tmp_path / "a" / "data" / next(iter(first)))
    assert b"huggingface" in schema.metadata
    ids = [r["id"] for r in load_dataset(str(tmp_path / "a"), split="train")]
    records = json.loads(SHAREGPT_SAMPLE.read_text())
    from poet.transforms.formats import normalize

    assert ids == [normalize(r).content_id() for i, r in enumerate(records, 1) if i not in dead_lines]


def test_all_file_formats_and_splits_with_malformed_lines(tmp_path):
    records = json.loads(SHAREGPT_SAMPLE.read_text())[:40]
    jsonl = tmp_path / "in" / "part-a.jsonl"
    jsonl.parent.mkdir()
    jsonl.write_text("\n".join(json.dumps(r) for r in records[:10]) + "\n{not json\n")
    with gzip.open(tmp_path / "in" / "part-b.jsonl.gz", "wt") as handle:
        handle.write("\n".join(json.dumps(r) for r in records[10:20]) + "\n")
    (tmp_path / "in" / "part-c.json").write_text(json.dumps(records[20:30]))
    pq.write_table(pa.Table.from_pylist(records[30:40]), tmp_path / "in" / "test.parquet")
    assert prepare(tmp_path / "out", "--input", str(tmp_path / "in" / "part-*"),
                   "--input", f"test={tmp_path / 'in' / 'test.parquet'}", "--tokenizer", str(MINIMIND)) == 0
    train = load_dataset(str(tmp_path / "out"), split="train")
    test = load_dataset(str(tmp_path / "out"), split="test")
    assert len(train) == 30 and len(test) == 10
    [bad] = dead_letters(tmp_path / "out")
    assert bad["reason"] == "malformed_json" and bad["line"] == 11 and bad["row"] == "{not json"


def test_drop_text_keeps_only_ids(tmp_path):
    assert prepare(tmp_path / "out", "--input", str(SHAREGPT_SAMPLE), "--tokenizer", str(MINIMIND),
                   "--drop-text") == 0
    assert load_dataset(str(tmp_path / "out"), split="train").column_names == COLUMNS[:8]


def test_plain_text_data_with_a_tokenizer_without_chat_template(tmp_path):
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps({"prompt": f"Q{i}: sky?", "chosen": " blue" * (i + 1), "rejected": " red"})
                              + "\n" for i in range(5)))
    assert prepare(tmp_path / "out", "--input", str(source), "--tokenizer", str(GPT2)) == 0
    rows = load_dataset(str(tmp_path / "out"), split="train")
    eos = load_tokenizer(str(GPT2)).eos_token_id
    assert rows[0]["chosen_ids"][-1] == eos and rows[0]["rejected_ids"][-1] == eos  # equal length 2: both keep EOS
    assert all(len(r["chosen_ids"]) == 2 for r in rows)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--tokenizer", "/nonexistent/tokenizer"], "no such tokenizer folder: /nonexistent/tokenizer; pass a local"),
        (["--tokenizer", "samples/tokenizers/gpt2"], "no such tokenizer folder: samples/tokenizers/gpt2"),
        (["--tokenizer", str(GPT2)], "has no chat template"),
    ],
)
def test_clear_errors_for_bad_tokenizers(tmp_path, capsys, extra, message):
    assert prepare(tmp_path / "out", "--input", str(SHAREGPT_SAMPLE), *extra) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_clear_errors_for_bad_inputs(tmp_path, capsys):
    base = ["--tokenizer", str(MINIMIND)]
    assert prepare(tmp_path / "out", "--input", str(tmp_path / "missing*.jsonl"), *base) == 2
    assert "matches no file" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("hi")
    assert prepare(tmp_path / "out", "--input", str(tmp_path / "notes.txt"), *base) == 2
    assert "unsupported file type" in capsys.readouterr().err
    text = tmp_path / "text.jsonl"
    text.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n")
    assert prepare(tmp_path / "out", "--input", str(text), "--input", str(SHAREGPT_SAMPLE), *base) == 2
    assert "mixed data" in capsys.readouterr().err
    (tmp_path / "broken.jsonl.gz").write_bytes(b"this is not gzip")
    assert prepare(tmp_path / "out", "--input", str(tmp_path / "broken.jsonl.gz"), *base) == 2
    assert "cannot read" in capsys.readouterr().err
    assert prepare(tmp_path / "out", "--input", f"dev-2={SHAREGPT_SAMPLE}", *base) == 2
    assert "invalid split name" in capsys.readouterr().err


def test_existing_output_needs_overwrite_and_a_failed_run_leaves_nothing(tmp_path, capsys, monkeypatch):
    args = ["--input", str(SHAREGPT_SAMPLE), "--tokenizer", str(MINIMIND)]
    out = tmp_path / "out"
    assert prepare(out, *args) == 0
    assert prepare(out, *args) == 2
    assert "--overwrite" in capsys.readouterr().err

    import poet.pipeline.steps.write_shards

    def crash(*_, **__):
        raise RuntimeError("disk full")

    monkeypatch.setattr(poet.pipeline.steps.write_shards, "write_parquet", crash)
    with pytest.raises(Exception, match="disk full"):
        prepare(tmp_path / "crashed", *args)
    assert list(tmp_path.iterdir()) == [out]
    monkeypatch.undo()
    before = shard_bytes(out)
    assert prepare(out, *args, "--overwrite", "--num-shards", "2") == 0
    assert shard_bytes(out) != before and len(shard_bytes(out)) == 2


def test_a_split_with_no_kept_rows_gets_stats_but_no_shard(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "chosen": "same", "rejected": "same"}) + "\n")
    assert prepare(tmp_path / "out", "--input", str(SHAREGPT_SAMPLE), "--input", f"test={bad}",
                   "--tokenizer", str(MINIMIND), "--license", "mit") == 0
    assert not list((tmp_path / "out" / "data").glob("test-*"))
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["splits"]["test"]["pairs"] == 0 and stats["splits"]["test"]["dead_lettered"] == 1
    assert list(load_dataset(str(tmp_path / "out"))) == ["train"]


def test_shards_are_written_like_datasets_push_to_hub_writes_parquet(prepared_sample, tmp_path):
    """Content-defined chunking and a page index, as ``datasets`` 5.x writes shards for the Hub: the shard's
    bytes equal ``Dataset.to_parquet`` of its own rows, and its metadata shows both options in effect."""
    from datasets import Dataset, config

    from poet.pipeline.steps.write_shards import ROW_GROUP_SIZE

    [shard] = sorted((prepared_sample / "data").glob("*.parquet"))
    parquet = pq.ParquetFile(shard)
    assert json.loads(parquet.metadata.metadata[b"content_defined_chunking"]) == config.DEFAULT_CDC_OPTIONS
    assert parquet.metadata.num_row_groups == -(-parquet.metadata.num_rows // ROW_GROUP_SIZE)
    for group in range(parquet.metadata.num_row_groups):
        for column in range(parquet.metadata.num_columns):
            chunk = parquet.metadata.row_group(group).column(column)
            assert chunk.has_offset_index and chunk.has_column_index
            assert chunk.compression == "SNAPPY"
    rows = Dataset(pq.read_table(shard))
    rows.to_parquet(tmp_path / "by-datasets.parquet", batch_size=ROW_GROUP_SIZE)
    assert (tmp_path / "by-datasets.parquet").read_bytes() == shard.read_bytes()
    without_cdc = tmp_path / "without-cdc.parquet"
    rows.to_parquet(without_cdc, batch_size=ROW_GROUP_SIZE, use_content_defined_chunking=False)
    assert without_cdc.read_bytes() != shard.read_bytes()
