"""The benchmark suite: ``python -m benchmarks.run`` (``make bench``) prints a table and writes RESULTS.md.

Every comparison is measured side by side in this one run, on this machine,
each contender in its own fresh process (peak memory is that process's), on
the bundled HH-RLHF sample replicated with distinct ids (see
:mod:`benchmarks.data`) and the SmolLM2 tokenizer. ``poet prepare`` is timed as
a whole process, imports included: what a user waits for.

1. the fixed start-up (a 16-row run) against the bare imports of Beam,
   transformers and pyarrow and against the baseline commit, alternating, and
   the baseline's shard bytes against this code's;
2. ``poet prepare`` vs the tokenizer ceiling (the same pairs rendered with the
   chat template and encoded in batches, in a process with nothing else to do);
3. ``poet prepare`` vs TRL 1.x ``DPOTrainer._prepare_dataset`` on the same pairs;
4. scaling 1x, 5x, 20x, 100x: time per pair and peak memory;
5. the local runner default (one in-process worker) vs one worker process per core;
8. all cores: the default run vs N x one pinned core's render+encode throughput and vs TRL with
   ``dataset_num_proc=N``, and the default run held to 1, 2, ... N cores (:mod:`benchmarks.all_cores`);
6. ``poet train`` vs TRL ``DPOTrainer`` on the same tiny model, data and batch size,
   and the share of training tokens POET removes on the sample;
7. reference log-probs: ``poet score`` (Beam RunInference) vs ``poet train --precompute-ref``
   vs TRL's ``precompute_ref_log_probs``, and DPO's peak memory with the columns, a frozen
   reference and ``--precompute-ref`` (``--only-reference`` runs this section alone and prints it);
9. peak memory with 1 GiB of bad lines against a clean run of the same good rows
   (``--only-dead-letters`` runs this section alone and prints it, ``--dead-letter-mb N`` sizes it).
10. the data-quality options: the n-gram index of 10k eval prompts, and the 20x throughput with
   all four on vs off (:mod:`benchmarks.quality`; ``--only-quality`` runs this section alone).

Options: ``--repeat N`` runs of each compared contender, the median counts
(default 2: the faster; the 100x run runs once); ``--startup-repeat N``;
``--baseline REF``; ``--quick`` uses smaller replicas (a smoke test, not
results); ``--skip-training``; ``--output PATH`` (default ``benchmarks/RESULTS.md``).
Worker-process scaling on a many-core machine: :mod:`benchmarks.scaling`.
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

from benchmarks import dead_letters, quality
from benchmarks.data import REPO, TOKENIZER, WORK, replicate, tiny
from poet.transforms import contract

RESULTS = REPO / "benchmarks" / "RESULTS.md"
BASELINE = "288bb64"  # the last commit before the start-up work of issue 13: "the previous commit" of its target
# The last commit before the faster paths with today's Parquet writer options (issue 10 changed them after 288bb64):
# the shards must keep its bytes.
BYTES_BASELINE = "3d10fd2"
PREVIOUS = "1a4f694"  # the code of the RESULTS.md that issue 17 must not fall more than 10% behind
PACKAGES = ("pipeline", "transforms", "trainer", "dataset_cards")  # installed as poet.<name> (pyproject.toml)
FACTORS = (1, 5, 20, 100)  # replicas of the sample: 1x .. 100x (about 231k pairs)
QUICK_FACTORS = (1, 2, 4, 8)
_VERSIONS = ("poet-data", "apache-beam", "tokenizers", "transformers", "datasets", "pyarrow", "trl", "torch",
             "accelerate")


# --------------------------------------------------------------------------- running one workload


class Measured(dict):
    """A workload's RESULT plus ``wall_s`` (its whole process) and ``peak_rss_mb`` (process tree, sampled)."""


