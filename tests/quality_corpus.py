"""A messy plain-text preference corpus for the data-quality options, and what pandas says a run must make of it.

Two files (the second copies rows of the first, as mirrors do), exact duplicates within and across files, scores
present, missing, non-numeric or tied, prompts shared by several pairs, eval prompts that leak training prompts
with other case, punctuation and spacing, and rows that fail parsing before any quality rule (malformed JSON,
identical responses, an empty prompt). :func:`expected` computes every row's fate independently of poet's code:
its own hash, its own normalisation, pandas' ``duplicated`` and comparisons.
"""

from __future__ import annotations

import hashlib
import json
import random
import string
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

VOCABULARY = ("the a model answer question data water river city music light night garden story market paper "
              "window number letter friend school table summer winter travel memory simple quiet").split()
NGRAM = 13
MARGIN = 1.0
FRACTION = 0.25
ALL_ON = ("--dedup", "--min-score-margin", str(MARGIN), "--test-size", str(FRACTION))


def quality_args(files: list[Path], eval_file: Path, *options: str) -> list[str]:
    """``poet prepare`` arguments for the corpus (GPT-2's tokenizer: plain text), ``--decontaminate`` included."""
    from conftest import GPT2

    return [*[a for path in files for a in ("--input", f"train={path}")], "--tokenizer", str(GPT2),
            "--batch-size", "64", *options, "--decontaminate", str(eval_file)]


def _blake(value) -> str:
    return hashlib.blake2b(json.dumps(value, ensure_ascii=False, sort_keys=True).encode(), digest_size=16).hexdigest()


def write_corpus(folder: Path, seed: int = 0) -> tuple[list[Path], Path]:
    """``(input files, eval file)`` in ``folder``."""
    rng = random.Random(seed)
    prompts = [" ".join(rng.choices(VOCABULARY, k=rng.randint(4, 40))) for _ in range(150)]
    rows: list = []
    for i in range(500):
        if rows and rng.random() < 0.12:
            rows.append(dict(rng.choice([r for r in rows if isinstance(r, dict)])))
            continue
        row = {"prompt": rng.choice(prompts), "chosen": f"Yes {rng.randint(0, 40)}", "rejected": f"No {i}"}
        kind = rng.random()
        if kind < 0.8:
            row["score_chosen"], row["score_rejected"] = rng.randint(0, 8) / 2, rng.randint(0, 8) / 2
        elif kind < 0.9:
            row["score_chosen"] = 5
        else:
            row["score_chosen"], row["score_rejected"] = "high", 1
        rows.append(row)
    rows[10] = "{not json"
    rows[11] = {"prompt": "same", "chosen": "x", "rejected": "x", "score_chosen": 9, "score_rejected": 0}
    rows[12] = {"prompt": " ", "chosen": "Yes", "rejected": "No", "score_chosen": 9, "score_rejected": 0}
    rows[13] = dict(rows[11])
    mirror = [dict(rows[i]) if isinstance(rows[i], dict) else rows[i] for i in range(0, 500, 9)]
    files = [folder / "a.jsonl", folder / "b.jsonl"]
    for path, content in zip(files, (rows, mirror)):
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in content))
    leaked = [p for p in prompts if len(p.split()) >= 20][:12]
    evals = [" ".join(rng.choices(VOCABULARY, k=30)) for _ in range(40)]
    evals += [p.upper().replace(" ", " ,  ", 3) + "?" for p in leaked]
    eval_file = folder / "evals.jsonl"
    eval_file.write_text("".join(json.dumps({"question": e}) + "\n" for e in evals))
    return files, eval_file


def _ngrams(text: str) -> set[str]:
    words = text.lower().translate(str.maketrans("", "", string.punctuation)).split()
    return {" ".join(words[i:i + NGRAM]) for i in range(len(words) - NGRAM + 1)}


def expected(files: list[Path], eval_file: Path | None, test_fraction: float | None = FRACTION,
             margin: float | None = MARGIN, test_count: int | None = None
             ) -> tuple[dict[str, list[str]], dict[tuple[str, int], str]]:
    """``({split: ids of the kept pairs in order}, {(file name, line): reason})`` by pandas."""
    records = []
    for index, path in enumerate(files):
        for line, text in enumerate(path.read_text().splitlines(), start=1):
            try:
                row = json.loads(text)
            except ValueError:
                records.append({"file": path.name, "file_index": index, "line": line, "own": "malformed_json"})
                continue
            own = ("identical_responses" if row["chosen"] == row["rejected"]
                   else "empty_prompt" if not row["prompt"].strip() else None)
            records.append({"file": path.name, "file_index": index, "line": line, "own": own, **row})
    df = pd.DataFrame(records).sort_values(["file_index", "line"])
    df["reason"] = df["own"]
    valid = df["own"].isna()
    df["id"] = [_blake([r.prompt, r.chosen, r.rejected]) if ok else None for r, ok in zip(df.itertuples(), valid)]
    df.loc[valid & df[valid].duplicated("id", keep="first").reindex(df.index, fill_value=False), "reason"] = "duplicate"
    if margin is not None:
        open_ = df["reason"].isna()
        chosen = pd.to_numeric(df["score_chosen"], errors="coerce")
        rejected = pd.to_numeric(df.get("score_rejected"), errors="coerce")
        numeric = df["score_chosen"].map(lambda v: isinstance(v, (int, float))) & chosen.notna() & rejected.notna()
        df.loc[open_ & ~numeric, "reason"] = "missing_score"
        df.loc[open_ & numeric & (chosen - rejected < margin), "reason"] = "low_margin"
    if eval_file is not None:
        questions = [json.loads(line)["question"] for line in eval_file.read_text().splitlines()]
        eval_grams = set().union(*map(_ngrams, questions))
        open_ = df["reason"].isna()
        df.loc[open_ & df["prompt"].map(lambda p: bool(_ngrams(str(p)) & eval_grams)), "reason"] = "contaminated"
    df["split"] = "train"
    key = df["prompt"].map(lambda p: int(_blake(p)[:16], 16) if isinstance(p, str) else 2**64)
    if test_fraction is not None:
        df.loc[df["reason"].isna() & (key < test_fraction * 2**64), "split"] = "test"
    if test_count is not None:  # whole prompts in hash order until the test split holds test_count pairs
        per_prompt = key[df["reason"].isna()].value_counts().sort_index()
        last = per_prompt.index[min(int((per_prompt.cumsum() < test_count).sum()), len(per_prompt) - 1)]
        df.loc[df["reason"].isna() & (key <= last), "split"] = "test"
    kept = df[df["reason"].isna()]
    return ({split: list(group["id"]) for split, group in kept.groupby("split")},
            {(r.file, r.line): r.reason for r in df[df["reason"].notna()].itertuples()})


def observed(folder: Path) -> tuple[dict[str, list[str]], dict[tuple[str, int], str]]:
    """The same from a prepared folder: shard ids per split in order, dead-letter reasons by file and line."""
    kept = {}
    for shard in sorted((folder / "data").glob("*.parquet")):
        kept.setdefault(shard.name.split("-")[0], []).extend(pq.read_table(shard, columns=["id"])["id"].to_pylist())
    dead = {}
    for path in (folder / "dead_letter").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            letter = json.loads(line)
            dead[(Path(letter["file"]).name, letter["line"])] = letter["reason"]
    return kept, dead
