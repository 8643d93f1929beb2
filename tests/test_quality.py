"""The data-quality rules (transforms/quality.py, transforms/decontamination.py), each against pandas."""

import hashlib
import io
import json
import random
import string

import pandas as pd
import pytest

from poet.transforms.decontamination import NGRAM, NgramIndex, eval_prompts
from poet.transforms.errors import UserError
from poet.transforms.prepare import RowOrigin
from poet.transforms.quality import (QualityCheck, TestSize, apply, duplicates, last_test_prompt, merge_counts)
from poet.transforms.readers import SourceRow

WORDS = [f"w{i}" for i in range(40)]


def blake(value) -> str:
    return hashlib.blake2b(json.dumps(value, ensure_ascii=False, sort_keys=True).encode(), digest_size=16).hexdigest()


def corpus(seed: int = 0, rows: int = 400) -> list[dict]:
    """Standard-format rows with repeated prompts, exact duplicates, and scores (some missing)."""
    rng = random.Random(seed)
    prompts = [" ".join(rng.choices(WORDS, k=rng.randint(3, 30))) for _ in range(60)]
    out = []
    for i in range(rows):
        if out and rng.random() < 0.2:
            row = dict(rng.choice(out))  # an exact duplicate, perhaps with other scores
            row["score_chosen"] = rng.choice([row.get("score_chosen"), 9.0])
        else:
            row = {"prompt": rng.choice(prompts), "chosen": f"yes {rng.randint(0, 30)}", "rejected": f"no {i}"}
            if rng.random() < 0.9:
                row["score_chosen"], row["score_rejected"] = rng.randint(0, 10) / 2, rng.randint(0, 10) / 2
        out.append(row)
    return out


def checked(rows, conversational=False, **options):
    check = QualityCheck(None, conversational, **options)
    return [check.check(RowOrigin("train", "a.jsonl", 0, line), SourceRow(line, row)) for line, row in
            enumerate(rows, start=1)]


def frame(rows) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df["line"] = range(1, len(df) + 1)
    df["id"] = [blake([r["prompt"], r["chosen"], r["rejected"]]) for r in rows]
    df["key"] = [int(blake(r["prompt"])[:16], 16) for r in rows]
    return df


def outcome(rows, test_fraction=None, threshold=None, **options):
    checks = checked(rows, **options)
    dups = duplicates([(c.pair_id, c.origin.sort_key, c.origin) for c in checks if c.pair_id])
    kept, dead = apply(checks, {d.sort_key: d for d in dups}, test_fraction, threshold)
    return kept, {d.origin.line: d for d in dead}


def test_dedup_keeps_the_first_row_in_input_order_like_pandas():
    rows = corpus()
    df = frame(rows)
    expected = df[df.duplicated("id", keep="first")]
    first_line = df.drop_duplicates("id", keep="first").set_index("id")["line"]
    kept, dead = outcome(rows)
    assert sorted(dead) == list(expected["line"]) and len(expected) > 20
    for _, row in expected.iterrows():
        letter = dead[row["line"]]
        assert letter.reason == "duplicate" and dict(letter.extra)["kept_id"] == row["id"]
        assert f"line {first_line[row['id']]}" in letter.detail
        assert letter.to_json()["kept_id"] == row["id"]
    assert [origin.line for origin, _ in kept["train"]] == list(df.drop_duplicates("id")["line"])


def test_duplicates_do_not_depend_on_the_order_rows_arrive_in():
    rows = [(f"id{i % 7}", (i % 3, i), RowOrigin("train", "f", i % 3, i)) for i in range(50)]
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert duplicates(rows) == duplicates(shuffled)


