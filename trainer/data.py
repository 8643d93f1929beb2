"""Preference pairs for training: loading and checking a split, the batch plan, and collation with dynamic padding.

A split is held as three ragged token arrays (prompt, chosen, rejected) plus optional precomputed reference
log-probs. Every batch of ``B`` pairs becomes one ``2B``-row tensor, the ``B`` chosen sequences
(prompt + chosen completion) followed by the ``B`` rejected ones, right-padded to the longest row, so policy
and reference each score a batch in a single forward pass.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from poet.trainer.logps import Batch
from poet.transforms import contract
from poet.transforms.errors import UserError
from poet.transforms.poet_rule import poet_length

ID_COLUMNS = contract.TRAINER_COLUMNS  # prompt, chosen and rejected token ids, in that order


@dataclass(frozen=True)
class Ragged:
    """Variable-length token id sequences, stored as one flat int32 array plus offsets (row ``i`` is
    ``values[offsets[i]:offsets[i + 1]]``)."""

    values: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_arrow(cls, column: pa.ChunkedArray) -> Ragged:
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        values = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
        return cls(values, np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]))

    @classmethod
    def from_lists(cls, rows) -> Ragged:
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        values = np.concatenate([np.asarray(r, dtype=np.int32) for r in rows]) if len(rows) else np.zeros(0, np.int32)
        return cls(values, np.concatenate([[0], np.cumsum(lengths)]))

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def take(self, indices: np.ndarray) -> Ragged:
        return Ragged.from_lists([self[i] for i in indices])


@dataclass(frozen=True)
class Pairs:
    """The pairs of one split. ``ref_logps`` is ``(chosen, rejected)`` summed reference log-probs, or None."""

    ids: list[str]
    prompt: Ragged
    chosen: Ragged
    rejected: Ragged
    ref_logps: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def sequence_lengths(self) -> np.ndarray:
        """Length of the longer of the two forwarded sequences (prompt + completion) of each pair."""
        return self.prompt.lengths + np.maximum(self.chosen.lengths, self.rejected.lengths)

    def take(self, indices: np.ndarray) -> Pairs:
        ref = None if self.ref_logps is None else (self.ref_logps[0][indices], self.ref_logps[1][indices])
        return Pairs(
            [self.ids[i] for i in indices],
            self.prompt.take(indices),
            self.chosen.take(indices),
            self.rejected.take(indices),
            ref,
        )

    def with_ref_logps(self, chosen: np.ndarray, rejected: np.ndarray) -> Pairs:
        return Pairs(self.ids, self.prompt, self.chosen, self.rejected, (chosen, rejected))


def _empty_split(data: str, split: str) -> UserError:
    return UserError(f"split {split!r} of {data} is empty: prepare it with some pairs, or pick another split")


def _load_dataset(data: str, split: str) -> datasets.Dataset:
    """One split through ``datasets``. A local folder gets a cache of its own, dropped once read: ``datasets``
    keys its cache by the files' names and times, so a folder prepared again (labels fixed, same lengths) could
    otherwise be read from the old cache. A Hub repo's cache is keyed by its commit, so it is kept."""
    try:
        if not Path(data).expanduser().is_dir():
            return datasets.load_dataset(data, split=split)
        with tempfile.TemporaryDirectory(prefix="poet-train-data-") as cache:
            return datasets.load_dataset(str(Path(data).expanduser()), split=split, cache_dir=cache,
                                         keep_in_memory=True)
    except (OSError, ValueError, datasets.exceptions.DatasetGenerationError) as err:
        if "corresponds to no data" in str(err):  # how `datasets` reports a split whose shards have no rows
            raise _empty_split(data, split) from None
        raise UserError(f"cannot load split {split!r} of {data}: {err}") from None


def load_pairs(data: str, split: str) -> Pairs:
    """Load one split of a prepared folder or Hub dataset repo id, checking the columns the trainer needs and,
    before the first step, the values: a bad one would stop the run mid-way or train on nonsense."""
    dataset = _load_dataset(data, split)
    missing = [c for c in ID_COLUMNS if c not in dataset.column_names]
    if missing:
        raise UserError(
            f"split {split!r} of {data} lacks column(s) {', '.join(missing)} "
            f"(it has {', '.join(dataset.column_names)}): "
            f"train on the output of `poet prepare`, or on any dataset with {', '.join(ID_COLUMNS)}"
        )
    if len(dataset) == 0:
        raise _empty_split(data, split)
    where = f"split {split!r} of {data}"
    wanted = [*ID_COLUMNS, *(c for c in (contract.ID.name, *contract.REF_COLUMN_NAMES) if c in dataset.column_names)]
    table = dataset.select_columns(wanted).with_format("arrow")[:]
    for name in table.column_names:
        if nulls := table.column(name).null_count:
            raise UserError(f"{where}: column {name} has {nulls} null value(s); drop those rows")
    has_ids = contract.ID.name in table.column_names
    ids = table.column(contract.ID.name).to_pylist() if has_ids else [str(i) for i in range(len(table))]
    ref = None
    if all(c in table.column_names for c in contract.REF_COLUMN_NAMES):
        ref = tuple(table.column(c).to_numpy().astype(np.float64) for c in contract.REF_COLUMN_NAMES)
    for name in ID_COLUMNS:  # before the int32 arrays are made: an id beyond them would wrap around
        bounds = pc.min_max(pc.list_flatten(table.column(name))).as_py()
        for bad in (b for b in (bounds["min"], bounds["max"]) if b is not None and not 0 <= b <= _LARGEST_ID):
            raise UserError(f"{where}: column {name} holds token id {bad}, which no vocabulary has: prepare the "
                            "data again with `poet prepare`")
    pairs = Pairs(ids, *(Ragged.from_arrow(table.column(c)) for c in ID_COLUMNS), ref)
    _check_values(pairs, where)
    return pairs


