"""Reference log-probs: the pipeline's scoring stage vs ``poet train --precompute-ref`` vs TRL's
``precompute_ref_log_probs``, and the trainer's peak memory with the columns vs with a frozen reference.

All three scorers get the same ``PAIRS`` pairs of the prepared (POET-truncated) 1x sample and the benchmark's
tiny Llama (:func:`benchmarks.training.tiny_model`), float32 on CPU, each in its own fresh process (imports not
timed). Time: scoring (the pipeline: the whole ``poet score`` run, loading the model, Beam start-up, reading and
writing shards included; the trainer: its precompute stage, model loaded; TRL: ``DPOTrainer._precompute_ref_logps``,
model loaded). Tokens: the
non-padding tokens of both sequences of every pair, the same count for all.

Memory: ``poet train --loss dpo`` for ``STEPS`` steps on the same pairs, on shards carrying the columns (one
model in memory), and on the same shards without them, with a frozen reference beside the policy and with
``--precompute-ref``; peak RSS of each process, the peak above the RSS once torch and the trainer are imported
(what the run itself added), and the ratio to expect from counting copies of the weights (:data:`MEMORY_RUNS`).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from benchmarks.data import WORK
from benchmarks.training import TOKEN_IDS
from benchmarks.usage import rss_mb
from poet.transforms import contract

PAIRS = 512
BATCH = 8  # pairs per forward pass for the trainer and TRL (their defaults follow the training batch size)
STEPS = 8
MAX_LENGTH = 256


def _subset_folder(data: str) -> Path:
    """A prepared folder holding only the first ``PAIRS`` pairs (that fit in ``MAX_LENGTH``) of ``data``."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    folder = WORK / "reference-subset"
    if (folder / contract.STATS_FILE).exists():
        return folder
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / contract.DATA_DIR).mkdir(parents=True)
    table = pq.read_table(_shard(Path(data)))
    prompt, chosen, rejected = (table[name] for name in TOKEN_IDS)
    longest = pc.max_element_wise(pc.list_value_length(chosen), pc.list_value_length(rejected))
    table = table.filter(pc.less_equal(pc.add(pc.list_value_length(prompt), longest), MAX_LENGTH)).slice(0, PAIRS)
    name = contract.shard_file("train", 0, 1)
    pq.write_table(table, partial / name)
    document = json.loads(Path(data, contract.STATS_FILE).read_text())
    document["splits"] = {"train": document["splits"]["train"]}  # (length statistics of the whole sample)
    document["shards"] = {"train": [{"file": name, "num_rows": table.num_rows, "num_bytes": None, "file_size": None}]}
    (partial / contract.STATS_FILE).write_text(json.dumps(document))
    partial.rename(folder)
    return folder


def _shard(data: Path) -> Path:
    return sorted(data.glob(contract.split_shards_prefix("train") + "*"))[0]


def _tokens(data: Path) -> tuple[int, int]:
    import pyarrow.parquet as pq

    columns = pq.read_table(_shard(data), columns=list(TOKEN_IDS)).to_pydict()
    prompt, chosen, rejected = (columns[name] for name in TOKEN_IDS)
    return len(prompt), sum(2 * len(p) + len(c) + len(r) for p, c, r in zip(prompt, chosen, rejected))


def score_pipeline(args: dict) -> dict:
    """``poet score`` on the subset with the in-process runner, as the CLI runs it."""
    import torch  # noqa: F401 - imports are not timed

    import poet.pipeline.steps.reference  # noqa: F401
    from poet.pipeline.commands.cli import main

    shutil.rmtree(args["output"], ignore_errors=True)
    start = time.perf_counter()
    assert main(["score", args["data"], "--ref-model", args["model"], "--output", args["output"]]) == 0
    seconds = time.perf_counter() - start
    pairs, tokens = _tokens(Path(args["data"]))
    return {"seconds": seconds, "pairs": pairs, "tokens": tokens, **rss_mb()}


