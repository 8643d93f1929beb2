"""Completion log-probabilities: one forward pass over a padded batch of prompt + completion sequences."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch


@dataclass(frozen=True)
class Batch:
    """``2B`` right-padded rows: the ``B`` chosen sequences, then the ``B`` rejected ones, of the same pairs.

    ``completion_mask`` marks the completion tokens that are scored: all of them, or under POET only the first
    ``min(len_c, len_r)`` of each pair (the same mask for policy and reference). ``ref_logps`` holds ``2B``
    summed reference log-probs when they are precomputed, else None.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    completion_mask: torch.Tensor
    ref_logps: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        ref = None if self.ref_logps is None else self.ref_logps.to(device)
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.completion_mask.to(device), ref)


class CompletionLogps(NamedTuple):
    """Per row of a batch: ``sums`` of the scored completion tokens' log-probs, their ``counts``, and with
    ``mean_logits`` the sums over the same tokens of the mean logit over the vocabulary (TRL's ``logits/*``
    metrics; detached), else None."""

    sums: torch.Tensor
    counts: torch.Tensor
    logit_sums: torch.Tensor | None = None


def completion_logps(model: torch.nn.Module, batch: Batch, *, mean_logits: bool = False) -> CompletionLogps:
    """Sum of ``log π(token | prefix)`` over the scored completion tokens of each row, and their count.

    Logits are upcast to at least float32 before the log-softmax. Each field is a ``2B`` tensor; split it with
    ``.chunk(2)`` into chosen and rejected.
    """
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
    logits = logits[:, :-1].to(torch.promote_types(logits.dtype, torch.float32))
    targets = batch.input_ids[:, 1:]
    mask = batch.completion_mask[:, 1:]
    zero = torch.zeros((), dtype=logits.dtype, device=logits.device)
    # log_softmax gathered at the targets, without materialising the full log-softmax tensor.
    token_logps = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    sums = torch.where(mask, token_logps, zero).sum(-1)
    logit_sums = None
    if mean_logits:
        with torch.no_grad():
            logit_sums = torch.where(mask, logits.mean(-1), zero).sum(-1)
    return CompletionLogps(sums, mask.sum(-1), logit_sums)
