"""Worker-process scaling on a many-core machine: ``python -m benchmarks.scaling`` (about 3-5 minutes on 16 cores).

Runs ``poet prepare`` on the 20x replica of the sample (46,240 rows), each as a
whole process: once with the in-process runner (the local default), then with
``--direct_running_mode multi_processing`` and 2, 4, 8, ... worker processes up
to the number of cores; checks that every run writes the same shards, and prints
a markdown table (also written to ``benchmarks/_work/scaling.md``) to paste into
RESULTS.md. Nothing else needs a many-core machine. Options: ``--factor N``,
``--workers 2,4,8,16``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys

from benchmarks.data import WORK, replicate
from benchmarks.run import machine, run_prepare, shard_digest


def main(argv: list[str] | None = None) -> int:
    cores = os.cpu_count() or 1
    default_workers = [n for n in (2, 4, 8, 16, 32, 64) if n <= cores] or [cores]
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=int, default=20, help="replicas of the 2,312-row sample")
    parser.add_argument("--workers", default=",".join(map(str, default_workers)), help="worker process counts")
    options = parser.parse_args(argv)
    path = replicate(options.factor)
    m = machine()
    runs = [("in-process FnApiRunner (default)", "inproc", [])]
    runs += [(f"multi_processing, {n} worker processes", f"mp{n}",
              ["--direct_num_workers", str(n), "--direct_running_mode", "multi_processing"])
             for n in map(int, options.workers.split(","))]
    lines = [
        f"Worker-process scaling, {options.factor}x the sample, on {m['cpu']} ({cores} cores, {m['memory']}), "
        f"Python {platform.python_version()}, code {m['commit']}, load average before {m['load_before']}:",
        "",
        "| runner | seconds | rows/s | speed-up vs in-process | peak RSS, all processes (MB) | same shards |",
        "|---|---:|---:|---:|---:|:-:|",
    ]
    reference = None
    for label, name, extra in runs:
        result = run_prepare(f"scaling-{name}", path, f"scaling-{name}", *extra)
        digest = shard_digest(f"scaling-{name}")
        shutil.rmtree(WORK / "out" / f"scaling-{name}", ignore_errors=True)
        reference = reference or (digest, result["seconds"])
        lines.append(f"| {label} | {result['seconds']:.1f} | {result['read'] / result['seconds']:,.0f} | "
                     f"{reference[1] / result['seconds']:.2f}x | {result['peak_rss_mb']:,.0f} | "
                     f"{'yes' if digest == reference[0] else '**no**'} |")
    text = "\n".join(lines) + "\n"
    (WORK / "scaling.md").write_text(text, encoding="utf-8")
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