_LARGEST_ID = np.iinfo(np.int32).max  # the vocabulary's own bound is checked against the model (model.check_fits)


def _check_values(pairs: Pairs, where: str) -> None:
    """Prompts and completions are never empty (TRL's rule too: with no prompt token, the first completion
    token is never scored); reference log-probs are finite and at most 0."""
    for name, ragged in zip(ID_COLUMNS, (pairs.prompt, pairs.chosen, pairs.rejected)):
        empty = np.flatnonzero(ragged.lengths == 0)
        if len(empty):
            raise UserError(f"{where}: {len(empty)} pair(s) have an empty {name} (first: id {pairs.ids[empty[0]]!r}); "
                            "every prompt and completion needs a token: drop them before training")
    for name, values in zip(contract.REF_COLUMN_NAMES, pairs.ref_logps or ()):
        bad = np.flatnonzero(~np.isfinite(values) | (values > 0))
        if len(bad):
            raise UserError(f"{where}: column {name} holds {float(values[bad[0]])!r} (id {pairs.ids[bad[0]]!r}), which is "
                            "no log-probability (finite, at most 0): score the folder again with `poet score`")


@dataclass(frozen=True)
class BatchPlan:
    """Which pairs go into which optimizer step, rank and micro-batch; a pure function of the seed and epoch.

    A *global batch* (one optimizer step) holds ``batch_size × accumulation × world_size`` pairs; it is cut into
    consecutive micro-batches of ``batch_size`` pairs, and rank ``r`` gets micro-batches ``r, r + W, …``. The
    last incomplete global batch of an epoch is dropped, so every step averages the same number of pairs.
    With ``group_by_length``, each window of 64 global batches of a shuffled epoch is sorted by sequence length
    before being cut, and the batches are then shuffled again: pairs of similar length share a micro-batch.
    """

    lengths: np.ndarray
    batch_size: int
    accumulation: int
    world_size: int
    seed: int
    group_by_length: bool

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.accumulation * self.world_size

    @property
    def steps_per_epoch(self) -> int:
        return len(self.lengths) // self.global_batch

    def epoch(self, epoch: int) -> np.ndarray:
        """Pair indices of every step of ``epoch``, shaped ``(steps, accumulation, world_size, batch_size)``."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths))
        usable = self.steps_per_epoch * self.global_batch
        if self.group_by_length:
            window = 64 * self.global_batch
            windows = np.split(order, range(window, len(order), window))
            order = np.concatenate([chunk[np.argsort(-self.lengths[chunk], kind="stable")] for chunk in windows])
            steps = order[:usable].reshape(self.steps_per_epoch, self.global_batch)
            order = steps[rng.permutation(self.steps_per_epoch)].ravel()
        return order[:usable].reshape(self.steps_per_epoch, self.accumulation, self.world_size, self.batch_size)

    def pairs_used(self, first_step: int, last_step: int) -> np.ndarray:
        """Sorted indices of the pairs that steps ``[first_step, last_step)`` train on (across epochs)."""
        used, step = [], first_step
        while step < last_step:
            epoch, position = divmod(step, self.steps_per_epoch)
            end = min(self.steps_per_epoch, position + last_step - step)
            used.append(self.epoch(epoch)[position:end].ravel())
            step += end - position
        return np.unique(np.concatenate(used)) if used else np.zeros(0, np.int64)


def sharded_batches(lengths: np.ndarray, batch_size: int, rank: int, world_size: int,
                    among: np.ndarray | None = None) -> list[np.ndarray]:
    """Every pair (or every pair of ``among``) exactly once across ranks (evaluation, reference log-probs):
    sorted by length, so batches carry little padding, dealt to the ranks in turn, cut into ``batch_size``."""
    among = np.arange(len(lengths)) if among is None else among
    shard = among[np.argsort(lengths[among], kind="stable")][rank::world_size]
    return [shard[i : i + batch_size] for i in range(0, len(shard), batch_size)]


def collate(pairs: Pairs, indices: np.ndarray, poet: bool, pad_id: int) -> Batch:
    """Pad the pairs ``indices`` into one ``2B``-row batch (chosen rows first); see :class:`trainer.logps.Batch`."""
    rows = [(pairs.prompt[i], pairs.chosen[i]) for i in indices] + [(pairs.prompt[i], pairs.rejected[i]) for i in indices]
    # completion tokens scored: all of them, or with ``poet`` the POET length of the pair (the rule as a mask)
    shared = [poet_length(len(pairs.chosen[i]), len(pairs.rejected[i])) for i in indices]
    scored = shared * 2 if poet else [len(completion) for _, completion in rows]
    width = max(len(prompt) + len(completion) for prompt, completion in rows)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)
    completion_mask = np.zeros((len(rows), width), dtype=bool)
    for row, ((prompt, completion), n_scored) in enumerate(zip(rows, scored)):
        p, c = len(prompt), len(completion)
        input_ids[row, : p + c] = np.concatenate([prompt, completion])
        attention_mask[row, : p + c] = 1
        completion_mask[row, p : p + n_scored] = True
    ref_logps = None
    if pairs.ref_logps is not None:
        ref_logps = torch.from_numpy(np.concatenate([pairs.ref_logps[0][indices], pairs.ref_logps[1][indices]]))
    tensors = (torch.from_numpy(a) for a in (input_ids, attention_mask, completion_mask))
    return Batch(*tensors, ref_logps)
