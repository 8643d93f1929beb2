"""The benchmark suite of issue 5: ``python -m benchmarks.run`` (``make bench``) prints a table and writes RESULTS.md.

Every comparison is measured side by side in this one run, on this machine,
each contender in its own fresh process (imports are never timed, peak memory
is that process's), on the bundled HH-RLHF sample replicated with distinct ids
(see :mod:`benchmarks.data`) and the SmolLM2 tokenizer:

1. ``poet prepare`` end to end vs the tokenizer ceiling (the same texts, already
   rendered, encoded by one batched fast-tokenizer call; no Beam, no I/O);
2. ``poet prepare`` vs TRL 1.x ``DPOTrainer._prepare_dataset`` on the same pairs;
3. scaling 1x, 5x, 20x: time per pair and peak memory;
4. the local runner default (one in-process worker) vs one worker process per core;
5. ``poet train`` vs TRL ``DPOTrainer`` on the same tiny model, data and batch size,
   and the share of training tokens POET removes on the sample.

Options: ``--repeat N`` times each timed run and keeps the fastest (default 2 for
the ratios); ``--quick`` uses smaller replicas (a smoke test, not results);
``--skip-training``; ``--output PATH`` (default ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.data import REPO, TOKENIZER, WORK, replicate, tiny
from poet.transforms import contract

RESULTS = REPO / "benchmarks" / "RESULTS.md"
_VERSIONS = ("poet-data", "apache-beam", "tokenizers", "transformers", "datasets", "pyarrow", "trl", "torch",
             "accelerate")


# --------------------------------------------------------------------------- running one workload


class Measured(dict):
    """A workload's RESULT plus ``wall_s`` (its whole process) and ``peak_rss_mb`` (process tree, sampled)."""


def measure(workload: str, args: dict, label: str) -> Measured:
    """Run ``benchmarks.workloads`` in a fresh process; sample the RSS of its process tree every 20 ms."""
    import psutil

    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "TOKENIZERS_PARALLELISM"}  # the tokenizers' default: parallel
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    stdout_path, stderr_path = logs / f"{label}.out", logs / f"{label}.err"
    start = time.perf_counter()
    with open(stdout_path, "w") as out, open(stderr_path, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.workloads", workload, json.dumps(args)],
                                stdout=out, stderr=err, cwd=REPO, env=env)
        peak = [0]

        def sample():  # every 0.1 s (the workload's own peak RSS, exact, is in its RESULT); cheap on 2 cores
            try:
                root = psutil.Process(proc.pid)
                tree, listed = [root], 0.0
                while proc.poll() is None:
                    if time.monotonic() - listed > 1.0:  # worker processes come and go: relist them each second
                        tree, listed = [root, *root.children(recursive=True)], time.monotonic()
                    total = 0
                    for p in tree:
                        try:
                            total += p.memory_info().rss
                        except psutil.Error:
                            pass
                    peak[0] = max(peak[0], total)
                    time.sleep(0.1)
            except psutil.Error:
                pass

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = proc.wait()
        sampler.join()
    wall = time.perf_counter() - start
    lines = [line for line in stdout_path.read_text().splitlines() if line.startswith("RESULT ")]
    if code or not lines:
        tail = "".join(stderr_path.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"benchmark {label} failed (exit {code}); see {stderr_path}:\n{tail}")
    result = Measured(json.loads(lines[-1][len("RESULT "):]))
    result["wall_s"] = wall
    result["peak_rss_mb"] = max(peak[0] / 2**20, result.get("maxrss_self_mb", 0))
    print(f"  {label}: {result['seconds']:.2f} s, peak {result['peak_rss_mb']:.0f} MB", flush=True)
    return result


def best_of(repeat: int, workload: str, args: dict, label: str) -> Measured:
    runs = [measure(workload, args, f"{label}-{i + 1}" if repeat > 1 else label) for i in range(repeat)]
    best = min(runs, key=lambda r: r["seconds"])
    best["all_seconds"] = [r["seconds"] for r in runs]
    return best


def prepare_args(path: Path, output: str, *extra: str) -> dict:
    return {"input": str(path), "tokenizer": str(TOKENIZER), "output": str(WORK / "out" / output), "extra": list(extra)}