def score_trainer(args: dict) -> dict:
    """The precompute stage of ``poet train --precompute-ref``: the reference model over every pair, batches of
    ``BATCH`` pairs sorted by length."""
    import numpy as np
    from accelerate import Accelerator

    from poet.trainer.config import TrainConfig
    from poet.trainer.data import load_pairs
    from poet.trainer.model import load_reference, load_tokenizer, pad_token_id
    from poet.trainer.train import _with_reference_logps

    config = TrainConfig(data=args["data"], model=args["model"], output_dir=Path(args["output"]), batch_size=BATCH,
                         precompute_ref=True)  # fmt: skip
    accelerator = Accelerator(cpu=True)
    pairs = load_pairs(args["data"], "train")
    pad_id = pad_token_id(load_tokenizer(args["model"]))
    reference = load_reference(args["model"], "float32", None, accelerator.device)
    start = time.perf_counter()
    _with_reference_logps(pairs, np.arange(len(pairs)), reference, config, accelerator, pad_id, "train")
    seconds = time.perf_counter() - start
    pairs_n, tokens = _tokens(Path(args["data"]))
    return {"seconds": seconds, "pairs": pairs_n, "tokens": tokens, **rss_mb()}


def score_trl(args: dict) -> dict:
    """TRL's ``DPOTrainer._precompute_ref_logps`` over the same pairs (its reference model loaded and timed)."""
    import pyarrow.parquet as pq
    import torch
    from datasets import Dataset, disable_progress_bars
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig
    from trl.trainer.dpo_trainer import DPOTrainer


    disable_progress_bars()
    data = Path(args["data"])
    dataset = Dataset.from_list(pq.read_table(_shard(data), columns=list(TOKEN_IDS)).to_pylist())

    class PreparedDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset, *_, **__):
            return dataset

    # Built without precompute (TRL then loads and prepares its frozen reference), then its precompute pass is
    # timed alone: what `precompute_ref_log_probs=True` runs inside the constructor.
    config = DPOConfig(output_dir=args["output"], per_device_train_batch_size=BATCH, max_length=None, use_cpu=True,
                       report_to=[], disable_tqdm=True, precompute_ref_log_probs=False)  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(args["model"])
    model = AutoModelForCausalLM.from_pretrained(args["model"], dtype=torch.float32)
    trainer = PreparedDPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    trainer._precompute_model_hash = "benchmark"
    start = time.perf_counter()
    trainer._precompute_ref_logps(dataset, "train", BATCH)
    seconds = time.perf_counter() - start
    pairs, tokens = _tokens(data)
    return {"seconds": seconds, "pairs": pairs, "tokens": tokens, **rss_mb()}


def dpo_memory(args: dict) -> dict:
    """``poet train --loss dpo`` (and ``args["extra"]``) for ``STEPS`` steps; ``baseline_rss_mb``: the RSS once
    everything is imported; ``weights_mb``: one copy of the model's weights (its safetensors files)."""
    import argparse

    from poet.trainer.cli import add_arguments, config_from_args
    from poet.trainer.train import train

    baseline = rss_mb()
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args([
        "--data", args["data"], "--model", args["model"], "--output-dir", args["output"], "--overwrite",
        "--loss", "dpo", "--batch-size", str(BATCH), "--max-steps", str(STEPS), "--logging-steps", "1000",
        *args.get("extra", []),
    ]))  # fmt: skip
    start = time.perf_counter()
    train(config)
    seconds = time.perf_counter() - start
    weights = sum(path.stat().st_size for path in Path(args["model"]).glob("*.safetensors")) / 2**20
    return {"seconds": seconds, "baseline_rss_mb": baseline["maxrss_self_mb"], "weights_mb": weights, **rss_mb()}


# DPO's three ways to its reference, and the copies of the weights each holds at its peak (a training step): the
# policy's weights, gradients and two AdamW moments are four, a frozen reference one more. --precompute-ref holds
# the reference only before the first step, beside the weights alone (two copies), then frees it.
MEMORY_RUNS = {  # run: (label, `poet train` flags, weight copies at the peak)
    "memory_columns": ("stored columns (`poet score`)", [], 4),
    "memory_frozen": ("frozen reference model", [], 5),
    "memory_precompute": ("`--precompute-ref`", ["--precompute-ref"], 4),
}


def memory(scored: Path, plain: Path, model: Path, measure) -> dict:
    """Peak memory of the three runs: on ``scored`` (the columns), and twice on ``plain`` (no columns)."""
    return {
        run: measure("dpo_memory", {"data": str(scored if run == "memory_columns" else plain), "model": str(model),
                                    "output": str(WORK / run), "extra": extra}, run.replace("_", "-"))
        for run, (_, extra, _) in MEMORY_RUNS.items()
    }  # fmt: skip


