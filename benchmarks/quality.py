"""The data-quality options: the n-gram index of 10k eval prompts, and ``poet prepare`` with all four on vs off.

The replicated sample gets scores with a margin of at least 1 (``score_chosen``
from 2 to 10, ``score_rejected`` 1 to 9 below it, from the line number) and
the eval prompts are random word sequences of the sample's own vocabulary
and prompt lengths: so with ``--dedup --min-score-margin 1 --decontaminate
EVALS --test-size 0.05`` every rule runs on every row but (almost) none is
set aside, and both runs tokenize the same pairs. The ratio is then the cost
of the rules themselves: pairs read per second with them on over off, the
runs alternating (ABAB) so both see the same background load.
"""

from __future__ import annotations

import gzip
import json
import random
import time
from pathlib import Path

from benchmarks.data import SAMPLE, WORK
from benchmarks.usage import rss_mb

EVAL_PROMPTS = 10_000
QUICK_EVAL_PROMPTS = 1_000
OPTIONS = ("--dedup", "--min-score-margin", "1", "--test-size", "0.05")


def scored(replica: Path) -> Path:
    """``replica`` with ``score_chosen``/``score_rejected`` on every row (built once, then reused)."""
    path = replica.with_name(replica.name.replace(".jsonl.gz", "-scored.jsonl.gz"))
    if path.exists():
        return path
    partial = path.with_suffix(".partial")
    with gzip.open(replica, "rt", encoding="utf-8") as source, gzip.open(partial, "wt", encoding="utf-8",
                                                                          compresslevel=6) as out:
        for line_number, line in enumerate(source):
            if line.strip():
                rejected = 1 + line_number % 9
                row = {**json.loads(line), "score_chosen": rejected + 1 + line_number % (10 - rejected),
                       "score_rejected": rejected}
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    partial.rename(path)
    return path


def eval_file(count: int, folder: Path = WORK) -> Path:
    """``count`` eval prompts (``{"question": ...}`` lines): random words of the sample, its prompt lengths."""
    path = folder / f"eval-prompts-{count}.jsonl"
    if path.exists():
        return path
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as handle:
        firsts = [json.loads(line)["chosen"].split("\n\nAssistant:")[0] for line in handle if line.strip()]
    vocabulary = sorted({word for text in firsts for word in text.split()})
    lengths = [len(text.split()) for text in firsts]
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for _ in range(count):
            words = rng.choices(vocabulary, k=max(rng.choice(lengths), 13))
            out.write(json.dumps({"question": " ".join(words)}) + "\n")
    return path


def quality_ngram_index(args: dict) -> dict:
    """Workload: build the n-gram index of an eval file as a worker does in ``setup``; its size and build time.
    Memory is what ``tracemalloc`` sees allocated by the index (a second, traced build)."""
    import tracemalloc

    from poet.pipeline.steps.quality import build_ngram_index

    files = [(Path(args["eval_file"]).name, args["eval_file"])]
    start = time.perf_counter()
    index = build_ngram_index(files, None)
    seconds = time.perf_counter() - start
    ngrams, prompts = len(index), index.sources[0].prompts
    index = None
    tracemalloc.start()
    index = build_ngram_index(files, None)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {"seconds": seconds, "prompts": prompts, "ngrams": ngrams, "index_mb": held / 2**20, **rss_mb()}


def compare(options, replica: Path, factor: int, measure, run_prepare) -> dict:
    count = QUICK_EVAL_PROMPTS if options.quick else EVAL_PROMPTS
    evals = eval_file(count)
    index = measure("quality_ngram_index", {"eval_file": str(evals)}, f"ngram-index-{count}")
    data = scored(replica)
    runs = {"off": [], "on": []}
    for i in range(options.repeat):  # ABAB: both sides see the same background load
        runs["off"].append(run_prepare(f"quality-off-x{factor}-{i + 1}", data, "quality-off"))
        runs["on"].append(run_prepare(f"quality-on-x{factor}-{i + 1}", data, "quality-on", *OPTIONS,
                                      "--decontaminate", str(evals)))
    return {"factor": factor, "eval_prompts": count, "index": index, "runs": runs}


def report(results: dict, median) -> list[str]:
    index = results["index"]
    off, on = median(results["runs"]["off"]), median(results["runs"]["on"])
    rate = {side: r["read"] / r["seconds"] for side, r in (("off", off), ("on", on))}
    ratio = rate["on"] / rate["off"]
    cpu_ratio = off["cpu_seconds"] / on["cpu_seconds"]  # less sensitive to other jobs on a shared machine
    runs = {side: ", ".join(f"{s:.1f}" for s in r["all_seconds"]) for side, r in (("off", off), ("on", on))}
    return [
        "## 10. Data quality: `--dedup --min-score-margin --decontaminate --test-size`",
        "",
        f"The n-gram index of {index['prompts']:,} eval prompts (random words of the sample, its prompt lengths), "
        "as each worker builds it in `setup`:",
        "",
        "| eval prompts | distinct 13-grams | memory held (MB, tracemalloc) | build seconds |",
        "|---:|---:|---:|---:|",
        f"| {index['prompts']:,} | {index['ngrams']:,} | {index['index_mb']:.1f} | {index['seconds']:.2f} |",
        "",
        f"`poet prepare` on the {results['factor']}x sample with scores (margins >= 1, so no rule sets a pair aside "
        f"and both runs tokenize the same pairs), all four options on (`{' '.join(OPTIONS)} --decontaminate` the "
        "eval prompts above) vs off, alternating:",
        "",
        "| options | rows read | seconds (runs) | CPU seconds | pairs read per second | throughput vs off | target "
        "| met |",
        "|---|---:|---:|---:|---:|---:|---:|:-:|",
        f"| off | {off['read']:,} | {off['seconds']:.1f} ({runs['off']}) | {off['cpu_seconds']:.1f} | "
        f"{rate['off']:,.0f} | 1.00x | | |",
        f"| all four on | {on['read']:,} | {on['seconds']:.1f} ({runs['on']}) | {on['cpu_seconds']:.1f} | "
        f"{rate['on']:,.0f} | {ratio:.2f}x | >= 0.85x | {'yes' if ratio >= 0.85 else '**no**'} |",
        "",
        f"Per CPU second (both processes' own CPU time), all four on reach {cpu_ratio:.2f}x the throughput of off.",
        "",
    ]