def measure(workload: str, args: dict, label: str, pythonpath: Path | None = None) -> Measured:
    """Run ``benchmarks.workloads`` in a fresh process; sample the RSS of its process tree every 0.1 s.

    ``wall_s`` is the whole process, imports included; a workload that does not
    time itself (``prepare``) gets it as its ``seconds``. ``pythonpath`` goes first
    on the path (a baseline's code).
    """
    import psutil

    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "TOKENIZERS_PARALLELISM"}  # the tokenizers' default: parallel
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([*([str(pythonpath)] if pythonpath else []), str(REPO),
                                         env.get("PYTHONPATH", "")])
    stdout_path, stderr_path = logs / f"{label}.out", logs / f"{label}.err"
    start = time.perf_counter()
    with open(stdout_path, "w") as out, open(stderr_path, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.workloads", workload, json.dumps(args)],
                                stdout=out, stderr=err, cwd=WORK, env=env)  # not REPO: its poet/ would come first
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
    result.setdefault("seconds", wall)
    result["peak_rss_mb"] = max(peak[0] / 2**20, result.get("maxrss_self_mb", 0))
    print(f"  {label}: {result['seconds']:.2f} s, peak {result['peak_rss_mb']:.0f} MB", flush=True)
    return result


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


# --------------------------------------------------------------------------- the baseline


