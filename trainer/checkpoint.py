"""Checkpoints that resume bit-for-bit: ``save_pretrained`` model and tokenizer, optimizer, scheduler, RNG states
(one file per rank) and the trainer state (step, data position, partial metric window, run configuration).

A checkpoint is written to ``checkpoint-N.tmp`` and renamed when complete, so an interrupted save never
replaces or masquerades as a good checkpoint.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from poet.transforms.errors import UserError

STATE_FILE = "trainer_state.json"


def _rng_state() -> dict:
    numpy_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state((state["numpy"][0], np.array(state["numpy"][1], dtype=np.uint32), *state["numpy"][2:]))
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, accelerator, model, tokenizer, optimizer, scheduler, state: dict) -> None:
    """Write a checkpoint at ``path``, collectively on all ranks."""
    staging = path.with_name(path.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.unwrap_model(model).save_pretrained(
        staging, is_main_process=accelerator.is_main_process, save_function=accelerator.save
    )
    if accelerator.is_main_process:
        tokenizer.save_pretrained(staging)
        torch.save(optimizer.state_dict(), staging / "optimizer.pt")
        torch.save(scheduler.state_dict(), staging / "scheduler.pt")
        (staging / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
    torch.save(_rng_state(), staging / f"rng_state_{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(path, ignore_errors=True)
        staging.rename(path)
    accelerator.wait_for_everyone()


def read_state(path: Path) -> dict:
    """The trainer state of a checkpoint folder, or a clear error if it is not one."""
    try:
        return json.loads((path / STATE_FILE).read_text())
    except (OSError, ValueError):
        raise UserError(f"{path} is not a checkpoint (no readable {STATE_FILE}): pass OUT/checkpoint-N") from None


def load_checkpoint(path: Path, accelerator, optimizer, scheduler) -> None:
    """Restore optimizer, scheduler and this rank's RNG states (the model is loaded with ``from_pretrained``)."""
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=accelerator.device, weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    _set_rng_state(torch.load(path / f"rng_state_{accelerator.process_index}.pt", weights_only=True))
