"""All cores of one machine: ``python -m benchmarks.all_cores`` alone (any machine), or section 8 of ``make bench``.

With N the cores of the machine it runs on, at 20x the sample, each contender a whole process:

- poet's default local run;
- the N-core linear limit: N x one core's render+encode throughput, measured by the tokenizer ceiling of
  section 2 on one pinned core (``os.sched_setaffinity``) with the tokenizer's threads off;
- TRL's ``DPOTrainer._prepare_dataset`` with ``dataset_num_proc=N`` (its whole process);
- poet's default run held to 1, 2, 4, ... N cores: its speed-up with the cores, and its shards
  against the run on all cores.

Options: ``--factor N`` (default 20), ``--repeat N`` (default 2, the faster counts). Prints the
markdown section (also written to ``benchmarks/_work/all_cores.md``) to paste into RESULTS.md or
RESULTS-many-core-gpu.md.
"""

from __future__ import annotations

import argparse
import os
import sys

from benchmarks.data import TOKENIZER, WORK, replicate


def core_counts(cores: int) -> list[int]:
    """1, 2, 4, ... and ``cores`` itself."""
    counts = [n for n in (1, 2, 4, 8, 16, 32, 64, 128) if n < cores]
    return counts + [cores]


def compare(path, factor: int, repeat: int, default_run: dict | None = None) -> dict:
    """Measure every contender on ``path`` (``default_run``: poet's default run on it, if already measured)."""
    from benchmarks.run import measure, median, run_prepare, shard_digest

    cores = len(os.sched_getaffinity(0))
    if default_run is None:
        default_run = median([run_prepare(f"all-cores-x{factor}-{i + 1}", path, f"x{factor}") for i in range(repeat)])
    reference_digest = shard_digest(f"x{factor}")
    one_core = median([measure("ceiling", {"input": str(path), "tokenizer": str(TOKENIZER), "one_core": True,
                                           "calls": ["batched"]}, f"one-core-x{factor}-{i + 1}")
                       for i in range(repeat)])
    trl = median([measure("trl_prepare", {"input": str(path), "tokenizer": str(TOKENIZER),
                                          "output": str(WORK / "trl"), "num_proc": cores},
                          f"trl-x{factor}-num-proc-{cores}-{i + 1}") for i in range(repeat)])
    held = {}
    for n in core_counts(cores)[:-1]:
        run = median([run_prepare(f"prepare-x{factor}-{n}-cores-{i + 1}", path, f"x{factor}-{n}-cores", cores=n)
                      for i in range(repeat)])
        run["identical"] = shard_digest(f"x{factor}-{n}-cores") == reference_digest
        held[n] = run
    held[cores] = {**default_run, "identical": True}
    return {"factor": factor, "cores": cores, "default": default_run, "one_core": one_core, "trl": trl,
            "held": held}


def report(results: dict) -> list[str]:
    from benchmarks.run import _fmt, _ok, _runs

    n, default, one_core, trl = results["cores"], results["default"], results["one_core"], results["trl"]
    held = {int(cores): run for cores, run in results["held"].items()}  # str keys when read back from JSON
    pairs = one_core["pairs"]
    poet_rate = pairs / default["seconds"]
    core_rate = pairs / one_core["seconds"]
    trl_rate = pairs / trl["wall_s"]
    limit = poet_rate / (n * core_rate)
    over_trl = trl["wall_s"] / default["seconds"]
    one = held[1]
    lines = [
        f"## 8. All cores: poet's default run vs {n} cores' linear limit and TRL with `dataset_num_proc={n}` "
        f"({results['factor']}x: {pairs:,} valid pairs)",
        "",
        f"N = {n}, the cores this run had. The linear limit is N x one core's render+encode throughput: the "
        "tokenizer ceiling of section 2 (render with the chat template, then `encode_batch_fast` in calls of 4,096 "
        "texts, after imports, loading and parsing) in a process pinned to one core (`os.sched_setaffinity`) with "
        "the tokenizer's threads off (`TOKENIZERS_PARALLELISM=false`, `RAYON_NUM_THREADS=1`). poet and TRL are "
        "whole processes (imports and start-up included); TRL's peak RSS includes its `datasets.map` worker "
        "processes.",
        "",
        "| contender | seconds | pairs/s | peak RSS, all processes (MB) | runs |",
        "|---|---:|---:|---:|---|",
        f"| `poet prepare`, default local run | {_fmt(default['seconds'], 1)} | {_fmt(poet_rate)} | "
        f"{_fmt(default['peak_rss_mb'])} | {_runs(default)} |",
        f"| one core: render + encode, pinned, tokenizer threads off | {_fmt(one_core['seconds'], 1)} | "
        f"{_fmt(core_rate)} | {_fmt(one_core['peak_rss_mb'])} | {_runs(one_core)} |",
        f"| {n} x one core (the linear limit) | {_fmt(one_core['seconds'] / n, 1)} | {_fmt(n * core_rate)} | | |",
        f"| TRL `_prepare_dataset`, `dataset_num_proc={n}`, whole process | {_fmt(trl['wall_s'], 1)} | "
        f"{_fmt(trl_rate)} | {_fmt(trl['peak_rss_mb'])} | {_runs({'seconds': trl['wall_s']})} |",
        "",
        "poet's default run held to fewer cores (`os.sched_setaffinity` on the whole process, so the tokenizer's "
        "threads follow):",
        "",
        "| cores | seconds | pairs/s | speed-up vs 1 core | peak RSS (MB) | shards byte-identical to all cores' |",
        "|---:|---:|---:|---:|---:|:-:|",
    ]
    for cores, run in sorted(held.items()):
        lines.append(f"| {cores} | {_fmt(run['seconds'], 1)} | {_fmt(pairs / run['seconds'])} | "
                     f"{one['seconds'] / run['seconds']:.2f}x | {_fmt(run['peak_rss_mb'])} | "
                     f"{_ok(run['identical'])} |")
    rss = default["peak_rss_mb"] / one["peak_rss_mb"]
    lines += [
        "",
        "| check | measured | target | met |",
        "|---|---:|---:|:-:|",
        f"| poet's default run / the {n}-core linear limit | {limit:.2f}x | >= 0.8x | {_ok(limit >= 0.8)} |",
        f"| poet's default run / TRL with `dataset_num_proc={n}` | {over_trl:.2f}x | >= 3x | {_ok(over_trl >= 3)} |",
        f"| peak RSS, default run / the run on one core | {rss:.2f} | <= 2 | {_ok(rss <= 2)} |",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.all_cores", description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=int, default=20, help="replicas of the 2,312-row sample")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each contender; the faster counts")
    options = parser.parse_args(argv)
    from benchmarks.run import machine

    results = compare(replicate(options.factor), options.factor, options.repeat)
    m = machine()
    text = "\n".join([f"{m['cpu']}, {m['cores']} cores, {m['memory']}, code {m['commit']}, load average before "
                      f"{m['load_before']}.", "", *report(results)])
    (WORK / "all_cores.md").write_text(text, encoding="utf-8")
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