def baseline_code(ref: str) -> Path:
    """The ``poet`` modules of commit ``ref``, extracted once into ``_work/baseline-SHA/poet/``.

    Put first on ``PYTHONPATH``, that folder wins over this checkout's editable
    install (a path entry is searched before the editable finder); the
    ``prepare`` workload checks where ``poet`` really came from.
    """
    sha = subprocess.run(["git", "rev-parse", "--short", f"{ref}^{{commit}}"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.strip()
    root = WORK / f"baseline-{sha}"
    if not (root / "poet" / "__init__.py").exists():
        partial = root.with_name(root.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", "--prefix=poet/", sha, *PACKAGES], cwd=REPO,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(partial)], input=archive, check=True)
        (partial / "poet" / "__init__.py").touch()  # a regular package: it wins over the checkout's poet/
        shutil.rmtree(root, ignore_errors=True)
        partial.rename(root)
    return root


# --------------------------------------------------------------------------- the suite


def run_prepare(label: str, path: Path, output: str, *extra: str, code: Path = REPO,
                cores: int | None = None) -> Measured:
    """One whole ``poet prepare`` process from the code in ``code`` (this checkout or a baseline), on its first
    ``cores`` cores (default: all)."""
    args = {"input": str(path), "tokenizer": str(TOKENIZER), "output": str(WORK / "out" / output),
            "extra": list(extra), "code": str(code if code == REPO else code / "poet"),
            "stats_file": contract.STATS_FILE, "cores": cores}
    return measure("prepare", args, label, pythonpath=None if code == REPO else code)


def median(runs: list[Measured]) -> Measured:
    """The run with the median time (the lower middle one for an even count), with every run's time attached."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    middle = ordered[(len(ordered) - 1) // 2]
    middle["all_seconds"] = [r["seconds"] for r in runs]
    return middle


def measure_startup(baseline: Path, repeat: int) -> dict:
    """The 16-row run of this code, of the baseline, and the bare imports, in turn (ABCABC: all three see the
    same background load); the median of each."""
    print(f"1. start-up: 16 rows, this code vs the bare imports and {baseline.name}, alternating", flush=True)
    runs = {"candidate": [], "bare_imports": [], "baseline": []}
    for i in range(repeat):
        runs["baseline"].append(run_prepare(f"startup-baseline-{i + 1}", tiny(), "startup-baseline", code=baseline))
        runs["bare_imports"].append(measure("bare_imports", {}, f"bare-imports-{i + 1}"))
        runs["candidate"].append(run_prepare(f"startup-{i + 1}", tiny(), "startup"))
    return {side: median(measured) for side, measured in runs.items()}


def run_suite(options) -> dict:
    factors = QUICK_FACTORS if options.quick else FACTORS
    small, large, largest = factors[1], factors[2], factors[-1]
    print(f"benchmark inputs in {WORK} (replicas {factors} of the sample)", flush=True)
    inputs = {f: replicate(f) for f in factors}
    baseline = baseline_code(options.baseline)
    results: dict = {"machine": machine(), "factors": factors, "quick": options.quick, "baseline": options.baseline,
                     "baseline_code": str(baseline.relative_to(REPO))}

    results["startup"] = measure_startup(baseline, options.startup_repeat)

    print(f"2. scaling, in-process runner (the local default); {small}x and {large}x alternate with "
          f"{options.previous}", flush=True)
    previous = baseline_code(options.previous)
    scaling, before = {}, {}
    for f in factors:
        repeat = 1 if f == largest else options.repeat
        runs = []
        for i in range(repeat):
            if f in (small, large):
                before.setdefault(f, []).append(
                    run_prepare(f"prepare-x{f}-previous-{i + 1}", inputs[f], f"x{f}-previous", code=previous))
            runs.append(run_prepare(f"prepare-x{f}-{i + 1}", inputs[f], f"x{f}"))
        scaling[f] = median(runs)
    results["scaling"] = scaling
    results["previous"] = {"ref": options.previous, "runs": {f: median(runs) for f, runs in before.items()}}
    same = run_prepare("prepare-x1-before", inputs[1], "x1-before", code=baseline_code(options.bytes_baseline))
    results["same_bytes_1x"] = {"identical": shard_digest("x1") == shard_digest("x1-before"),
                                "seconds": same["seconds"], "baseline": options.bytes_baseline}

    print(f"3. tokenizer ceiling on the {large}x pairs (render + encode)", flush=True)
    results["ceiling"] = median([measure("ceiling", {"input": str(inputs[large]), "tokenizer": str(TOKENIZER)},
                                         f"ceiling-x{large}-{i + 1}") for i in range(options.repeat)])

    print(f"4. TRL DPOTrainer._prepare_dataset on the {small}x pairs", flush=True)
    results["trl"] = median([measure("trl_prepare", {"input": str(inputs[small]), "tokenizer": str(TOKENIZER),
                                                     "output": str(WORK / "trl")}, f"trl-x{small}-{i + 1}")
                             for i in range(options.repeat)])

    print(f"5. one worker process per core (multi_processing) on the {small}x pairs", flush=True)
    multi = run_prepare(f"prepare-x{small}-multi", inputs[small], f"x{small}-multi", "--direct_num_workers", "0",
                        "--direct_running_mode", "multi_processing")
    multi["identical"] = shard_digest(f"x{small}-multi") == shard_digest(f"x{small}")
    results["multi"] = multi

    if not options.skip_training:
        print("6. training: poet train vs TRL DPOTrainer", flush=True)
        from benchmarks import training

        results["training"] = training.compare(options, inputs[1], measure)
        print("7. reference log-probs: poet score vs poet train --precompute-ref vs TRL; DPO memory", flush=True)
        from benchmarks import reference

        results["reference"] = reference.compare(options, WORK / "train-data", training.tiny_model(), measure)
    print(f"8. all cores: the default run vs the {os.cpu_count()}-core linear limit and TRL with as many processes, "
          f"on the {large}x pairs", flush=True)
    from benchmarks import all_cores

    results["all_cores"] = all_cores.compare(inputs[large], large, options.repeat, default_run=scaling[large])

    print(f"9. memory with {options.dead_letter_mb} MiB of bad lines vs a clean run", flush=True)
    results["dead_letters"] = dead_letters.compare(options.dead_letter_mb, run_prepare)
    print(f"10. data quality: all four options on vs off on the {large}x pairs", flush=True)
    results["quality"] = quality.compare(options, inputs[large], large, measure, run_prepare)
    results["machine"]["load_after"] = _load()
    return results


# --------------------------------------------------------------------------- the report

RUNNER_NOTE = (
    "Worker processes pay their own start-up each (Python, Beam's SDK harness, imports, the tokenizer) and "
    "move every chunk of rows between processes as pickles, while one in-process worker already keeps both cores "
    "busy: the tokenizer encodes each batch on every core (Rust threads) and overlaps with the Python of the next "
    "batch. So on a laptop the in-process runner stays the default; `benchmarks/scaling.py` measures worker "
    "processes on a many-core machine."
)


def _fmt(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def _ok(passed: bool) -> str:
    return "yes" if passed else "**no**"


def _runs(r: dict) -> str:
    return ", ".join(f"{s:.1f}" for s in r.get("all_seconds", [r["seconds"]]))


def report(results: dict) -> str:
    m = results["machine"]
    factors = results["factors"]
    small, large, largest = factors[1], factors[2], factors[-1]
    scaling = results["scaling"]
    startup, base_startup = results["startup"]["candidate"], results["startup"]["baseline"]
    bare = results["startup"]["bare_imports"]
    fixed = startup["seconds"]
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python -m benchmarks.run`); every figure below comes from that one run. "
        "Inputs: the bundled HH-RLHF sample (`samples/hh-rlhf/harmless-base-test.jsonl.gz`, 2,312 rows) replicated "
        "with distinct ids (`benchmarks/data.py`); tokenizer: SmolLM2-135M-Instruct (`samples/tokenizers`). "
        "`poet prepare` is timed as a whole process, the way a user waits for it: Python start-up and imports "
        "included, each run in a fresh process. The 16-row run is its fixed start-up. Where a figure had several "
        "runs, the median counts (of two: the faster) and all are listed.",
        "",
    ]
    if results["quick"]:
        lines += ["**Quick mode: small replicas, a smoke test of the suite, not results.**", ""]
    busy = float(m["load_before"].split()[0]) if m["load_before"] != "?" else 0.0
    if busy > 0.5 * (m["cores"] or 1):
        lines += [f"**The machine was shared with other jobs during this run** (load average {m['load_before']} "
                  "before it): absolute times are noisy; the side-by-side ratios less so.", ""]
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

    # 1. start-up
    ratio = fixed / base_startup["seconds"]
    bare_ratio = fixed / bare["seconds"]
    cpu_ratio = startup.get("cpu_seconds", 0) / max(base_startup.get("cpu_seconds", 0), 1e-9)
    lines += [
        f"## 1. Fixed start-up: `poet prepare` on 16 rows, against the bare imports and `{results['baseline']}`",
        "",
        f"The baseline is commit `{results['baseline']}`, extracted into `{results['baseline_code']}` and put first "
        "on `PYTHONPATH` (each run checks where `poet` was imported from); the two alternate (baseline, this code, "
        "bare imports, this code, baseline, ...), so all see the same background load. The bare imports are a "
        "process that runs `import apache_beam`, `import pyarrow` and `import transformers` and ends: the floor of "
        "any start-up of `poet prepare`.",
        "",
        "| code | seconds (median) | runs | CPU seconds | peak RSS (MB) | torch imported |",
        "|---|---:|---|---:|---:|:-:|",
        f"| `{results['baseline']}` (before) | {base_startup['seconds']:.2f} | {_runs(base_startup)} | "
        f"{base_startup.get('cpu_seconds', 0):.2f} | {_fmt(base_startup['peak_rss_mb'])} | "
        f"{'yes' if base_startup.get('torch_imported') else 'no'} |",
        f"| this code | {fixed:.2f} | {_runs(startup)} | {startup.get('cpu_seconds', 0):.2f} | "
        f"{_fmt(startup['peak_rss_mb'])} | {'yes' if startup.get('torch_imported') else 'no'} |",
        f"| bare imports of Beam, transformers and pyarrow | {bare['seconds']:.2f} | {_runs(bare)} | "
        f"{bare.get('cpu_seconds', 0):.2f} | {_fmt(bare['peak_rss_mb'])} | no |",
        "",
        "| check | measured | target | met |",
        "|---|---:|---:|:-:|",
        f"| 16-row run / bare imports | {bare_ratio:.2f}x | <= 2.5x | {_ok(bare_ratio <= 2.5)} |",
        f"| 16-row run, this code / before | {ratio:.2f} | (information) | |",
        f"| CPU seconds of the same runs (less sensitive to other jobs), this code / before | {cpu_ratio:.2f} | "
        "(information) | |",
        f"| shards of the 1x sample, this code vs `{results['same_bytes_1x'].get('baseline', results['baseline'])}` | "
        f"{'identical' if results['same_bytes_1x']['identical'] else 'different'} | identical | "
        f"{_ok(results['same_bytes_1x']['identical'])} |",
        "",
    ]

    # 2. ceiling
    ceiling = results["ceiling"]
    pipe = scaling[large]
    pairs, tokens = ceiling["pairs"], ceiling["tokens"]
    pipe_tokens = (pipe.get("training_tokens") or {}).get("before_poet")
    whole = ceiling["seconds"] / pipe["seconds"]
    net = ceiling["seconds"] / max(pipe["seconds"] - fixed, 1e-9)
    render = ceiling["render"]
    lines += [
        f"## 2. Pipeline vs the tokenizer ceiling ({large}x: {pairs:,} valid pairs, {tokens:,} tokens)",
        "",
        "Tokens: both training sequences of every pair (prompt+chosen, prompt+rejected), the ids TRL trains on; "
        f"the pipeline produced {pipe_tokens if pipe_tokens is None else format(pipe_tokens, ',')} "
        f"({'the same count' if pipe_tokens == tokens else 'a different count!'}). "
        "The ceiling is the tokenizer alone, in a process that has already imported everything, loaded the "
        "tokenizer and parsed the pairs: it renders both sequences of every pair with the chat template "
        f"(`apply_chat_template` over the whole list: {render['seconds']:.1f} s, counted in every row below, since "
        "the pipeline must render too), then encodes them in the ways below; the fastest is the ceiling. "
        "The pipeline's time is the whole `poet prepare` process: imports, tokenizer loading, Beam, reading and "
        "decompressing the input, normalising, rendering, tokenizing, POET truncation, shards, statistics, plots "
        "and card. CPU seconds count all threads.",
        "",
        "| contender | seconds | CPU seconds | pairs/s | tokens/s |",
        "|---|---:|---:|---:|---:|",
        f"| `poet prepare`, whole process | {_fmt(pipe['seconds'], 1)} | {_fmt(pipe.get('cpu_seconds', 0), 1)} | "
        f"{_fmt(pairs / pipe['seconds'])} | {_fmt(tokens / pipe['seconds'])} |",
    ]
    names = {"transformers": "render + one `tokenizer(texts)` call",
             "backend": "render + one `encode_batch_fast(texts)` call",
             "batched": "render + `encode_batch_fast` in calls of 4,096 texts"}
    for name, call in ceiling["calls"].items():
        best = " (the ceiling)" if name == ceiling["best"] else ""
        lines.append(f"| {names.get(name, name)}{best} | {_fmt(call['seconds'], 1)} | "
                     f"{_fmt(call.get('cpu_seconds', 0), 1)} | {_fmt(pairs / call['seconds'])} | "
                     f"{_fmt(tokens / call['seconds'])} |")
    lines += [
        "",
        "| ratio (pipeline throughput over the ceiling's) | measured | target | met |",
        "|---|---:|---:|:-:|",
        f"| whole process, start-up included | {whole:.2f}x | >= 0.8x | {_ok(whole >= 0.8)} |",
        f"| without the fixed start-up ({fixed:.1f} s, see 1) | {net:.2f}x | (information) | |",
        f"| CPU seconds, whole process (less sensitive to other jobs) | "
        f"{ceiling['calls'][ceiling['best']]['cpu_seconds'] / max(pipe.get('cpu_seconds', 0), 1e-9):.2f}x | (information) | |",
        "",
        f"Pipeline runs: {_runs(pipe)} s; ceiling runs: {_runs(ceiling)} s.",
        "",
    ]

    # 3. TRL
    trl = results["trl"]
    pipe_small = scaling[small]
    speedup = trl["wall_s"] / pipe_small["seconds"]
    inner = trl["seconds"] / pipe_small["seconds"]
    lines += [
        f"## 3. Pipeline vs TRL `DPOTrainer._prepare_dataset` ({small}x: {trl['pairs']:,} pairs)",
        "",
        "Both as whole processes: the TRL script imports TRL, loads the tokenizer, parses the pairs into a "
        "`datasets.Dataset` and runs `_prepare_dataset` (its `datasets.map` tokenization with the default "
        "`dataset_num_proc`); the pipeline reads the raw file and writes the finished folder. Same tokenizer, "
        "same ids (checked by the test suite).",
        "",
        "| contender | seconds | pairs/s | tokens/s | speed-up | target | met |",
        "|---|---:|---:|---:|---:|---:|:-:|",
        f"| `poet prepare`, whole process | {_fmt(pipe_small['seconds'], 1)} | "
        f"{_fmt(trl['pairs'] / pipe_small['seconds'])} | {_fmt(trl['tokens'] / pipe_small['seconds'])} | "
        f"{speedup:.2f}x | >= 3x | {_ok(speedup >= 3)} |",
        f"| TRL, whole process | {_fmt(trl['wall_s'], 1)} | {_fmt(trl['pairs'] / trl['wall_s'])} | "
        f"{_fmt(trl['tokens'] / trl['wall_s'])} | 1.00x | | |",
        "",
        f"`_prepare_dataset` alone took {trl['seconds']:.1f} s of TRL's process (runs: {_runs(trl)} s): against "
        f"that alone, the whole `poet prepare` process is {inner:.2f}x faster.",
        "",
    ]

    # 4. scaling
    lines += [
        "## 4. Scaling (in-process runner, the local default)",
        "",
        f"Net time subtracts the fixed start-up (the 16-row run, {fixed:.2f} s). Peak RSS is the process's. "
        f"The {largest}x run ran once.",
        "",
        "| size | rows read | seconds | ms per pair | net ms per pair | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    per_pair, net_per_pair = {}, {}
    for f in factors:
        r = scaling[f]
        per_pair[f] = 1000 * r["seconds"] / r["read"]
        net_per_pair[f] = 1000 * (r["seconds"] - fixed) / r["read"]
        lines.append(f"| {f}x | {r['read']:,} | {_fmt(r['seconds'], 1)} | {per_pair[f]:.3f} | "
                     f"{net_per_pair[f]:.3f} | {_fmt(r['peak_rss_mb'])} |")
    previous = results.get("previous")
    if previous:
        lines += ["", f"The {small}x and {large}x runs alternated with the code of the RESULTS.md before issue 17 "
                  f"(`{previous['ref']}`, same machine, same inputs; its figures there came from another machine):",
                  "", "| size | that code (s) | this code (s) | this code / that code | target | met |",
                  "|---|---:|---:|---:|---:|:-:|"]
        for f, then in sorted(previous["runs"].items(), key=lambda item: int(item[0])):
            now = scaling[int(f)]
            ratio = now["seconds"] / then["seconds"]
            lines.append(f"| {f}x | {_fmt(then['seconds'], 1)} ({_runs(then)}) | {_fmt(now['seconds'], 1)} "
                         f"({_runs(now)}) | {ratio:.2f} | <= 1.10 | {_ok(ratio <= 1.10)} |")
    lines += ["", f"| check, {small}x to larger | measured | target | met |", "|---|---:|---:|:-:|"]
    for f in factors[2:]:
        time_ratio = net_per_pair[f] / net_per_pair[small]
        rss_ratio = scaling[f]["peak_rss_mb"] / scaling[small]["peak_rss_mb"]
        lines += [
            f"| net time per pair, {f}x / {small}x | {time_ratio:.2f} | 0.85 to 1.15 | "
            f"{_ok(0.85 <= time_ratio <= 1.15)} |",
            f"| peak RSS, {f}x / {small}x | {rss_ratio:.2f} | <= 1.3 | {_ok(rss_ratio <= 1.3)} |",
        ]
    lines.append("")

    # 5. runner
    multi = results["multi"]
    lines += [
        f"## 5. Local runner: one in-process worker vs one worker process per core ({small}x)",
        "",
        "| runner | seconds | peak RSS, all processes (MB) | shards byte-identical |",
        "|---|---:|---:|:-:|",
        f"| in-process FnApiRunner (default) | {_fmt(pipe_small['seconds'], 1)} | {_fmt(pipe_small['peak_rss_mb'])} | |",
        f"| `--direct_num_workers 0 --direct_running_mode multi_processing` ({m['cores']} processes) | "
        f"{_fmt(multi['seconds'], 1)} | {_fmt(multi['peak_rss_mb'])} | {_ok(multi['identical'])} |",
        "",
        RUNNER_NOTE,
        "",
    ]

    # 6. training
    training = results.get("training")
    if training:
        from benchmarks import training as training_module

        lines += training_module.report(training)
    if results.get("reference"):
        from benchmarks import reference

        lines += reference.report(results["reference"])
    if results.get("all_cores"):
        from benchmarks import all_cores

        lines += all_cores.report(results["all_cores"])
    if results.get("dead_letters"):
        lines += dead_letters.report(results["dead_letters"])
    if results.get("quality"):
        lines += quality.report(results["quality"], median)
    saved = scaling[1]["training_tokens"]
    lines += [
        "## POET's saving on the sample",
        "",
        f"On the 1x sample, POET removes {saved['removed']:,} of {saved['before_poet']:,} training tokens "
        f"(prompt + completion, both sequences of each pair): **{saved['removed_pct']:.1f}%** "
        f"(`training_tokens.removed_pct` in {contract.STATS_FILE}).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="runs of each compared contender; the median counts")
    parser.add_argument("--startup-repeat", type=int, default=3, help="16-row runs of each side, alternating")
    parser.add_argument("--baseline", default=BASELINE, help="git commit the start-up is compared with")
    parser.add_argument("--bytes-baseline", default=BYTES_BASELINE, help="git commit whose shard bytes must be kept")
    parser.add_argument("--previous", default=PREVIOUS,
                        help="git commit whose 5x and 20x runs this code must stay within 10%% of")
    parser.add_argument("--quick", action="store_true", help="small replicas: a smoke test of the suite")
    parser.add_argument("--skip-training", action="store_true", help="leave out the trainer comparison")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the results (markdown)")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the report from the last run's measurements (benchmarks/_work/results.json)")
    parser.add_argument("--only-reference", action="store_true", help="run section 7 alone and print it")
    parser.add_argument("--dead-letter-mb", type=int, default=dead_letters.DEAD_LETTER_MB,
                        help="MiB of bad lines in section 9")
    parser.add_argument("--only-dead-letters", action="store_true", help="run section 9 alone and print it")
    parser.add_argument("--only-quality", action="store_true", help="run section 10 alone and print it")
    options = parser.parse_args(argv)
    if options.only_dead_letters:
        print("\n".join(dead_letters.report(dead_letters.compare(options.dead_letter_mb, run_prepare)))
              + f"\nmachine: {machine()}")
        return 0
    if options.only_quality:
        factor = (QUICK_FACTORS if options.quick else FACTORS)[2]
        results = quality.compare(options, replicate(factor), factor, measure, run_prepare)
        print("\n".join(quality.report(results, median)) + f"\nmachine: {machine()}")
        return 0
    if options.only_reference:
        from benchmarks import reference, training

        data = WORK / "train-data"
        if not (data / contract.STATS_FILE).exists():
            measure("prepare", {"input": str(replicate(1)), "tokenizer": str(TOKENIZER), "output": str(data),
                                "extra": []}, "train-data")  # fmt: skip
        results = reference.compare(options, data, training.tiny_model(), measure)
        print("\n".join(reference.report(results)) + f"\nmachine: {machine()}")
        return 0
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