def test_margin_after_dedup_like_pandas():
    rows = corpus(seed=2)
    df = frame(rows).drop_duplicates("id", keep="first")
    margin = df["score_chosen"] - df["score_rejected"]
    missing = df["score_chosen"].isna() | df["score_rejected"].isna()
    _, dead = outcome(rows, min_score_margin=1.0)
    got = {line: d.reason for line, d in dead.items() if d.reason != "duplicate"}
    expected = {**{line: "missing_score" for line in df.loc[missing, "line"]},
                **{line: "low_margin" for line in df.loc[~missing & (margin < 1.0), "line"]}}
    assert got == expected and "missing_score" in got.values() and "low_margin" in got.values()


@pytest.mark.parametrize("record, reason", [
    ({"score_chosen": True, "score_rejected": 0}, "missing_score"),
    ({"score_chosen": float("nan"), "score_rejected": 0}, "missing_score"),
    ({"score_chosen": "5", "score_rejected": 0}, "missing_score"),
    ({"chosen-rating": 5, "rejected-rating": 4.5}, "low_margin"),
    ({"chosen-rating": 5, "rejected-rating": 4}, None),
])
def test_score_fields_of_every_format(record, reason):
    row = {"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
           "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}], **record}
    (check,) = checked([row], conversational=True, min_score_margin=1)
    assert check.verdict == reason


def _pandas_ngrams(text: str) -> set[str]:
    cleaned = text.lower().translate(str.maketrans("", "", string.punctuation)).split()
    return {" ".join(cleaned[i:i + NGRAM]) for i in range(len(cleaned) - NGRAM + 1)}


def test_decontamination_like_pandas_after_dedup_and_margin():
    rng = random.Random(3)
    rows = corpus(seed=3)
    evals = [" ".join(rng.choices(WORDS, k=rng.randint(5, 40))) + "?" for _ in range(30)]
    evals += [rows[i]["prompt"].upper().replace(" ", ",  ") for i in (5, 50)]  # leaked, other case and punctuation
    index = NgramIndex()
    index.add("a.txt", evals[:20])
    index.add("b.jsonl", evals[20:])
    df = frame(rows).drop_duplicates("id", keep="first")
    df = df[(df["score_chosen"] - df["score_rejected"]) >= 0]
    eval_grams = pd.DataFrame([(g, "a.txt" if i < 20 else "b.jsonl") for i, e in enumerate(evals)
                               for g in _pandas_ngrams(e)], columns=["gram", "source"]).drop_duplicates("gram")
    first_source = eval_grams.set_index("gram")["source"]
    expected = {}
    for _, row in df.iterrows():
        cleaned = _pandas_ngrams(row["prompt"])
        ordered = row["prompt"].lower().split()
        grams = [" ".join(ordered[i:i + NGRAM]) for i in range(len(ordered) - NGRAM + 1)]
        hit = next((g for g in grams if g in cleaned and g in first_source.index), None)
        if hit:
            expected[row["line"]] = (first_source[hit], hit)
    _, dead = outcome(rows, min_score_margin=0, ngrams=index)
    got = {line: (dict(d.extra)["eval_source"], dict(d.extra)["ngram"]) for line, d in dead.items()
           if d.reason == "contaminated"}
    assert got == expected and len(got) > 3 and {s for s, _ in got.values()} == {"a.txt", "b.jsonl"}
    assert index.sources[0].short == sum(len(e.split()) < NGRAM for e in evals[:20])


@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_fraction_split_by_prompt_hash_like_pandas(fraction):
    rows = corpus(seed=4)
    df = frame(rows).drop_duplicates("id", keep="first")
    kept, _ = outcome(rows, test_fraction=fraction)
    test_lines = [o.line for o, _ in kept["test"]]
    assert test_lines == list(df.loc[df["key"] < fraction * 2**64, "line"])
    test_prompts = {rows[line - 1]["prompt"] for line in test_lines}
    assert not test_prompts & {rows[o.line - 1]["prompt"] for o, _ in kept["train"]}


@pytest.mark.parametrize("count", [1, 17, 10_000])
def test_count_split_takes_whole_prompts_in_hash_order_like_pandas(count):
    rows = corpus(seed=5)
    df = frame(rows).drop_duplicates("id", keep="first")
    per_prompt = df.groupby("key").size().sort_index()
    cumulative = per_prompt.cumsum()
    test_keys = per_prompt.index[: int((cumulative < count).sum()) + 1]
    parts = [df.iloc[i::3].groupby("key").size().to_dict() for i in range(3)]  # counted in three buckets
    threshold = last_test_prompt(merge_counts([merge_counts([p], count) for p in parts], count), count)
    kept, _ = outcome(rows, threshold=threshold)
    assert [o.line for o, _ in kept.get("test", [])] == list(df.loc[df["key"].isin(test_keys), "line"])
    assert len(kept.get("test", [])) >= min(count, len(df))


@pytest.mark.parametrize("text, parsed", [("0.1", TestSize(fraction=0.1)), ("500", TestSize(count=500)),
                                          ("0", None), ("1.5", None), ("1.0", None), ("x", None), ("-3", None)])
def test_test_size_is_a_fraction_or_a_count(text, parsed):
    if parsed is None:
        with pytest.raises(Exception, match="fraction"):
            TestSize.parse(text)
    else:
        assert TestSize.parse(text) == parsed


def test_eval_prompts_from_every_file_kind_and_field(tmp_path):
    messages = [{"role": "user", "content": "asked"}, {"role": "assistant", "content": "answer"}]
    lines = [{"prompt": "p"}, {"instruction": "i"}, {"question": "q"}, {"messages": messages}, {"turns": ["a", "b"]}]
    jsonl = "".join(json.dumps(line) + "\n" for line in lines[:4]).encode()
    assert list(eval_prompts("e.jsonl", io.BytesIO(jsonl), "e.jsonl")) == ["p", "i", "q", "asked"]
    assert list(eval_prompts("e.txt", io.BytesIO(b"one\n\n two \n"), "e.txt")) == ["one", "two"]
    assert list(eval_prompts("e.json", io.BytesIO(json.dumps(lines[4:]).encode()), "e.json", "turns")) == ["a\nb"]
    path = tmp_path / "e.parquet"
    pd.DataFrame({"question": ["x", "y"]}).to_parquet(path)
    assert list(eval_prompts(str(path), path.open("rb"), "e.parquet")) == ["x", "y"]
    with pytest.raises(UserError, match=r"e.jsonl row 2: no 'prompt' or"):
        list(eval_prompts("e.jsonl", io.BytesIO(b'{"prompt": "a"}\n{"text": "b"}\n'), "e.jsonl"))


# --- poet prepare with the options, against pandas -------------------------------------------------------------

from conftest import GPT2, prepare  # noqa: E402
from quality_corpus import ALL_ON, expected, observed, quality_args, write_corpus  # noqa: E402


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("quality"))




