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

from poet.trainer.config import DTYPES, LR_SCHEDULERS, TrainConfig
from poet.trainer.registry import LOSSES
from poet.transforms.contract import STATS_FILE
from poet.transforms.errors import UserError


def _per_loss(name: str) -> str:
    return ", ".join(f"{loss.name} {loss.defaults[name]}" for loss in LOSSES.values() if name in loss.defaults)


# Where `poet train` does not do what TRL 1.x does by default (shown under ``poet train --help`` and in the README).
TRL_DIFFERENCES = (
    "--max-length skips the pairs longer than N tokens (prompt + completion); TRL's max_length truncates them",
    "simpo equals TRL's CPOTrainer (trl.experimental.cpo) with loss_type='simpo' and cpo_alpha=0: CPOConfig's "
    "default cpo_alpha=1.0 adds a negative log-likelihood term on the chosen completions; alphapo is the same "
    "with CPOConfig's alpha",
    "dropout is off, Llama-style float attention dropout included (TRL's disable_dropout leaves that on)",
    "logged metrics are means over the pairs of a logging window, logits/* over its completion tokens (TRL "
    "averages the values of its micro-batches)",
)


def _epilog() -> str:
    """Where each loss's defaults come from, and where poet differs from TRL (shown under ``poet train --help``)."""
    def item(text: str, indent: str = "  ") -> str:
        return textwrap.fill(text, width=100, initial_indent=indent, subsequent_indent=indent + "  ")

    return "defaults of the losses:\n" + "\n".join(
        f"  {loss.name}: {', '.join(f'{k}={v}' for k, v in loss.defaults.items())}\n"
        + textwrap.fill(loss.sources, width=100, initial_indent="    ", subsequent_indent="    ")
        for loss in LOSSES.values()
    ) + "\n\nwhere poet train differs from TRL 1.x:\n" + "\n".join(item(f"- {text}") for text in TRL_DIFFERENCES)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = _epilog()
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
        help="score only the first min(len_c, len_r) completion tokens of each pair (for untruncated shards; "
             "changes nothing on POET shards)",
    )  # fmt: skip
    objective.add_argument(
        "--precompute-ref", action="store_true",
        help="dpo: compute reference log-probs in one pass before training, then free the reference model",
    )  # fmt: skip
    objective.add_argument(
        "--strict-reference", action="store_true",
        help=f"refuse stored reference log-prob columns that {STATS_FILE} does not record as computed by --model "
             "(by default a warning)",
    )  # fmt: skip

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--batch-size", type=int, default=8, help="pairs per micro-batch per process")
    optim.add_argument("--eval-batch-size", type=int, default=None, help="pairs per eval batch; unset: --batch-size")
    optim.add_argument("--gradient-accumulation-steps", type=int, default=1, help="micro-batches per optimizer step")
    optim.add_argument("--learning-rate", type=float, default=1e-6, help="peak AdamW learning rate (TRL's default)")
    optim.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    optim.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping norm (0: none)")
    optim.add_argument("--lr-scheduler", choices=LR_SCHEDULERS, default="linear",
                       help="decay to 0 after the warmup; linear with no warmup is TRL's default, "
                            "--lr-scheduler cosine --warmup-ratio 0.1 the POET and SimPO papers' recipe")  # fmt: skip
    optim.add_argument("--warmup-ratio", type=float, default=0.0, help="share of the steps with a linear warmup from 0")
    optim.add_argument("--num-epochs", type=int, default=1, help="passes over the training split")
    optim.add_argument("--max-steps", type=int, default=None, help="optimizer steps; overrides --num-epochs")
    optim.add_argument("--seed", type=int, default=42, help="seed of the data order and of torch")
    optim.add_argument("--group-by-length", action="store_true", help="batch pairs of similar length (less padding)")
    optim.add_argument("--max-length", type=int, default=None,
                       help="skip pairs longer than this (prompt + completion); TRL truncates them instead")
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
