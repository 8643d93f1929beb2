"""Training metrics: sums reduced over ranks, and the ``metrics.jsonl`` log (TRL's metric names and definitions)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from poet.trainer.logps import CompletionLogps

# Per-pair quantities, averaged over the pairs of a logging window (names as TRL's DPOTrainer logs them).
PAIR_METRICS = (
    "loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
    "logps/rejected",
)  # fmt: skip
# Per-token quantities, averaged over the scored completion tokens of a window: TRL's mean logit over the
# vocabulary at each chosen (rejected) completion token.
TOKEN_METRICS = ("logits/chosen", "logits/rejected")
_KEYS = (*PAIR_METRICS, *TOKEN_METRICS, "chosen_tokens", "rejected_tokens", "tokens", "pairs", "positions")


class MetricSums:
    """Sums over pairs of the :data:`PAIR_METRICS`, over scored completion tokens of the :data:`TOKEN_METRICS`
    (with those tokens' counts), plus the pair count and the real (non-padding) and forwarded token positions of
    the policy's batches. Kept in float64 on the training device, so adding a batch never synchronises it."""

    def __init__(self, device: torch.device | str, state: list[float] | None = None) -> None:
        self.values = torch.tensor(state or [0.0] * len(_KEYS), dtype=torch.float64, device=device)

    def add_batch(self, outputs, policy: CompletionLogps, attention_mask: torch.Tensor) -> None:
        """``outputs``: :func:`trainer.train.preference_loss`'s per-pair tensors; ``policy``: the policy's
        completion log-probs of the same ``2B`` rows, with their logit sums."""
        losses, chosen_rewards, rejected_rewards, chosen_logps, rejected_logps = outputs
        per_pair = (
            losses.detach(), chosen_rewards, rejected_rewards, (chosen_rewards > rejected_rewards).double(),
            chosen_rewards - rejected_rewards, chosen_logps.detach(), rejected_logps.detach(),
        )  # fmt: skip
        per_token = (*policy.logit_sums.chunk(2), *policy.counts.chunk(2))
        sums = torch.stack([value.double().sum() for value in (*per_pair, *per_token, attention_mask)])
        self.values += torch.cat([sums, self.values.new_tensor([len(losses), attention_mask.numel()])])

    def __iadd__(self, other: MetricSums) -> MetricSums:
        self.values += other.values
        return self

    def reduced(self, accelerator) -> MetricSums:
        """The sums over all ranks (one all-reduce)."""
        total = MetricSums(self.values.device)
        total.values = accelerator.reduce(self.values, reduction="sum")
        return total

    @property
    def tokens(self) -> float:
        return self.values[_KEYS.index("tokens")].item()

    def means(self) -> dict[str, float]:
        """Per-pair and per-token means, and ``padding_waste``: the fraction of forwarded positions that are
        padding."""
        sums = dict(zip(_KEYS, self.values.tolist()))
        means = {name: sums[name] / max(sums["pairs"], 1.0) for name in PAIR_METRICS}
        for name, side in zip(TOKEN_METRICS, ("chosen", "rejected")):
            means[name] = sums[name] / max(sums[f"{side}_tokens"], 1.0)
        means["padding_waste"] = 1.0 - sums["tokens"] / max(sums["positions"], 1.0)
        return means

    def state(self) -> list[float]:
        return self.values.tolist()


class MetricsLog:
    """``metrics.jsonl``: one JSON object per logging or evaluation step, written by the main process only."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def append(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop the records of steps after ``step`` (a resumed run rewrites them)."""
        if self.enabled and self.path.exists():
            kept = [r for r in self.records() if r["step"] <= step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
