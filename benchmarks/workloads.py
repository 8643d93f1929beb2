"""One measured workload per process: ``python -m benchmarks.workloads NAME JSON``.

``prepare`` is ``poet prepare`` itself, timed from outside as a whole process
(what a user waits for). The others import what they need first, time only
their own work (a strict ceiling for the pipeline) and report it. Each prints
``RESULT {json}`` as its last line; :mod:`benchmarks.run` starts them, samples
their memory, and compares.
"""

from __future__ import annotations

import json
import os
import sys
import time

from benchmarks.usage import cpu_seconds, rss_mb


def hold_to_cores(cores: int | None) -> None:
    """Run this process (its threads and the processes it starts) on its first ``cores`` cores only."""
    if cores:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cores])


def one_core() -> None:
    """One core, and the tokenizer's own threads off: one core's throughput, for the N-core linear limit.

    Before the tokenizer is loaded: Rust's thread pool reads its size when first used."""
    hold_to_cores(1)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["RAYON_NUM_THREADS"] = "1"


def bare_imports(args: dict) -> dict:
    """The libraries ``poet prepare`` cannot start without, imported and nothing else, timed from outside as a
    whole process: the floor its start-up is measured against."""
    import apache_beam  # noqa: F401
    import pyarrow  # noqa: F401
    import transformers  # noqa: F401

    return {"cpu_seconds": cpu_seconds(), **rss_mb()}


def prepare(args: dict) -> None:
    """``poet prepare`` as a user runs it: this whole process is timed from outside, imports and exit included.

    It ends the way the ``poet`` command of the code under test ends (its
    ``console`` entry point, or ``sys.exit(main())`` for a baseline older than
    it), so it never returns: ``RESULT`` is printed by an exit handler.
    ``args["code"]`` is the folder the ``poet`` modules must come from (this
    checkout, or a baseline's copy put first on ``PYTHONPATH``): checked after the
    run, so a benchmark can never compare a checkout with itself by mistake.
    ``args["stats_file"]`` names the statistics file (the launcher's contract:
    a baseline may predate ``poet.transforms.contract``). ``args["cores"]`` holds
    the run to that many cores.
    """
    import atexit
    import importlib
    import importlib.util
    from pathlib import Path

    hold_to_cores(args.get("cores"))
    # a baseline before pipeline/ was grouped into sub-packages has its command line in poet.pipeline.cli
    flat = importlib.util.find_spec("poet.pipeline.cli") is not None
    cli = importlib.import_module("poet.pipeline.cli" if flat else "poet.pipeline.commands.cli")

    argv = ["prepare", "--input", args["input"], "--tokenizer", args["tokenizer"], "--output", args["output"],
            "--overwrite", *args.get("extra", [])]
    real_stdout = sys.stdout

    def report() -> None:
        sys.stdout = real_stdout
        imported_from = Path(cli.__file__).resolve()
        if args.get("code") and not imported_from.is_relative_to(Path(args["code"]).resolve()):
            print(f"poet was imported from {imported_from}, not from {args['code']}", file=sys.stderr)
            return
        document = json.loads((Path(args["output"]) / args["stats_file"]).read_text(encoding="utf-8"))
        splits = document["splits"]
        _print_result({
            "pairs": sum(s["pairs"] for s in splits.values()),
            "read": sum(s["read"] for s in splits.values()),
            "training_tokens": document["overall"].get("training_tokens"),
            "imported_from": str(imported_from.parent),
            "torch_imported": "torch" in sys.modules,
            "cpu_seconds": cpu_seconds(),
            **rss_mb(),
        })

    atexit.register(report)
    sys.argv = ["poet", *argv]
    sys.stdout = open(os.devnull, "w")  # the summary table: not what is measured
    if hasattr(cli, "console"):
        cli.console()
    sys.exit(cli.main())


def _texts(pairs, tokenizer) -> list[str]:
    """What TRL tokenizes as a pair's two training sequences: prompt+chosen and prompt+rejected."""
    if pairs[0].conversational:
        return (tokenizer.apply_chat_template([p.prompt + p.chosen for p in pairs], tokenize=False)
                + tokenizer.apply_chat_template([p.prompt + p.rejected for p in pairs], tokenize=False))
    eos = tokenizer.eos_token
    return ([p.prompt + p.chosen + ("" if p.chosen.endswith(eos) else eos) for p in pairs]
            + [p.prompt + p.rejected + ("" if p.rejected.endswith(eos) else eos) for p in pairs])