@pytest.fixture(scope="module")
def all_on(tmp_path_factory, corpus_files):
    out = tmp_path_factory.mktemp("quality-run") / "all-on"
    assert prepare(out, *quality_args(*corpus_files, *ALL_ON)) == 0
    return out


def test_all_four_options_like_pandas(all_on, corpus_files):
    kept, dead = expected(*corpus_files)
    assert observed(all_on) == (kept, dead)
    reasons = set(dead.values())
    assert {"duplicate", "missing_score", "low_margin", "contaminated", "malformed_json",
            "identical_responses", "empty_prompt"} <= reasons and len(kept["test"]) > 20
    stats = json.loads((all_on / "stats.json").read_text())
    counted = {}
    for split in stats["splits"].values():
        for reason, count in split["dead_letter_reasons"].items():
            counted[reason] = counted.get(reason, 0) + count
    assert counted == dict(pd.Series(list(dead.values())).value_counts())
    (source,) = stats["decontamination"]["eval_sources"]
    assert source["contaminated"] == counted["contaminated"] and source["file"] == "evals.jsonl"


def test_the_card_has_a_data_quality_section(all_on):
    card = (all_on / "README.md").read_text()
    section = card[card.index("## Data quality"):card.index("## Statistics")]
    stats = json.loads((all_on / "stats.json").read_text())
    train = stats["splits"]["train"]["dead_letter_reasons"]
    for reason in ("duplicate", "missing_score", "low_margin", "contaminated"):
        assert f"| `{reason}` | 0 | {train[reason]:,} |" in section
    assert "| `evals.jsonl` | 52 |" in section and "--test-size 0.25" in section
    assert f"The `test` split ({stats['splits']['test']['pairs']:,} pairs)" in " ".join(section.split())


