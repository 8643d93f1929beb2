"""The loss registry: one entry names a loss's function, log-prob reduction, reference need and defaults, and the
CLI, the config's validation and the trainer follow it with no other edit."""

from __future__ import annotations

import argparse
import inspect

import pytest
import torch

from poet.trainer import losses
from poet.trainer.config import TrainConfig
from poet.trainer.registry import LOSSES, Loss
from poet.trainer.train import preference_loss
from poet.transforms.errors import UserError


def parse(*args):
    from poet.trainer.cli import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(["--data", "d", "--model", "m", "--output-dir", "o", *args]))


@pytest.mark.parametrize("name", list(LOSSES))
def test_each_entry_matches_its_function(name):
    loss = LOSSES[name]
    signature = inspect.signature(getattr(losses, loss.function))
    defaults = {k: p.default for k, p in signature.parameters.items() if p.default is not inspect.Parameter.empty}
    assert defaults == loss.defaults and loss.sources
    assert ("ref_chosen_logps" in signature.parameters) == loss.needs_reference
    assert loss.reduction in ("sum", "mean")


def test_the_trainer_reduces_and_references_as_the_entry_says():
    logps, counts = torch.tensor([-4.0, -9.0, -6.0, -2.0]), torch.tensor([2.0, 3.0, 3.0, 1.0])
    ref = torch.tensor([-5.0, -8.0, -6.0, -3.0])
    dpo = preference_loss(TrainConfig("d", "m", "o", loss="dpo"), logps, counts, ref)
    expected = losses.dpo_loss(logps[:2], logps[2:], ref[:2], ref[2:], beta=0.1, label_smoothing=0.0)
    assert all(torch.equal(a, b) for a, b in zip(dpo[:3], expected))
    simpo = preference_loss(TrainConfig("d", "m", "o", loss="simpo", gamma=0.3), logps, counts, None)
    mean = logps / counts
    assert torch.equal(simpo[3], mean[:2]) and torch.equal(simpo[0], losses.simpo_loss(mean[:2], mean[2:], gamma=0.3)[0])


def test_a_new_entry_is_all_it_takes(monkeypatch):
    """A loss registered under a new name (here SimPO's function on summed log-probs) is offered by the CLI, gets its
    defaults and validation from the entry, and is trained with its reduction."""
    monkeypatch.setitem(LOSSES, "summed_simpo", Loss("summed_simpo", "simpo_loss", "sum", needs_reference=False,
                                                      defaults={"beta": 1.0, "gamma": 0.0}, sources="a test"))
    config = parse("--loss", "summed_simpo")
    assert (config.beta, config.gamma, config.label_smoothing, config.alpha) == (1.0, 0.0, None, None)
    with pytest.raises(UserError, match="--label-smoothing does not apply to --loss summed_simpo"):
        parse("--loss", "summed_simpo", "--label-smoothing", "0.1")
    with pytest.raises(UserError, match="--precompute-ref only applies"):
        parse("--loss", "summed_simpo", "--precompute-ref")
    logps, counts = torch.tensor([-4.0, -9.0, -6.0, -2.0]), torch.tensor([2.0, 3.0, 3.0, 1.0])
    out = preference_loss(config, logps, counts, None)
    assert torch.equal(out[0], losses.simpo_loss(logps[:2], logps[2:], beta=1.0, gamma=0.0)[0])


def test_a_length_averaged_loss_with_a_reference_averages_the_reference_too(monkeypatch):
    monkeypatch.setitem(LOSSES, "mean_dpo", Loss("mean_dpo", "dpo_loss", "mean", needs_reference=True,
                                                  defaults={"beta": 0.1, "label_smoothing": 0.0}, sources="a test"))
    logps, counts = torch.tensor([-4.0, -9.0, -6.0, -2.0]), torch.tensor([2.0, 3.0, 3.0, 1.0])
    ref = torch.tensor([-5.0, -8.0, -6.0, -3.0])
    out = preference_loss(TrainConfig("d", "m", "o", loss="mean_dpo"), logps, counts, ref)
    mean, ref_mean = logps / counts, ref / counts
    assert torch.equal(out[0], losses.dpo_loss(mean[:2], mean[2:], ref_mean[:2], ref_mean[2:])[0])


def test_help_says_where_defaults_come_from(capsys):
    from poet.pipeline.commands.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "NOT the AlphaPO paper's settings" in text and "DPOConfig" in text
    assert "(default: None)" not in text and "(default: False)" not in text
