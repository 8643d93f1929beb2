"""One measured workload per process: ``python -m benchmarks.workloads NAME JSON``.

Each workload imports what it needs first (imports are not timed, for any
contender), times only its own work, and prints ``RESULT {json}`` as its last
line. :mod:`benchmarks.run` starts them, samples their memory, and compares.
"""

from __future__ import annotations

import json
import os
import sys
import time

from benchmarks.usage import cpu_seconds, rss_mb


def prepare(args: dict) -> dict:
    """``poet prepare`` end to end, as the CLI runs it, minus the Python imports."""
    import argparse

    import apache_beam  # noqa: F401 - imports are not timed
    import transformers.models.auto.tokenization_auto  # noqa: F401

    from poet.pipeline.options import add_arguments, config_from_args
    from poet.pipeline.pipeline import run

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cli = ["--input", args["input"], "--tokenizer", args["tokenizer"], "--output", args["output"], "--overwrite",
           *args.get("extra", [])]
    namespace, beam_args = parser.parse_known_args(cli)
    config = config_from_args(namespace)
    start, cpu = time.perf_counter(), cpu_seconds()
    document = run(config, beam_args)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    overall = document["overall"]
    splits = document["splits"]
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "pairs": sum(s["pairs"] for s in splits.values()),
        "read": sum(s["read"] for s in splits.values()),
        "training_tokens": overall["training_tokens"],
        "shards": {split: [s["file"] for s in shards] for split, shards in document["shards"].items()},
        **rss_mb(),
    }


def _texts(pairs, tokenizer) -> list[str]:
    """What TRL tokenizes as a pair's two training sequences: prompt+chosen and prompt+rejected."""
    if pairs[0].conversational:
        return (tokenizer.apply_chat_template([p.prompt + p.chosen for p in pairs], tokenize=False)
                + tokenizer.apply_chat_template([p.prompt + p.rejected for p in pairs], tokenize=False))
    eos = tokenizer.eos_token
    return ([p.prompt + p.chosen + ("" if p.chosen.endswith(eos) else eos) for p in pairs]
            + [p.prompt + p.rejected + ("" if p.rejected.endswith(eos) else eos) for p in pairs])


def ceiling(args: dict) -> dict:
    """The same pairs' texts, rendered beforehand, encoded by one batched fast-tokenizer call: no Beam, no I/O."""
    from benchmarks.data import read_pairs
    from poet.transforms.tokenization import load_tokenizer

    tokenizer = load_tokenizer(args["tokenizer"])
    pairs = read_pairs(args["input"])
    texts = _texts(pairs, tokenizer)
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
        results[name] = {"seconds": time.perf_counter() - start, "cpu_seconds": cpu_seconds() - cpu, "tokens": tokens}
        ids = encodings = None  # free one call's output before the next call
    best = min(results, key=lambda name: results[name]["seconds"])
    one_call = min(("transformers", "backend"), key=lambda name: results.get(name, {}).get("seconds", float("inf")))
    return {"pairs": len(pairs), "calls": results, "best": best, "seconds": results[best]["seconds"],
            "one_call": one_call, "tokens": results[best]["tokens"], **rss_mb()}


def trl_prepare(args: dict) -> dict:
    """TRL 1.x ``DPOTrainer._prepare_dataset`` on the same pairs: what a user's training script runs first."""
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
    config = DPOConfig(output_dir=args["output"], max_length=None, bf16=False, use_cpu=True, report_to=[])
    stub = types.SimpleNamespace(_tokenizer=tokenizer)
    start, cpu = time.perf_counter(), cpu_seconds()
    prepared = DPOTrainer._prepare_dataset(stub, dataset, tokenizer, config, "train")
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    tokens = sum(2 * len(p) + len(c) + len(r) for p, c, r in
                 zip(*(prepared[column.name] for column in contract.TOKEN_COLUMNS)))
    return {"seconds": seconds, "cpu_seconds": cpu, "pairs": len(pairs), "tokens": tokens, **rss_mb()}


WORKLOADS = {"prepare": prepare, "ceiling": ceiling, "trl_prepare": trl_prepare}


def main() -> None:
    name, args = sys.argv[1], json.loads(sys.argv[2])
    if name.startswith("train_"):
        from benchmarks import training

        result = getattr(training, name)(args)
    else:
        result = WORKLOADS[name](args)
    sys.stdout.flush()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