def test_contaminated_and_duplicate_dead_letters_name_their_cause(all_on):
    letters = [json.loads(line) for line in (all_on / "dead_letter" / "train.jsonl").read_text().splitlines()]
    ids = {}
    for path in (all_on / "data").glob("*.parquet"):
        ids.update(dict(zip(*[pd.read_parquet(path)[c] for c in ("id", "prompt")])))
    duplicate = next(letter for letter in letters if letter["reason"] == "duplicate")
    row = duplicate["row"]
    assert duplicate["kept_id"] == blake([row["prompt"], row["chosen"], row["rejected"]])
    contaminated = next(letter for letter in letters if letter["reason"] == "contaminated")
    assert contaminated["eval_source"] == "evals.jsonl" and len(contaminated["ngram"].split()) == NGRAM
    assert contaminated["ngram"] in contaminated["row"]["prompt"]


def test_a_rerun_is_byte_identical(all_on, corpus_files, tmp_path):
    assert prepare(tmp_path / "again", *quality_args(*corpus_files, *ALL_ON)) == 0
    files = sorted(p.relative_to(all_on) for p in all_on.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file())
    for name in files:
        assert (all_on / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name


def test_a_test_count_takes_whole_prompts_in_hash_order_like_pandas(corpus_files, tmp_path):
    assert prepare(tmp_path / "count", *quality_args(*corpus_files, "--dedup", "--test-size", "40")) == 0
    kept, dead = expected(*corpus_files, test_fraction=None, margin=None, test_count=40)
    assert observed(tmp_path / "count") == (kept, dead)
    assert len(kept["test"]) >= 40


def test_one_file_is_deduplicated_as_it_streams_like_pandas(corpus_files, tmp_path):
    """One read: no first read, copies are found as the rows stream (the mirror file's copies are all within it)."""
    files, eval_file = corpus_files
    joined = tmp_path / "joined.jsonl"
    joined.write_text(files[0].read_text() + files[1].read_text())
    assert prepare(tmp_path / "one", *quality_args([joined], eval_file, *ALL_ON)) == 0
    kept, dead = expected([joined], eval_file)
    assert observed(tmp_path / "one") == (kept, dead)
    assert list(dead.values()).count("duplicate") > 60


@pytest.mark.parametrize("extra, message", [
    (["--input", "test=EVAL", "--test-size", "0.1"], "--test-size carves a 'test' split out of 'train', but --input "
                                                      "already gives a 'test' split"),
    (["--decontaminate", "missing*.jsonl"], "--decontaminate 'missing*.jsonl' matches no file"),
    (["--decontaminate", "EVAL", "--decontaminate-field", "answer"], "evals.jsonl row 1: no 'answer' field"),
    (["--decontaminate-field", "x"], "--decontaminate-field needs --decontaminate"),
    (["--test-size", "1.5"], "must be a fraction 0 < F < 1 or a whole count"),
])
def test_option_problems_are_one_line(corpus_files, tmp_path, capsys, extra, message):
    files, eval_file = corpus_files
    args = ["--input", f"train={files[0]}", "--tokenizer", str(GPT2),
            *[str(eval_file) if a == "EVAL" else a for a in extra]]
    assert prepare(tmp_path / "out", *args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "out").exists()

