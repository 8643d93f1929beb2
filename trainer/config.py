"""Settings of one training run, validated once; loss hyper-parameters default per loss."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from poet.trainer.registry import LOSSES
from poet.transforms.errors import UserError

DTYPES = ("float32", "bfloat16", "float16", "float64", "auto")
LR_SCHEDULERS = ("linear", "cosine")  # transformers' get_scheduler names; linear is TRL's DPOConfig/CPOConfig default
HYPERPARAMETERS = ("beta", "gamma", "alpha", "label_smoothing")  # the TrainConfig fields a loss may take

# Fields that decide the training trajectory: a checkpoint only resumes bit-for-bit if they are unchanged.
TRAJECTORY_FIELDS = (
    "data", "split", "model", "gguf_file", "dtype", "loss", "beta", "gamma", "alpha", "label_smoothing", "poet",
    "precompute_ref", "batch_size", "gradient_accumulation_steps", "learning_rate", "weight_decay",
    "max_grad_norm", "lr_scheduler", "warmup_ratio", "num_epochs", "max_steps", "seed", "group_by_length",
    "max_length", "max_samples",
)  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    """One run's settings; each ``poet train`` flag sets the field of the same name (``--batch-size``)."""

    data: str
    model: str
    output_dir: Path
    split: str = "train"
    eval_split: str | None = None
    gguf_file: str | None = None
    tokenizer: str | None = None
    dtype: str = "float32"
    loss: str = "dpo"
    # None means "the default of the chosen loss" (trainer.registry); resolved in __post_init__.
    beta: float | None = None
    gamma: float | None = None
    alpha: float | None = None
    label_smoothing: float | None = None
    poet: bool = False
    precompute_ref: bool = False
    strict_reference: bool = False
    batch_size: int = 8
    eval_batch_size: int | None = None
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-6
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.0
    num_epochs: int = 1
    max_steps: int | None = None
    seed: int = 42
    group_by_length: bool = False
    max_length: int | None = None
    max_samples: int | None = None
    gradient_checkpointing: bool = False
    logging_steps: int = 10
    save_steps: int | None = None
    eval_steps: int | None = None
    overwrite: bool = False
    resume_from_checkpoint: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        if self.resume_from_checkpoint is not None:
            object.__setattr__(self, "resume_from_checkpoint", Path(self.resume_from_checkpoint))
        if self.eval_batch_size is None:
            object.__setattr__(self, "eval_batch_size", self.batch_size)
        if self.loss not in LOSSES:
            raise UserError(f"unknown loss {self.loss!r}: choose one of {', '.join(LOSSES)}")
        if self.dtype not in DTYPES:
            raise UserError(f"unknown dtype {self.dtype!r}: choose one of {', '.join(DTYPES)}")
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise UserError(f"unknown --lr-scheduler {self.lr_scheduler!r}: choose one of {', '.join(LR_SCHEDULERS)}")
        defaults = LOSSES[self.loss].defaults
        for name in HYPERPARAMETERS:
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, defaults.get(name))
            elif name not in defaults:
                raise UserError(f"--{name.replace('_', '-')} does not apply to --loss {self.loss}: drop it")
            elif not math.isfinite(value):
                raise UserError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
        if not self.beta > 0:
            raise UserError(f"--beta must be > 0, got {self.beta}")
        if self.label_smoothing is not None and not 0 <= self.label_smoothing < 0.5:
            raise UserError(f"--label-smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.precompute_ref and not LOSSES[self.loss].needs_reference:
            raise UserError(f"--precompute-ref only applies to losses with a reference model "
                            f"({', '.join(n for n, loss in LOSSES.items() if loss.needs_reference)}); "
                            f"{self.loss} has none")
        for name in ("batch_size", "eval_batch_size", "gradient_accumulation_steps", "num_epochs", "max_steps",
                     "max_length", "max_samples", "logging_steps", "save_steps", "eval_steps"):  # fmt: skip
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if not 0 < self.learning_rate < math.inf:
            raise UserError(f"--learning-rate must be a finite number > 0, got {self.learning_rate}")
        if not 0 <= self.warmup_ratio <= 1:
            raise UserError(f"--warmup-ratio must be in [0, 1], got {self.warmup_ratio}")
        for name in ("weight_decay", "max_grad_norm"):  # NaN fails every comparison: test what must hold
            if not 0 <= getattr(self, name) < math.inf:
                raise UserError(f"--{name.replace('_', '-')} must be a finite number >= 0 (--max-grad-norm 0 disables "
                                f"gradient clipping), got {getattr(self, name)}")

    @property
    def hyperparameters(self) -> dict[str, float]:
        """The loss's hyper-parameters, as its function takes them."""
        return {name: getattr(self, name) for name in LOSSES[self.loss].defaults}

    def trajectory(self) -> dict:
        """The fields a resumed run must share with the run that wrote the checkpoint."""
        return {name: getattr(self, name) for name in TRAJECTORY_FIELDS}
