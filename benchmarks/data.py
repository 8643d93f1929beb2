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


def with_bad_lines(bad_mb: int, folder: Path = WORK) -> tuple[Path, int]:
    """The sample's rows (as in ``replicate(1)``) with ``bad_mb`` MiB of bad lines spread evenly between them, and
    the number of bad lines: unterminated 1 MiB rows (``malformed_json``), 512 KiB pairs with identical responses
    (``identical_responses``: parsed, then set aside) and, one in fifty, a 20 MiB row (``row_too_large`` at the
    default ``--max-row-bytes``). Built once, then reused."""
    path = folder / f"hh-rlhf-bad{bad_mb}mb.jsonl.gz"
    count_path = path.with_suffix(".count")
    if path.exists() and count_path.exists():
        return path, int(count_path.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(SAMPLE, "rb") as handle:
        good = [line if line.endswith(b"\n") else line + b"\n" for line in handle if line.strip()]
    half = "y" * 2**18
    kinds = [b'{"prompt": "' + b"x" * (2**20 - 13) + b"\n",
             json.dumps({"prompt": "same?", "chosen": half, "rejected": half}).encode() + b"\n"]
    bad, total = [], 0
    while total < bad_mb * 2**20:
        line = b'{"prompt": "' + b"z" * 20 * 2**20 + b'"}\n' if len(bad) % 50 == 49 else kinds[len(bad) % 2]
        bad.append(line)
        total += len(line)
    partial = path.with_suffix(".partial")
    with gzip.open(partial, "wb", compresslevel=1) as out:
        every = max(1, len(good) // len(bad))
        for i, line in enumerate(good):
            out.write(line)
            if i % every == every - 1 and i // every < len(bad):
                out.write(bad[i // every])
        for line in bad[len(good) // every:]:
            out.write(line)
    partial.rename(path)
    count_path.write_text(str(len(bad)))
    return path, len(bad)


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