def shard_digest(output: str) -> str:
    digest = hashlib.sha256()
    for path in sorted((WORK / "out" / output / contract.DATA_DIR).glob("*.parquet")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- the machine


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        memory = f"{psutil.virtual_memory().total / 2**30:.0f} GiB"
    except ImportError:
        memory = "?"
    versions = {}
    for name in _VERSIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "-"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
        commit += " + uncommitted changes" if dirty.strip() else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "commit": commit,
        "load_before": _load(),
    }


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


# --------------------------------------------------------------------------- the suite


def run_suite(options) -> dict:
    factors = (1, 2, 4) if options.quick else (1, 5, 20)
    small, large = factors[1], factors[2]
    print(f"benchmark inputs in {WORK} (replicas {factors} of the sample)", flush=True)
    inputs = {f: replicate(f) for f in factors}
    results: dict = {"machine": machine(), "factors": factors, "quick": options.quick}

    print("1. scaling, in-process runner (the local default)", flush=True)
    results["startup"] = best_of(options.repeat, "prepare", prepare_args(tiny(), "startup"), "prepare-startup")
    scaling = {}
    for f in factors:
        scaling[f] = best_of(options.repeat, "prepare", prepare_args(inputs[f], f"x{f}"), f"prepare-x{f}")
    results["scaling"] = scaling

    print(f"2. tokenizer ceiling on the {large}x texts", flush=True)
    results["ceiling"] = best_of(options.repeat, "ceiling",
                                 {"input": str(inputs[large]), "tokenizer": str(TOKENIZER)}, f"ceiling-x{large}")

    print(f"3. TRL DPOTrainer._prepare_dataset on the {small}x pairs", flush=True)
    results["trl"] = best_of(options.repeat, "trl_prepare",
                             {"input": str(inputs[small]), "tokenizer": str(TOKENIZER), "output": str(WORK / "trl")},
                             f"trl-x{small}")

    cores = os.cpu_count() or 1
    print(f"4. {cores} worker processes (multi_processing) on the {small}x pairs", flush=True)
    multi = measure("prepare", prepare_args(inputs[small], f"x{small}-multi", "--direct_num_workers", str(cores),
                                            "--direct_running_mode", "multi_processing"), f"prepare-x{small}-multi")
    multi["identical"] = shard_digest(f"x{small}-multi") == shard_digest(f"x{small}")
    results["multi"] = multi

    if not options.skip_training:
        print("5. training: poet train vs TRL DPOTrainer", flush=True)
        from benchmarks import training

        results["training"] = training.compare(options, inputs[1], measure)
    results["machine"]["load_after"] = _load()
    return results


# --------------------------------------------------------------------------- the report


