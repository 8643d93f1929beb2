"""The losses ``poet train`` knows: name → loss function, how it reduces log-probs, whether it needs a reference
model, and its hyper-parameters' defaults with where each comes from. The CLI, the config's validation and the
trainer read this table; adding a loss is one entry here, its function in :mod:`trainer.losses`, and its test.

Torch-free, so ``poet --help`` stays fast: the function is looked up in :mod:`trainer.losses` when called.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Loss:
    name: str
    function: str  # its name in trainer.losses; called as f(chosen, rejected, [ref_chosen, ref_rejected,] **hparams)
    reduction: str  # "sum": summed completion log-probs (DPO); "mean": length-averaged (SimPO, AlphaPO)
    needs_reference: bool  # takes the frozen reference model's log-probs
    defaults: dict[str, float] = field(default_factory=dict)  # hyper-parameter -> default; the function's own
    sources: str = ""  # where the defaults come from, for --help

    def __call__(self, *logps, **hyperparameters):
        from poet.trainer import losses

        return getattr(losses, self.function)(*logps, **hyperparameters)


LOSSES: dict[str, Loss] = {loss.name: loss for loss in (
    Loss("dpo", "dpo_loss", "sum", needs_reference=True, defaults={"beta": 0.1, "label_smoothing": 0.0},
         sources="β 0.1 is TRL 1.x DPOConfig's default; ε 0 is plain DPO (no label smoothing)"),
    Loss("simpo", "simpo_loss", "mean", needs_reference=False,
         defaults={"beta": 2.0, "gamma": 0.5, "label_smoothing": 0.0},
         sources="β 2.0 as in the SimPO repository's training configs (e.g. mistral-7b-base-simpo.yaml); γ 0.5 is "
                 "TRL 1.x CPOConfig's simpo_gamma default (SimPO's own configs tune γ per model, e.g. 1.6 there)"),
    Loss("alphapo", "alphapo_loss", "mean", needs_reference=False,
         defaults={"alpha": 0.25, "beta": 2.5, "gamma": 0.5},
         sources="NOT the AlphaPO paper's settings: the paper (arXiv 2501.03884) tunes α, β and γ per model and "
                 "its values could not be established here; γ 0.5 is TRL's generic SimPO default (CPOConfig "
                 "simpo_gamma), β 2.5 and α 0.25 are unverified starting points (TRL's alpha default is 0, i.e. "
                 "SimPO); tune all three"),
)}
