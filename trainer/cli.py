"""Train a causal LM with DPO, SimPO or AlphaPO on prepared shards (a folder or a Hub dataset repo id).

Runs on one process as is, and on several through a launcher, e.g.
``accelerate launch --multi_gpu --num_processes 2 -m poet.pipeline.commands.cli train ...`` (on a machine without GPUs the
processes train on CPU): data are sharded across ranks and metrics reduced over them.
"""

from __future__ import annotations

import argparse
import math
import textwrap
from pathlib import Path

from poet.trainer.config import DTYPES, TrainConfig
from poet.trainer.registry import LOSSES
from poet.transforms.errors import UserError


def _per_loss(name: str) -> str:
    return ", ".join(f"{loss.name} {loss.defaults[name]}" for loss in LOSSES.values() if name in loss.defaults)


def _losses_epilog() -> str:
    """Where each loss's defaults come from (shown under ``poet train --help``)."""
    return "defaults of the losses:\n" + "\n".join(
        f"  {loss.name}: {', '.join(f'{k}={v}' for k, v in loss.defaults.items())}\n"
        + textwrap.fill(loss.sources, width=100, initial_indent="    ", subsequent_indent="    ")
        for loss in LOSSES.values())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = _losses_epilog()
    io = parser.add_argument_group("data, model and output")
    io.add_argument("--data", required=True, help="prepared folder (`poet prepare` output) or Hub dataset repo id")
    io.add_argument("--split", default="train", help="split to train on")
    io.add_argument("--eval-split", default=None, help="split to evaluate on (loss and reward accuracy)")
    io.add_argument("--model", required=True, help="causal LM: local folder or Hub model id")
    io.add_argument("--gguf-file", default=None, help="GGUF file in the --model folder to load (dequantised)")
    io.add_argument("--tokenizer", default=None, help="tokenizer to save with the checkpoints; unset: --model's")
    io.add_argument("--dtype", choices=DTYPES, default="float32", help="dtype of the model weights")
    io.add_argument("--output-dir", type=Path, required=True, help="where checkpoints, metrics and the model go")
    io.add_argument("--overwrite", action="store_true", help="train into a non-empty --output-dir")

    objective = parser.add_argument_group("objective")
    objective.add_argument("--loss", choices=list(LOSSES), default="dpo",
                           help="direct alignment algorithm (where each default comes from: see the end of --help)")
    objective.add_argument("--beta", type=float, default=None, help=f"β; unset: {_per_loss('beta')}")
    margin = objective.add_mutually_exclusive_group()
    margin.add_argument("--gamma", type=float, default=None, help=f"reward margin γ; unset: {_per_loss('gamma')}")
    margin.add_argument("--gamma-beta-ratio", type=float, default=None, help="γ/β, as the SimPO repository sets it")
    objective.add_argument("--alpha", type=float, default=None, help=f"AlphaPO's α (±); unset: {_per_loss('alpha')}")
    objective.add_argument("--label-smoothing", type=float, default=None, help="ε of cDPO (dpo, simpo); unset: 0")
    objective.add_argument(
        "--poet", action="store_true",
        help="score only the first min(len_c, len_r) completion tokens of each pair (for untruncated shards)",
    )  # fmt: skip
    objective.add_argument(
        "--precompute-ref", action="store_true",
        help="dpo: compute reference log-probs in one pass before training, then free the reference model",
    )  # fmt: skip

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--batch-size", type=int, default=8, help="pairs per micro-batch per process")
    optim.add_argument("--eval-batch-size", type=int, default=None, help="pairs per eval batch; unset: --batch-size")
    optim.add_argument("--gradient-accumulation-steps", type=int, default=1, help="micro-batches per optimizer step")
    optim.add_argument("--learning-rate", type=float, default=1e-6, help="peak AdamW learning rate")
    optim.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    optim.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping norm (0: none)")
    optim.add_argument("--warmup-ratio", type=float, default=0.1, help="linear warmup, then cosine decay to 0")
    optim.add_argument("--num-epochs", type=int, default=1, help="passes over the training split")
    optim.add_argument("--max-steps", type=int, default=None, help="optimizer steps; overrides --num-epochs")
    optim.add_argument("--seed", type=int, default=42, help="seed of the data order and of torch")
    optim.add_argument("--group-by-length", action="store_true", help="batch pairs of similar length (less padding)")
    optim.add_argument("--max-length", type=int, default=None, help="skip pairs longer than this (prompt + completion)")
    optim.add_argument("--max-samples", type=int, default=None, help="train on the first N pairs only")
    optim.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for activation memory")

    progress = parser.add_argument_group("logging and checkpoints")
    progress.add_argument("--logging-steps", type=int, default=10, help="write metrics.jsonl every N steps")
    progress.add_argument("--eval-steps", type=int, default=None, help="evaluate every N steps (and at the end)")
    progress.add_argument("--save-steps", type=int, default=None, help="write OUT/checkpoint-N every N steps")
    progress.add_argument("--resume-from-checkpoint", type=Path, default=None, help="continue from OUT/checkpoint-N")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    gamma = args.gamma
    if args.gamma_beta_ratio is not None:
        if "gamma" not in LOSSES[args.loss].defaults:
            raise UserError(f"--gamma-beta-ratio does not apply to --loss {args.loss}: drop it")
        if not math.isfinite(args.gamma_beta_ratio):
            raise UserError(f"--gamma-beta-ratio must be a finite number, got {args.gamma_beta_ratio}")
        beta = args.beta if args.beta is not None else LOSSES[args.loss].defaults["beta"]
        gamma = args.gamma_beta_ratio * beta
    names = [name for name in TrainConfig.__dataclass_fields__ if name != "gamma"]
    return TrainConfig(gamma=gamma, **{name: getattr(args, name) for name in names})


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    from poet.trainer.train import train  # torch and transformers load here, not for `poet --help`

    train(config)
    return 0
