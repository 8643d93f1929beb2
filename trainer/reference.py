"""Reference log-probs of preference pairs, computed once: DPO's reference term without a second model in training.

One implementation for both callers: ``poet train --precompute-ref`` (before training) and ``poet prepare/score
--ref-model`` (in the pipeline, stored as the ``ref_chosen_logps``/``ref_rejected_logps`` columns). Each batch
goes through :func:`trainer.logps.completion_logps`: chosen and rejected rows in one forward pass, right-padded,
summed over the scored completion tokens.

Determinism: a row's value depends on the batch it was padded in (kernels reduce in shape-dependent order), so
the batches are a pure function of the pairs given: :func:`length_grouped_batches` sorts them by length and cuts
by a token budget. The pipeline calls :meth:`ReferenceScorer.score` on one fixed chunk of a file at a time, so
the stored values never depend on how a runner bundled the chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from poet.trainer.data import Pairs, Ragged, collate
from poet.trainer.logps import completion_logps
from poet.trainer.model import load_reference
from poet.transforms.reference import ReferenceModel


def length_grouped_batches(lengths: np.ndarray, max_tokens: int) -> list[np.ndarray]:
    """Indices of ``lengths`` sorted by length (stable), cut so that each batch's padded size, two rows per
    pair times its longest sequence, stays within ``max_tokens`` (a longer pair goes alone)."""
    order = np.argsort(lengths, kind="stable")
    batches, start = [], 0
    for end in range(1, len(order) + 1):
        if end - start > 1 and 2 * (end - start) * lengths[order[end - 1]] > max_tokens:
            batches.append(order[start : end - 1])
            start = end - 1
    if start < len(order):
        batches.append(order[start:])
    return batches


def iter_reference_logps(
    model: torch.nn.Module, pairs: Pairs, batches: Sequence[np.ndarray], *, poet: bool, pad_id: int,
    device: torch.device, progress: Callable[[int], object] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:  # fmt: skip
    """``(indices, chosen sums, rejected sums)`` per batch, float64; ``progress(n)`` after each batch of ``n``."""
    with torch.no_grad():
        for indices in batches:
            sums = completion_logps(model, collate(pairs, indices, poet, pad_id).to(device)).sums
            chosen, rejected = sums.double().cpu().numpy().reshape(2, -1)
            if progress is not None:
                progress(len(indices))
            yield indices, chosen, rejected


class ReferenceScorer:
    """A reference model loaded once (on the GPU when there is one), scoring lists of tokenized pairs."""

    def __init__(self, spec: ReferenceModel):
        on_gpu = torch.cuda.is_available()
        self.device = torch.device("cuda" if on_gpu else "cpu")
        self.dtype = spec.resolved_dtype(on_gpu)
        self.model = load_reference(spec.name, self.dtype, spec.gguf_file, self.device)
        config = self.model.config
        self.pad_id = next((t for t in (config.pad_token_id, config.eos_token_id) if isinstance(t, int)), 0)
        self.batch_tokens = spec.batch_tokens
        self.used = f"{self.device.type}/{self.dtype}"  # what ran, for the card

    def score(self, prompts: Sequence[Sequence[int]], chosen: Sequence[Sequence[int]],
              rejected: Sequence[Sequence[int]]) -> np.ndarray:
        """``(n, 2)`` float64 sums of the completion log-probs of each pair, chosen then rejected."""
        pairs = Pairs([str(i) for i in range(len(prompts))], *(Ragged.from_lists(c) for c in (prompts, chosen, rejected)))
        out = np.zeros((len(pairs), 2))
        batches = length_grouped_batches(pairs.sequence_lengths(), self.batch_tokens)
        for indices, chosen_sums, rejected_sums in iter_reference_logps(
            self.model, pairs, batches, poet=False, pad_id=self.pad_id, device=self.device
        ):
            out[indices, 0], out[indices, 1] = chosen_sums, rejected_sums
        return out
