"""The DPO, SimPO and AlphaPO losses against independent float64 computations of their formulas, against TRL's
implementation, at the α → 0 limit, and at extreme inputs."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from poet.trainer.losses import alphapo_loss, dpo_loss, simpo_loss


# -- independent references: numpy float64, the formulas as written in the issue ---------------------------
def log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def ref_dpo(pc, pr, rc, rr, beta, eps):
    delta = (pc - rc) - (pr - rr)
    loss = -(1 - eps) * log_sigmoid(beta * delta) - eps * log_sigmoid(-beta * delta)
    return loss, beta * (pc - rc), beta * (pr - rr)


def ref_simpo(lc, lr, beta, gamma, eps):
    z = beta * (lc - lr) - gamma
    return -(1 - eps) * log_sigmoid(z) - eps * log_sigmoid(-z), beta * lc, beta * lr


def ref_alphapo(lc, lr, alpha, beta, gamma):
    def reward(l):
        return -(beta / alpha) * np.expm1(-alpha * l)  # (β/α)·(1 - e^{-αℓ}), without cancellation

    rc, rr = reward(lc), reward(lr)
    return -log_sigmoid(rc - rr - gamma), rc, rr


def t(x, dtype=torch.float64):
    return torch.tensor(x, dtype=dtype)


def check(actual, expected, rtol=1e-12, atol=1e-12):
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a.double().numpy(), e, rtol=rtol, atol=atol)


SEEDS = [0, 1, 2]


def summed_logps(rng, n=64):
    """Summed completion log-probs of a range of lengths, and nearby reference values."""
    pc, pr = -rng.uniform(1, 400, n), -rng.uniform(1, 400, n)
    return pc, pr, pc + rng.normal(0, 5, n), pr + rng.normal(0, 5, n)


def mean_logps(rng, n=64):
    return -rng.uniform(0.01, 8, n), -rng.uniform(0.01, 8, n)


# -- formulas -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("beta,eps", [(0.1, 0.0), (0.5, 0.2), (0.01, 0.1)])
def test_dpo_matches_formula(seed, beta, eps):
    pc, pr, rc, rr = summed_logps(np.random.default_rng(seed))
    check(dpo_loss(t(pc), t(pr), t(rc), t(rr), beta=beta, label_smoothing=eps), ref_dpo(pc, pr, rc, rr, beta, eps))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("beta,gamma,eps", [(2.0, 0.5, 0.0), (10.0, 3.0, 0.0), (2.5, 1.375, 0.3)])
def test_simpo_matches_formula(seed, beta, gamma, eps):
    lc, lr = mean_logps(np.random.default_rng(seed))
    check(simpo_loss(t(lc), t(lr), beta=beta, gamma=gamma, label_smoothing=eps), ref_simpo(lc, lr, beta, gamma, eps))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("alpha,beta,gamma", [(0.25, 2.5, 0.5), (1.0, 10.0, 1.0), (-0.5, 2.5, 0.5), (-2.0, 1.0, 0.0)])
def test_alphapo_matches_formula(seed, alpha, beta, gamma):
    lc, lr = mean_logps(np.random.default_rng(seed))
    check(alphapo_loss(t(lc), t(lr), alpha=alpha, beta=beta, gamma=gamma), ref_alphapo(lc, lr, alpha, beta, gamma))


def test_defaults_are_the_issue_signatures():
    lc, lr = mean_logps(np.random.default_rng(5))
    pc, pr, rc, rr = summed_logps(np.random.default_rng(5))
    check(dpo_loss(t(pc), t(pr), t(rc), t(rr)), ref_dpo(pc, pr, rc, rr, 0.1, 0.0))
    check(simpo_loss(t(lc), t(lr)), ref_simpo(lc, lr, 2.0, 0.5, 0.0))
    check(alphapo_loss(t(lc), t(lr)), ref_alphapo(lc, lr, 0.25, 2.5, 0.5))


def test_rewards_are_detached_and_losses_differentiable():
    lc, lr = (t(x).requires_grad_() for x in mean_logps(np.random.default_rng(0), 8))
    outputs = (simpo_loss(lc, lr), alphapo_loss(lc, lr), dpo_loss(lc, lr, lc.detach(), lr.detach()))
    for losses, chosen, rejected in outputs:
        assert losses.requires_grad and not chosen.requires_grad and not rejected.requires_grad


# -- against TRL 1.16 (CPOTrainer.cpo_loss: loss_type="simpo", with alpha for AlphaPO) ---------------------
@pytest.fixture(scope="module")
def trl_cpo_loss(monkeypatch_module):
    monkeypatch_module.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    def loss(lc, lr, alpha, beta, gamma, eps):
        self = types.SimpleNamespace(
            alpha=alpha, beta=beta, loss_type="simpo", simpo_gamma=gamma, label_smoothing=eps,
            accelerator=types.SimpleNamespace(device="cpu"),
        )  # fmt: skip
        return CPOTrainer.cpo_loss(self, lc, lr)

    return loss


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.mark.parametrize("beta,gamma,eps", [(2.0, 0.5, 0.0), (2.5, 1.0, 0.1)])
def test_simpo_matches_trl(trl_cpo_loss, beta, gamma, eps):
    lc, lr = (t(x) for x in mean_logps(np.random.default_rng(7)))
    for ours, theirs in zip(simpo_loss(lc, lr, beta, gamma, eps), trl_cpo_loss(lc, lr, 0.0, beta, gamma, eps)):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.25, 1.0, -0.5])
def test_alphapo_matches_trl(trl_cpo_loss, alpha):
    lc, lr = (t(x) for x in mean_logps(np.random.default_rng(8)))
    for ours, theirs in zip(alphapo_loss(lc, lr, alpha, 2.5, 0.5), trl_cpo_loss(lc, lr, alpha, 2.5, 0.5, 0.0)):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)


# -- AlphaPO: α → 0 and numerical stability -------------------------------------------------------------------
def test_alphapo_at_alpha_zero_is_simpo_exactly():
    lc, lr = (t(x) for x in mean_logps(np.random.default_rng(3)))
    for a, b in zip(alphapo_loss(lc, lr, alpha=0.0, beta=2.5, gamma=0.5), simpo_loss(lc, lr, beta=2.5, gamma=0.5)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("sign", [1, -1])
def test_alphapo_converges_to_simpo_linearly_in_alpha(sign):
    lc, lr = (t(x) for x in mean_logps(np.random.default_rng(4)))
    simpo = simpo_loss(lc, lr, beta=2.5, gamma=0.5)
    # r = β·ℓ - β·α·ℓ²/2 + O(α²): the gap is about β·|α|·ℓ²/2 at most (ℓ ≥ -8 here); the loss is 1-Lipschitz.
    for alpha in (1e-2, 1e-4, 1e-6, 1e-8, 1e-12):
        alphapo = alphapo_loss(lc, lr, alpha=sign * alpha, beta=2.5, gamma=0.5)
        bound = 2.5 * alpha * 64 + 1e-12
        for a, s in zip(alphapo, simpo):
            assert (a - s).abs().max().item() <= bound


def test_alphapo_small_alpha_keeps_float32_precision():
    """(1 - e^{-αℓ})/α computed naively in float32 loses most digits for tiny α; expm1 keeps them."""
    lc, lr = mean_logps(np.random.default_rng(6))
    for alpha in (1e-4, 1e-6, -1e-6):
        ours = alphapo_loss(t(lc, torch.float32), t(lr, torch.float32), alpha=alpha, beta=2.5, gamma=0.5)
        check(ours, ref_alphapo(lc, lr, alpha, 2.5, 0.5), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("alpha", [0.25, -0.5])
def test_alphapo_large_logps_in_float32_match_float64(alpha):
    """Mean log-probs of -50 to -300 (a diverging model): e^{-αℓ} reaches e^75, far beyond where TRL's
    ``exp(ℓ).pow(-α)`` underflows to 0 and turns the margin into inf - inf = NaN in float32."""
    rng = np.random.default_rng(9)
    lc, lr = -rng.uniform(50, 300, 64), -rng.uniform(50, 300, 64)
    lc[:4] = lr[:4]  # ties
    ours = alphapo_loss(t(lc, torch.float32), t(lr, torch.float32), alpha=alpha, beta=2.5, gamma=0.5)
    expected = ref_alphapo(lc, lr, alpha, 2.5, 0.5)
    np.testing.assert_allclose(ours[0].double().numpy(), expected[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("alpha", [0.25, -0.5, 1e-7])
def test_alphapo_gradient_matches_finite_differences_including_ties(alpha):
    lc, lr = mean_logps(np.random.default_rng(10), 6)
    lc[:2] = lr[:2]
    inputs = (t(lc).requires_grad_(), t(lr).requires_grad_())
    assert torch.autograd.gradcheck(lambda c, r: alphapo_loss(c, r, alpha=alpha)[0], inputs)


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    lc=finite, lr=finite, tie=st.booleans(),
    alpha=st.floats(min_value=-8, max_value=8).filter(lambda a: a != 0),
    beta=st.floats(min_value=1e-3, max_value=100), gamma=st.floats(min_value=-10, max_value=10),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)  # fmt: skip
def test_alphapo_is_never_nan_for_finite_inputs(lc, lr, tie, alpha, beta, gamma, dtype):
    lr = lc if tie else lr
    losses, chosen, rejected = alphapo_loss(t([lc], dtype), t([lr], dtype), alpha=alpha, beta=beta, gamma=gamma)
    assert not torch.isnan(losses).any()
    assert losses.item() >= 0
    if tie:  # equal rewards: the loss is exactly softplus(γ)
        assert math.isclose(losses.item(), math.log1p(math.exp(gamma)), rel_tol=1e-6)