def compare(options, data: Path, model: Path, measure) -> dict:
    subset = _subset_folder(str(data))
    common = {"data": str(subset), "model": str(model)}
    runs = {}
    for name in ("score_pipeline", "score_trainer", "score_trl"):
        runs[name] = measure(name, {**common, "output": str(WORK / name)}, name)
    runs.update(memory(WORK / "score_pipeline", subset, model, measure))
    return runs


def memory_report(results: dict) -> list[str]:
    columns = results["memory_columns"]
    weights = columns["weights_mb"]
    rows = []
    for run, (label, _, copies) in MEMORY_RUNS.items():
        r = results[run]
        expected = (columns["peak_rss_mb"] + (copies - 4) * weights) / columns["peak_rss_mb"]
        rows.append(f"| {label} | {copies} | {r['peak_rss_mb']:,.0f} | {r['peak_rss_mb'] - r['baseline_rss_mb']:,.0f} | "
                    f"{r['peak_rss_mb'] / columns['peak_rss_mb']:.3f}x | {expected:.3f}x |")  # fmt: skip
    precompute = results["memory_precompute"]["peak_rss_mb"] / columns["peak_rss_mb"]
    return [
        f"Trainer memory, `poet train --loss dpo`, {STEPS} steps of {BATCH} pairs, AdamW, float32: the peak RSS of "
        "each run against the run on the stored columns, and the ratio to expect from counting copies of the "
        f"weights ({weights:,.0f} MB each): the policy's weights, gradients and two AdamW moments are 4, a frozen "
        "reference one more, and `--precompute-ref` frees its reference before the first step. Expected: the "
        "columns run's peak plus or minus those copies. Here the activations (mostly the logits, 2 × batch × "
        "length × vocabulary floats) outweigh the weights; where the weights dominate (full fine-tuning of a "
        "large model) the frozen reference tends to 5/4 of the columns run (the columns at 0.80x of it).",
        "",
        "| reference | weight copies at the peak | peak RSS (MB) | above imports (MB) | vs columns | expected |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"`--precompute-ref` peaks at **{precompute:.3f}x** the stored-columns run (target <= 1.03x: "
        f"{'met' if precompute <= 1.03 else '**not met**'}).",
        "",
    ]


def report(results: dict) -> list[str]:
    pipeline, trainer, trl = results["score_pipeline"], results["score_trainer"], results["score_trl"]
    rate = {name: r["tokens"] / r["seconds"] for name, r in (("pipeline", pipeline), ("trainer", trainer), ("trl", trl))}
    row = "| {} | {:.1f} | {:,.0f} | {:,.0f} | {:.2f}x | {} |"
    return [
        "## 7. Reference log-probs: pipeline scoring vs `poet train --precompute-ref` vs TRL",
        "",
        f"{pipeline['pairs']} pairs of the prepared 1x sample ({pipeline['tokens']:,} tokens), the tiny Llama of "
        f"section 6, float32 on CPU. The pipeline (`poet score`, in-process runner) groups pairs by length into "
        f"batches of at most 4,096 padded tokens (the default `--ref-batch-tokens`); the trainer and TRL score {BATCH} pairs per "
        "forward pass "
        "(the trainer sorted by length, TRL in dataset order). The pipeline's time includes Beam start-up and "
        "reading/writing the shards.",
        "",
        "| scorer | seconds | pairs/s | tokens/s | vs TRL | target |",
        "|---|---:|---:|---:|---:|---:|",
        row.format("`poet score` (Beam RunInference)", pipeline["seconds"], pipeline["pairs"] / pipeline["seconds"],
                   rate["pipeline"], rate["pipeline"] / rate["trl"], ">= 2x"),
        row.format("`poet train --precompute-ref`", trainer["seconds"], trainer["pairs"] / trainer["seconds"],
                   rate["trainer"], rate["trainer"] / rate["trl"], ""),
        row.format("TRL `precompute_ref_log_probs`", trl["seconds"], trl["pairs"] / trl["seconds"], rate["trl"],
                   1.0, ""),
        "",
        *memory_report(results),
    ]
