"""``poet train`` vs TRL 1.x ``DPOTrainer``: same tiny model, same pairs, same batch size, same steps, on CPU.

Both trainers get the first ``PAIRS`` pairs of the prepared (POET-truncated)
1x sample, batch size ``BATCH``, one epoch, DPO (sigmoid, beta 0.1), float32, a
frozen reference model, no evaluation, no checkpoint. TRL is handed the same
token ids the pipeline wrote (they are TRL's own ids, POET-truncated), so its
``_prepare_dataset`` has nothing left to do and is skipped. The time is the
whole training call of each (model and reference loading, data, the steps);
tokens are the non-padding tokens of both sequences of every pair trained on,
the same count for both. Peak memory is each process's peak RSS.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from benchmarks.data import TOKENIZER, WORK
from benchmarks.usage import rss_mb
from poet.transforms import contract

TOKEN_IDS = PROMPT, CHOSEN, REJECTED = contract.TOKEN_COLUMN_NAMES

PAIRS = 64
BATCH = 8
MAX_LENGTH = 256  # pairs longer than this (prompt + completion) are left out, for both trainers
MODEL = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=4, max_position_embeddings=2048, tie_word_embeddings=True)


def tiny_model(folder: Path = WORK / "tiny-llama") -> Path:
    """A seeded random Llama with the SmolLM2 tokenizer, saved once."""
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    config = LlamaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **MODEL)
    torch.manual_seed(0)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    LlamaForCausalLM(config).save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(folder)
    return folder


def _subset(data: str) -> list[dict]:
    """The pairs both trainers train on: the first ``PAIRS`` of the train split that fit in ``MAX_LENGTH``."""
    import pyarrow.parquet as pq

    table = pq.read_table(sorted(Path(data).glob(contract.split_shards_prefix("train") + "*"))[0], columns=list(TOKEN_IDS))
    rows = [(r[PROMPT], r[CHOSEN], r[REJECTED]) for r in table.to_pylist()]
    return [dict(zip(TOKEN_IDS, r)) for r in rows if len(r[0]) + max(len(r[1]), len(r[2])) <= MAX_LENGTH][:PAIRS]


def _tokens(rows: list[dict]) -> int:
    return sum(2 * len(r[PROMPT]) + len(r[CHOSEN]) + len(r[REJECTED]) for r in rows)


def train_poet(args: dict) -> dict:
    """``poet train`` as the CLI runs it (``trainer.cli``), timed around ``trainer.train.train``."""
    import argparse

    import torch  # noqa: F401 - imports are not timed

    from poet.trainer.cli import add_arguments, config_from_args
    from poet.trainer.train import train

    rows = _subset(args["data"])
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    namespace = parser.parse_args([
        "--data", args["data"], "--model", args["model"], "--output-dir", args["output"], "--overwrite",
        "--loss", "dpo", "--batch-size", str(BATCH), "--num-epochs", "1", "--max-length", str(MAX_LENGTH),
        "--max-samples", str(PAIRS), "--learning-rate", "1e-6", "--logging-steps", "1000", "--seed", "0",
    ])
    config = config_from_args(namespace)
    start = time.perf_counter()
    train(config)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "pairs": len(rows), "tokens": _tokens(rows), **rss_mb()}


def train_trl(args: dict) -> dict:
    """TRL's ``DPOTrainer`` built and trained the usual way, timed from loading the model to the end of ``train``."""
    import torch
    from datasets import Dataset, disable_progress_bars
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig
    from trl.trainer.dpo_trainer import DPOTrainer


    disable_progress_bars()
    torch.manual_seed(0)
    rows = _subset(args["data"])
    dataset = Dataset.from_list(rows)

    class PreparedDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset, *_, **__):  # already TRL's ids: nothing to tokenize
            return dataset

    config = DPOConfig(
        output_dir=args["output"], per_device_train_batch_size=BATCH, num_train_epochs=1, learning_rate=1e-6,
        max_grad_norm=1.0, beta=0.1, loss_type=["sigmoid"],  # the schedule: TRL's default, as poet train's
        max_length=None, use_cpu=True, bf16=False, fp16=False, report_to=[], logging_steps=1000,
        save_strategy="no", eval_strategy="no", seed=0, data_seed=0, dataloader_num_workers=0,
        disable_tqdm=True,
    )
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(args["model"])
    model = AutoModelForCausalLM.from_pretrained(args["model"], dtype=torch.float32)
    trainer = PreparedDPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "pairs": len(rows), "tokens": _tokens(rows), "steps": trainer.state.global_step,
            **rss_mb()}


def compare(options, sample, measure) -> dict:
    """Prepare the 1x sample, then train on it with both trainers, one after the other."""
    model = tiny_model()
    data = WORK / "train-data"
    if not (data / contract.STATS_FILE).exists():
        measure("prepare", {"input": str(sample), "tokenizer": str(TOKENIZER), "output": str(data), "extra": [],
                            "stats_file": contract.STATS_FILE}, "train-data")
    runs = {}
    for name in ("train_poet", "train_trl"):  # one run each: minutes apiece on a laptop CPU
        runs[name] = measure(name, {"data": str(data), "model": str(model), "output": str(WORK / name)}, name)
    stats = json.loads((data / contract.STATS_FILE).read_text())
    runs["removed_pct"] = stats["overall"]["training_tokens"]["removed_pct"]
    return runs


def report(results: dict) -> list[str]:
    poet, trl = results["train_poet"], results["train_trl"]
    speed = (poet["tokens"] / poet["seconds"]) / (trl["tokens"] / trl["seconds"])
    memory = poet["peak_rss_mb"] / trl["peak_rss_mb"]
    lines = [
        f"## 6. Trainer vs TRL `DPOTrainer` (CPU, tiny Llama {MODEL['hidden_size']}x{MODEL['num_hidden_layers']} "
        f"layers with the SmolLM2 vocabulary)",
        "",
        f"{poet['pairs']} pairs of the prepared 1x sample (POET-truncated, at most {MAX_LENGTH} tokens), batch size "
        f"{BATCH}, one epoch, DPO beta 0.1, float32, frozen reference model. Time: the whole training call "
        "(loading model and reference, data, every step); tokens: non-padding tokens of both sequences of every "
        f"pair ({poet['tokens']:,} for both).",
        "",
        "| trainer | seconds | tokens/s | peak RSS (MB) | speed vs TRL | target | memory vs TRL | target | met |",
        "|---|---:|---:|---:|---:|---:|---:|---:|:-:|",
        f"| `poet train` | {poet['seconds']:.1f} | {poet['tokens'] / poet['seconds']:,.0f} | "
        f"{poet['peak_rss_mb']:,.0f} | {speed:.2f}x | >= 1.0x | {memory:.2f}x | <= 1.0x | "
        f"{'yes' if speed >= 1.0 and memory <= 1.0 else '**no**'} |",
        f"| TRL `DPOTrainer` | {trl['seconds']:.1f} | {trl['tokens'] / trl['seconds']:,.0f} | "
        f"{trl['peak_rss_mb']:,.0f} | 1.00x | | 1.00x | | |",
        "",
    ]
    return lines
