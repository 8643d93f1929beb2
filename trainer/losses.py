"""The three Direct Alignment Algorithms of the POET and AlphaPO papers, as pure functions.

Each takes per-example sequence log-probabilities of the chosen and rejected completions (1-D tensors of the
same shape) and returns per-example ``(losses, chosen_rewards, rejected_rewards)``; the trainer averages the
losses. Rewards are detached: they are for logging (``rewards/*`` metrics), not for the gradient.

The input convention follows TRL: DPO takes *summed* completion log-probs (``DPOTrainer``), SimPO and AlphaPO
take *length-averaged* ones (``CPOTrainer`` with ``loss_type="simpo"``, which also implements AlphaPO through
its ``alpha`` parameter). Hyper-parameters are plain Python floats; they are validated by
:class:`trainer.config.TrainConfig`, not here. :mod:`trainer.registry` names each function with its
log-prob reduction, its need for a reference model and its defaults.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from poet.trainer.registry import LOSSES

# Each function's defaults are its registry entry's (trainer.registry), where their sources are stated.
_DPO, _SIMPO, _ALPHAPO = (LOSSES[name].defaults for name in ("dpo", "simpo", "alphapo"))


def _logistic_loss(logits: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """``-(1 - ε)·log σ(z) - ε·log σ(-z)``: the Bradley-Terry loss with conservative label smoothing (cDPO)."""
    return -(1.0 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)


def dpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = _DPO["beta"],
    label_smoothing: float = _DPO["label_smoothing"],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Direct Preference Optimization (arXiv:2305.18290), with cDPO label smoothing.

    Inputs are *summed* completion log-probabilities ``log π(y|x)`` of the policy and of the frozen reference:

        Δ      = (log π(y_c|x) - log π_ref(y_c|x)) - (log π(y_r|x) - log π_ref(y_r|x))
        loss   = -(1 - ε)·log σ(β·Δ) - ε·log σ(-β·Δ)
        reward = β·(log π(y|x) - log π_ref(y|x))

    ``ε = label_smoothing`` is the assumed probability that a preference label is flipped (0 gives plain DPO).
    """
    chosen_logratios = chosen_logps - ref_chosen_logps
    rejected_logratios = rejected_logps - ref_rejected_logps
    losses = _logistic_loss(beta * (chosen_logratios - rejected_logratios), label_smoothing)
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


def simpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    beta: float = _SIMPO["beta"],
    gamma: float = _SIMPO["gamma"],
    label_smoothing: float = _SIMPO["label_smoothing"],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Simple Preference Optimization (arXiv:2405.14734): reference-free, length-normalised, with a margin.

    Inputs are *length-averaged* completion log-probabilities ``ℓ = log π(y|x) / |y|``:

        z      = β·(ℓ_c - ℓ_r) - γ
        loss   = -(1 - ε)·log σ(z) - ε·log σ(-z)
        reward = β·ℓ

    ``γ`` is the target reward margin; the SimPO repository's ``gamma_beta_ratio`` is ``γ / β``.
    """
    losses = _logistic_loss(beta * (chosen_logps - rejected_logps) - gamma, label_smoothing)
    return losses, beta * chosen_logps.detach(), beta * rejected_logps.detach()


def _exprel(x: torch.Tensor) -> torch.Tensor:
    """``(e^x - 1) / x``, continued by its limit 1 at ``x = 0``; accurate near 0 and never NaN (0 at ``x = -inf``)."""
    zero = x == 0
    safe = torch.where(zero, torch.ones_like(x), x)  # keeps the unused branch, and its gradient, finite at 0
    return torch.where(zero, torch.ones_like(x), torch.expm1(safe) / safe)


def _alphapo_margin(
    chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, alpha: float, beta: float
) -> torch.Tensor:
    r"""``r_c - r_r`` for the AlphaPO reward ``r(ℓ) = (β/α)·(1 - e^{-α·ℓ})``, computed without cancellation.

    Factoring the larger exponential out of ``(β/α)·(e^{-α·ℓ_r} - e^{-α·ℓ_c})`` gives, with ``Δ = ℓ_c - ℓ_r``:

        r_c - r_r = β·Δ · e^m · exprel(-|α·Δ|),    m = max(-α·ℓ_c, -α·ℓ_r),  exprel(x) = (e^x - 1)/x

    There is no division by α: ``α = 0`` gives SimPO's ``β·Δ`` exactly and tiny ``|α|`` loses no precision;
    every factor is exact to rounding, and ``exprel(-|α·Δ|)`` lies in ``(0, 1]``. Only ``e^m`` can overflow,
    when the rewards themselves exceed the dtype's range (``|α·ℓ| > 88`` in float32); it is then capped at
    the largest finite value, so the margin saturates to ±inf, or is 0 for ``Δ = 0``, but is never NaN.
    """
    delta = chosen_logps - rejected_logps
    m = torch.maximum(-alpha * chosen_logps, -alpha * rejected_logps)
    scale = torch.exp(m).clamp(max=torch.finfo(m.dtype).max) * _exprel(-(alpha * delta).abs())
    return beta * delta * scale


def alphapo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    alpha: float = _ALPHAPO["alpha"],
    beta: float = _ALPHAPO["beta"],
    gamma: float = _ALPHAPO["gamma"],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""AlphaPO (arXiv:2501.03884): SimPO with an α-shaped reward.

    Inputs are *length-averaged* completion log-probabilities ``ℓ = log π(y|x) / |y|``:

        reward = (β/α)·(1 - e^{-α·ℓ})        (= (β/α)·(1 - p^{-α}) with p = e^ℓ; = β·ℓ at α = 0)
        loss   = -log σ(r_c - r_r - γ)

    ``α`` may have either sign (the paper studies both); ``α = 0`` gives exactly :func:`simpo_loss` (without
    label smoothing). The margin is computed stably (see :func:`_alphapo_margin`): the loss is never NaN for
    finite inputs, and is exact to rounding for any realistic log-probability and any α, however small.
    """
    losses = -F.logsigmoid(_alphapo_margin(chosen_logps, rejected_logps, alpha, beta) - gamma)
    # r(ℓ) = β·ℓ·exprel(-α·ℓ), the same reward without the division by α.
    chosen_rewards = beta * chosen_logps.detach() * _exprel(-alpha * chosen_logps.detach())
    rejected_rewards = beta * rejected_logps.detach() * _exprel(-alpha * rejected_logps.detach())
    return losses, chosen_rewards, rejected_rewards