def _fmt(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def _ok(passed: bool) -> str:
    return "yes" if passed else "**no**"


def report(results: dict) -> str:
    m = results["machine"]
    factors = results["factors"]
    small, large = factors[1], factors[2]
    scaling = results["scaling"]
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python -m benchmarks.run`); every figure below comes from that one run. "
        "Inputs: the bundled HH-RLHF sample (`samples/hh-rlhf/harmless-base-test.jsonl.gz`, 2,312 rows) replicated "
        "with distinct ids (`benchmarks/data.py`); tokenizer: SmolLM2-135M-Instruct (`samples/tokenizers`). "
        "Each contender runs in a fresh process; Python imports are not timed for anyone; "
        f"each timed figure is the best of {results.get('repeat', 1)} runs (the trainers: one run each).",
        "",
    ]
    if results["quick"]:
        lines += ["**Quick mode: small replicas, a smoke test of the suite, not results.**", ""]
    lines += [
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| date (UTC) | {m['date']} |",
        f"| CPU | {m['cpu']} |",
        f"| cores | {m['cores']} |",
        f"| memory | {m['memory']} |",
        f"| OS | {m['os']} |",
        f"| Python | {m['python']} |",
        f"| packages | {', '.join(f'{k} {v}' for k, v in m['versions'].items())} |",
        f"| code | {m['commit']} |",
        f"| load average (1, 5, 15 min) before / after | {m['load_before']} / {m.get('load_after', '?')} |",
        "",
    ]

    # 1. ceiling
    ceiling = results["ceiling"]
    pipe = scaling[large]
    pairs, tokens = ceiling["pairs"], ceiling["tokens"]
    pipe_tokens = pipe["training_tokens"]["before_poet"]
    one_call = ceiling["calls"][ceiling["one_call"]]["seconds"]
    strict = ceiling["seconds"] / pipe["seconds"]
    literal = one_call / pipe["seconds"]
    lines += [
        f"## 1. Pipeline vs the tokenizer ceiling ({large}x: {pairs:,} valid pairs, {tokens:,} tokens)",
        "",
        "Tokens: both training sequences of every pair (prompt+chosen, prompt+rejected), the ids TRL trains on; "
        f"the pipeline produced {pipe_tokens:,} "
        f"({'the same count' if pipe_tokens == tokens else 'a different count!'}). "
        "The tokenizer encodes the texts already rendered, in one process with nothing else to do: one "
        "`tokenizer(texts)` call and one `backend_tokenizer.encode_batch_fast(texts)` call (the issue's ceiling: "
        "one batched call), and the latter in calls of 4,096 texts (stricter: one giant call is slowed by its own "
        "memory). The pipeline's time is `poet prepare` end to end: tokenizer loading, Beam, reading and "
        "decompressing the input, normalising, rendering the chat template three times per pair (as TRL does), "
        "tokenizing, POET truncation, shards, statistics, plots and card. CPU seconds count all threads.",
        "",
        "| contender | seconds | CPU seconds | pairs/s | tokens/s |",
        "|---|---:|---:|---:|---:|",
        f"| `poet prepare`, end to end | {_fmt(pipe['seconds'], 1)} | {_fmt(pipe.get('cpu_seconds', 0), 1)} | "
        f"{_fmt(pairs / pipe['seconds'])} | {_fmt(tokens / pipe['seconds'])} |",
    ]
    names = {"transformers": "tokenizer: one `tokenizer(texts)` call",
             "backend": "tokenizer: one `encode_batch_fast(texts)` call",
             "batched": "tokenizer: `encode_batch_fast` in calls of 4,096 texts"}
    for name, call in ceiling["calls"].items():
        lines.append(f"| {names.get(name, name)} | {_fmt(call['seconds'], 1)} | "
                     f"{_fmt(call.get('cpu_seconds', 0), 1)} | {_fmt(pairs / call['seconds'])} | "
                     f"{_fmt(tokens / call['seconds'])} |")
    lines += [
        "",
        "| ratio (pipeline pairs/s and tokens/s over the ceiling's) | measured | target | met |",
        "|---|---:|---:|:-:|",
        f"| vs one batched call (the faster of the two) | {literal:.2f}x | >= 0.7x | {_ok(literal >= 0.7)} |",
        f"| vs the fastest way measured (calls of 4,096 texts) | {strict:.2f}x | >= 0.7x | {_ok(strict >= 0.7)} |",
        "",
        f"Pipeline runs: {', '.join(f'{s:.1f}' for s in pipe.get('all_seconds', [pipe['seconds']]))} s; "
        "ceiling runs (fastest way): "
        f"{', '.join(f'{s:.1f}' for s in ceiling.get('all_seconds', [ceiling['seconds']]))} s.",
        "",
    ]

    # 2. TRL
    trl = results["trl"]
    pipe_small = scaling[small]
    speedup = trl["seconds"] / pipe_small["seconds"]
    lines += [
        f"## 2. Pipeline vs TRL `DPOTrainer._prepare_dataset` ({small}x: {trl['pairs']:,} pairs)",
        "",
        "TRL gets the pairs already parsed (its `datasets.map` tokenization with the default `dataset_num_proc`); "
        "the pipeline reads the raw file. Same tokenizer, same ids (checked by the test suite).",
        "",
        "| contender | seconds | pairs/s | tokens/s | speed-up | target | met |",
        "|---|---:|---:|---:|---:|---:|:-:|",
        f"| `poet prepare`, end to end | {_fmt(pipe_small['seconds'], 1)} | "
        f"{_fmt(trl['pairs'] / pipe_small['seconds'])} | {_fmt(trl['tokens'] / pipe_small['seconds'])} | "
        f"{speedup:.2f}x | >= 2x | {_ok(speedup >= 2)} |",
        f"| TRL `_prepare_dataset` | {_fmt(trl['seconds'], 1)} | {_fmt(trl['pairs'] / trl['seconds'])} | "
        f"{_fmt(trl['tokens'] / trl['seconds'])} | 1.00x | | |",
        "",
        f"The pipeline's time includes its fixed start-up ({results['startup']['seconds']:.1f} s, see 3); without it "
        f"the speed-up is {trl['seconds'] / max(pipe_small['seconds'] - results['startup']['seconds'], 1e-9):.1f}x. "
        f"TRL runs: {', '.join(f'{s:.1f}' for s in trl.get('all_seconds', [trl['seconds']]))} s.",
        "",
    ]

    # 3. scaling
    startup = results["startup"]["seconds"]
    lines += [
        "## 3. Scaling (in-process runner, the local default)",
        "",
        f"Net time subtracts the fixed start-up cost, measured by a run on 16 rows: {startup:.1f} s "
        "(tokenizer loading, Beam start-up, plots and card). Peak RSS is the pipeline process's.",
        "",
        "| size | rows read | seconds | ms per pair | net ms per pair | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    per_pair, net_per_pair = {}, {}
    for f in factors:
        r = scaling[f]
        per_pair[f] = 1000 * r["seconds"] / r["read"]
        net_per_pair[f] = 1000 * (r["seconds"] - startup) / r["read"]
        lines.append(f"| {f}x | {r['read']:,} | {_fmt(r['seconds'], 1)} | {per_pair[f]:.3f} | "
                     f"{net_per_pair[f]:.3f} | {_fmt(r['peak_rss_mb'])} |")
    time_ratio = net_per_pair[large] / net_per_pair[small]
    raw_ratio = per_pair[large] / per_pair[small]
    rss_ratio = scaling[large]["peak_rss_mb"] / scaling[small]["peak_rss_mb"]
    lines += [
        "",
        "| check, {0}x to {1}x | measured | target | met |".format(small, large),
        "|---|---:|---:|:-:|",
        f"| net time per pair, {large}x / {small}x | {time_ratio:.2f} | 0.85 to 1.15 | "
        f"{_ok(0.85 <= time_ratio <= 1.15)} |",
        f"| time per pair incl. start-up, {large}x / {small}x | {raw_ratio:.2f} | (information) | |",
        f"| peak RSS, {large}x / {small}x | {rss_ratio:.2f} | <= 1.3 | {_ok(rss_ratio <= 1.3)} |",
        "",
    ]

    # 4. runner
    multi = results["multi"]
    lines += [
        f"## 4. Local runner: one in-process worker vs one worker process per core ({small}x)",
        "",
        "| runner | seconds | peak RSS, all processes (MB) | shards byte-identical |",
        "|---|---:|---:|:-:|",
        f"| in-process FnApiRunner (default) | {_fmt(pipe_small['seconds'], 1)} | {_fmt(pipe_small['peak_rss_mb'])} | |",
        f"| `--direct_num_workers {m['cores']} --direct_running_mode multi_processing` | {_fmt(multi['seconds'], 1)} | "
        f"{_fmt(multi['peak_rss_mb'])} | {_ok(multi['identical'])} |",
        "",
    ]

    # 5. training
    training = results.get("training")
    if training:
        from benchmarks import training as training_module

        lines += training_module.report(training)
    lines += [
        f"## POET's saving on the sample",
        "",
    ]
    saved = scaling[1]["training_tokens"]
    lines += [
        f"On the 1x sample, POET removes {saved['removed']:,} of {saved['before_poet']:,} training tokens "
        f"(prompt + completion, both sequences of each pair): **{saved['removed_pct']:.1f}%** "
        f"(`training_tokens.removed_pct` in {contract.STATS_FILE}).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="runs of each compared contender; the fastest counts")
    parser.add_argument("--quick", action="store_true", help="small replicas: a smoke test of the suite")
    parser.add_argument("--skip-training", action="store_true", help="leave out the trainer comparison")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the results (markdown)")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the report from the last run's measurements (benchmarks/_work/results.json)")
    options = parser.parse_args(argv)
    if options.report_only:
        results = json.loads((WORK / "results.json").read_text(encoding="utf-8"))
        results["factors"] = tuple(results["factors"])
        results["scaling"] = {int(k): v for k, v in results["scaling"].items()}
    else:
        started = time.perf_counter()
        results = run_suite(options)
        results["repeat"] = options.repeat
        results["minutes"] = (time.perf_counter() - started) / 60
        (WORK / "results.json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    text = report(results) + f"\nThe suite ran in {results.get('minutes', 0):.1f} minutes.\n"
    options.output.write_text(text, encoding="utf-8")
    print()
    print(text)
    print(f"wrote {options.output}")
    shutil.rmtree(WORK / "out", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
