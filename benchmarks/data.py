"""Benchmark inputs: the bundled HH-RLHF sample, replicated with distinct ids.

Replica ``k`` (``k >= 1``) of every row gets `` (replica k)`` appended to its first
human turn, in both transcripts, so every pair keeps its structure and lengths
(give or take a few tokens) but has different text, hence a different content
id: nothing downstream can deduplicate or cache its way through the copies.
Replica 0 is the sample itself.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "hh-rlhf" / "harmless-base-test.jsonl.gz"
TOKENIZER = REPO / "samples" / "tokenizers" / "smollm2-135m-instruct"
WORK = REPO / "benchmarks" / "_work"
_ASSISTANT = "\n\nAssistant: "


def _mark(transcript: str, replica: int) -> str:
    cut = transcript.find(_ASSISTANT)
    return transcript if cut < 0 else f"{transcript[:cut]} (replica {replica}){transcript[cut:]}"


def replicate(factor: int, folder: Path = WORK) -> Path:
    """``folder/hh-rlhf-x{factor}.jsonl.gz`` with ``factor`` copies of the sample (built once, then reused)."""
    path = folder / f"hh-rlhf-x{factor}.jsonl.gz"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    partial = path.with_suffix(".partial")
    with gzip.open(partial, "wt", encoding="utf-8", compresslevel=6) as out:
        for replica in range(factor):
            for row in rows:
                if replica and isinstance(row.get("chosen"), str) and isinstance(row.get("rejected"), str):
                    row = {**row, "chosen": _mark(row["chosen"], replica), "rejected": _mark(row["rejected"], replica)}
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    partial.rename(path)
    return path


def tiny(rows: int = 16, folder: Path = WORK) -> Path:
    """The first ``rows`` rows of the sample: a run on it measures the pipeline's fixed start-up cost."""
    path = folder / f"hh-rlhf-first{rows}.jsonl"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with gzip.open(SAMPLE, "rt", encoding="utf-8") as handle:
            lines = [line for _, line in zip(range(rows), handle)]
        path.write_text("".join(lines), encoding="utf-8")
    return path


def read_pairs(path: Path):
    """The valid pairs of a file, normalised as ``poet prepare`` does (invalid rows skipped)."""
    from poet.transforms.formats import normalize
    from poet.transforms.readers import iter_rows
    from poet.transforms.reasons import RowRejected

    pairs = []
    with open(path, "rb") as stream:
        for source in iter_rows(str(path), stream):
            if source.record is None:
                continue
            try:
                pairs.append(normalize(source.record))
            except RowRejected:
                continue
    return pairs