def ceiling(args: dict) -> dict:
    """The tokenizer alone on the same pairs: render both training sequences, then encode them in batches.

    The pairs are read and the tokenizer loaded before the clock starts; rendering
    (``apply_chat_template`` over the whole list, the public batched call) is timed
    once and counted in every way of encoding, since the pipeline must render too.
    ``args["one_core"]``: on one core with the tokenizer's threads off (see :func:`one_core`).
    """
    if args.get("one_core"):
        one_core()
    from benchmarks.data import read_pairs
    from poet.transforms.tokenization import load_tokenizer

    tokenizer = load_tokenizer(args["tokenizer"])
    pairs = read_pairs(args["input"])
    start, cpu = time.perf_counter(), cpu_seconds()
    texts = _texts(pairs, tokenizer)
    render = {"seconds": time.perf_counter() - start, "cpu_seconds": cpu_seconds() - cpu}
    special = not pairs[0].conversational
    results = {}
    backend = tokenizer.backend_tokenizer
    for name in args.get("calls", ["transformers", "backend", "batched"]):
        start, cpu = time.perf_counter(), cpu_seconds()
        if name == "transformers":  # what a user writes
            ids = tokenizer(texts, add_special_tokens=special)["input_ids"]
            tokens = sum(map(len, ids))
        elif name == "backend":  # the Rust tokenizer itself, without transformers' conversion of the output
            encodings = backend.encode_batch_fast(texts, add_special_tokens=special)
            tokens = sum(len(e.ids) for e in encodings)
        else:  # the same in calls of 4,096 texts: one giant call can be slower (memory)
            tokens = 0
            for i in range(0, len(texts), 4096):
                encodings = backend.encode_batch_fast(texts[i:i + 4096], add_special_tokens=special)
                tokens += sum(len(e.ids) for e in encodings)
        results[name] = {"seconds": render["seconds"] + time.perf_counter() - start,
                         "cpu_seconds": render["cpu_seconds"] + cpu_seconds() - cpu, "tokens": tokens}
        ids = encodings = None  # free one call's output before the next call
    best = min(results, key=lambda name: results[name]["seconds"])
    return {"pairs": len(pairs), "render": render, "calls": results, "best": best,
            "seconds": results[best]["seconds"], "tokens": results[best]["tokens"], **rss_mb()}


def trl_prepare(args: dict) -> dict:
    """TRL 1.x ``DPOTrainer._prepare_dataset`` on the same pairs: what a user's training script runs first.

    ``args["num_proc"]``: its ``dataset_num_proc`` (default: TRL's, one process)."""
    import types

    from datasets import Dataset, disable_progress_bars
    from trl import DPOConfig
    from trl.trainer.dpo_trainer import DPOTrainer

    from benchmarks.data import read_pairs
    from poet.transforms import contract
    from poet.transforms.tokenization import load_tokenizer

    disable_progress_bars()
    tokenizer = load_tokenizer(args["tokenizer"])
    pairs = read_pairs(args["input"])
    dataset = Dataset.from_list([{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs])
    config = DPOConfig(output_dir=args["output"], max_length=None, bf16=False, use_cpu=True, report_to=[],
                       dataset_num_proc=args.get("num_proc"))
    stub = types.SimpleNamespace(_tokenizer=tokenizer)
    start, cpu = time.perf_counter(), cpu_seconds()
    prepared = DPOTrainer._prepare_dataset(stub, dataset, tokenizer, config, "train")
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    tokens = sum(2 * len(p) + len(c) + len(r) for p, c, r in
                 zip(*(prepared[column.name] for column in contract.TOKEN_COLUMNS)))
    return {"seconds": seconds, "cpu_seconds": cpu, "pairs": len(pairs), "tokens": tokens, **rss_mb()}


WORKLOADS = {"prepare": prepare, "bare_imports": bare_imports, "ceiling": ceiling, "trl_prepare": trl_prepare}


def main() -> None:
    name, args = sys.argv[1], json.loads(sys.argv[2])
    if name.startswith("train_"):
        from benchmarks import training

        result = getattr(training, name)(args)
    elif name.startswith(("score_", "dpo_")):
        from benchmarks import reference

        result = getattr(reference, name)(args)
    elif name.startswith("quality_"):
        from benchmarks import quality

        result = getattr(quality, name)(args)
    else:
        result = WORKLOADS[name](args)
    _print_result(result)


def _print_result(result: dict) -> None:
    sys.stdout.flush()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
