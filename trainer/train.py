"""The training loop: DPO, SimPO or AlphaPO on prepared pairs, on one process or several (``accelerate launch``).

Every optimizer step averages the loss over one global batch of pairs (see :class:`trainer.data.BatchPlan`):
each rank runs ``gradient_accumulation_steps`` micro-batches of its share, DDP averages the gradients, and the
metrics are summed over ranks before they are logged, so the numbers do not depend on how the batch is split.
"""

from __future__ import annotations

import functools
import gc
import json
import math
import shutil
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import gather_object, set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from poet.trainer.checkpoint import load_checkpoint, read_state, save_checkpoint
from poet.trainer.config import TrainConfig
from poet.trainer.data import BatchPlan, Pairs, collate, load_pairs, sharded_batches
from poet.trainer.logps import Batch, CompletionLogps, completion_logps
from poet.trainer.reference import iter_reference_logps
from poet.trainer.metrics import PAIR_METRICS, TOKEN_METRICS, MetricSums, MetricsLog
from poet.trainer.model import check_fits, disable_dropout, load_model, load_reference, load_tokenizer, pad_token_id
from poet.trainer.plots import plot_curves
from poet.trainer.registry import LOSSES
from poet.transforms.contract import REF_COLUMN_NAMES, STATS_FILE
from poet.transforms.errors import UserError
from poet.transforms.reference import ReferenceModel

METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "training_curves.png"


def preference_loss(config: TrainConfig, logps: torch.Tensor, counts: torch.Tensor, ref_logps: torch.Tensor | None):
    """Per-pair ``(losses, chosen_rewards, rejected_rewards, chosen_logps, rejected_logps)`` of a ``2B``-row batch,
    from summed completion log-probs and token counts. The returned log-probs are the ones the loss consumes:
    sums or length averages, as its registry entry says (as TRL logs ``logps/*``); reference log-probs (sums over
    the same tokens) are reduced the same way."""
    loss = LOSSES[config.loss]

    def reduce(summed: torch.Tensor) -> torch.Tensor:
        return summed if loss.reduction == "sum" else summed / counts

    chosen, rejected = reduce(logps).chunk(2)
    references = reduce(ref_logps.to(logps.dtype)).chunk(2) if loss.needs_reference else ()
    return (*loss(chosen, rejected, *references, **config.hyperparameters), chosen, rejected)


class PreferenceTrainer:
    """Holds the model, optimizer, schedule and data of one run; :meth:`train` runs it to the last step."""

    def __init__(self, config, accelerator, model, tokenizer, reference, train_pairs: Pairs, eval_pairs: Pairs | None):
        self.config = config
        self.accelerator = accelerator
        self.tokenizer = tokenizer
        self.reference = reference
        self.train_pairs = train_pairs
        self.eval_pairs = eval_pairs
        self.pad_id = pad_token_id(tokenizer)
        self.plan = BatchPlan(
            train_pairs.sequence_lengths(), config.batch_size, config.gradient_accumulation_steps,
            accelerator.num_processes, config.seed, config.group_by_length,
        )  # fmt: skip
        if self.plan.steps_per_epoch == 0:
            raise UserError(
                f"split {config.split!r} has {len(train_pairs)} pairs, fewer than one global batch of "
                f"{self.plan.global_batch} (batch size × accumulation steps × processes): lower --batch-size"
            )
        self.total_steps = config.max_steps or config.num_epochs * self.plan.steps_per_epoch
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        # as transformers' Trainer (TRL) builds it: warmup steps = ceil(ratio × total steps)
        self.scheduler = get_scheduler(config.lr_scheduler, optimizer, math.ceil(config.warmup_ratio * self.total_steps),
                                       self.total_steps)  # fmt: skip
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.log = MetricsLog(config.output_dir / METRICS_FILE, accelerator.is_main_process)
        self.step = 0
        self.window = MetricSums(accelerator.device)  # sums since the last logged step
        self.window_seconds = 0.0  # time spent in training steps since the last logged step
        self.run_totals = MetricSums(accelerator.device)  # sums over the steps this process ran
        self.tokens_before = 0  # non-padding tokens trained on before this process (a resumed run's), for num_tokens
        self.run_seconds = 0.0
        self.last_checkpoint: Path | None = None
        self._epoch_plan: tuple[int, np.ndarray] | None = None  # (epoch, its plan), computed once per epoch

    # -- one batch ------------------------------------------------------------------------------------------
    def _forward(self, model, batch: Batch) -> tuple[tuple, CompletionLogps]:
        """:func:`preference_loss`'s per-pair outputs, and the policy's completion log-probs (for the metrics)."""
        with self.accelerator.autocast():
            policy = completion_logps(model, batch, mean_logits=True)
            ref_logps = batch.ref_logps
            if LOSSES[self.config.loss].needs_reference and ref_logps is None:
                with torch.no_grad():
                    ref_logps = completion_logps(self.reference, batch).sums
        return preference_loss(self.config, policy.sums, policy.counts, ref_logps), policy

    def _train_step(self, step_indices: np.ndarray) -> MetricSums:
        """Forward and backward over this rank's micro-batches of one step; returns the step's sums over ranks."""
        micro_batches = step_indices[:, self.accelerator.process_index]
        sums = MetricSums(self.accelerator.device)
        for k, indices in enumerate(micro_batches):
            batch = collate(self.train_pairs, indices, self.config.poet, self.pad_id).to(self.accelerator.device)
            last = k == len(micro_batches) - 1
            with nullcontext() if last else self.accelerator.no_sync(self.model):
                outputs, policy = self._forward(self.model, batch)
                self.accelerator.backward(outputs[0].sum() / (len(indices) * len(micro_batches)))
            sums.add_batch(outputs, policy, batch.attention_mask)
        return sums.reduced(self.accelerator)

    def precompute_reference(self) -> None:
        """Score the pairs the remaining steps train on (and the eval split) once, then free the reference."""
        used = self.plan.pairs_used(self.step, self.total_steps)
        _say(f"computing reference log-probs of the {len(used)} training pairs this run uses, then freeing the "
             "reference model")  # fmt: skip
        score = functools.partial(_with_reference_logps, config=self.config, accelerator=self.accelerator,
                                  pad_id=self.pad_id)  # fmt: skip
        if self.train_pairs.ref_logps is None:
            self.train_pairs = score(self.train_pairs, used, self.reference, what=self.config.split)
        if self.eval_pairs is not None and self.eval_pairs.ref_logps is None:
            every = np.arange(len(self.eval_pairs))
            self.eval_pairs = score(self.eval_pairs, every, self.reference, what=self.config.eval_split)
        self.reference = None  # the only reference to the model (see train): it is freed here
        gc.collect()

    # -- evaluation -----------------------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Loss and reward metrics over the whole eval split, sharded over ranks, as ``eval_*``."""
        model = self.accelerator.unwrap_model(self.model)
        model.eval()
        sums = MetricSums(self.accelerator.device)
        batches = sharded_batches(
            self.eval_pairs.sequence_lengths(), self.config.eval_batch_size,
            self.accelerator.process_index, self.accelerator.num_processes,
        )  # fmt: skip
        bar = tqdm(batches, desc="evaluating", unit="batch", leave=False, disable=not self.accelerator.is_main_process)
        with torch.no_grad():
            for indices in bar:
                batch = collate(self.eval_pairs, indices, self.config.poet, self.pad_id).to(self.accelerator.device)
                sums.add_batch(*self._forward(model, batch), batch.attention_mask)
        model.train()
        means = sums.reduced(self.accelerator).means()
        return {f"eval_{name}": means[name] for name in (*PAIR_METRICS, *TOKEN_METRICS)}

    @property
    def num_tokens(self) -> int:
        """Non-padding tokens trained on since the first step, over all ranks (TRL's ``num_tokens``)."""
        return round(self.tokens_before + self.run_totals.tokens)

    # -- checkpoints ----------------------------------------------------------------------------------------
    def save(self) -> None:
        path = self.config.output_dir / f"checkpoint-{self.step}"
        epoch, batch = divmod(self.step, self.plan.steps_per_epoch)
        state = {
            "step": self.step,
            "data_position": {"epoch": epoch, "batches_done": batch},
            "metric_window": self.window.state(),
            "metric_window_seconds": self.window_seconds,
            "num_tokens": self.num_tokens,
            "world_size": self.accelerator.num_processes,
            "config": self.config.trajectory(),
        }
        save_checkpoint(path, self.accelerator, self.model, self.tokenizer, self.optimizer, self.scheduler, state)
        self.last_checkpoint = path

    def resume(self, path: Path, state: dict) -> None:
        load_checkpoint(path, self.accelerator, self.optimizer, self.scheduler)
        position = state["data_position"]
        self.step = position["epoch"] * self.plan.steps_per_epoch + position["batches_done"]
        if self.step >= self.total_steps:
            raise UserError(f"{path} is at step {self.step}, the last step of this run: nothing left to train")
        self.window = MetricSums(self.accelerator.device, state["metric_window"])
        self.window_seconds = state["metric_window_seconds"]
        self.tokens_before = state["num_tokens"]
        self.last_checkpoint = path
        self.log.truncate_after(self.step)

    # -- the loop -------------------------------------------------------------------------------------------
    def _optimizer_step(self) -> tuple[MetricSums, float, float]:
        """One optimizer step on the next global batch; returns its metric sums, learning rate and gradient norm."""
        started = time.perf_counter()
        epoch, position = divmod(self.step, self.plan.steps_per_epoch)
        if self._epoch_plan is None or self._epoch_plan[0] != epoch:
            self._epoch_plan = (epoch, self.plan.epoch(epoch))
        step_sums = self._train_step(self._epoch_plan[1][position])
        loss = step_sums.means()["loss"]
        max_norm = self.config.max_grad_norm or math.inf
        grad_norm = float(self.accelerator.clip_grad_norm_(self.model.parameters(), max_norm))
        # With fp16 loss scaling, inf gradients are expected now and then: the scaler skips those steps.
        if not math.isfinite(loss) or (self.accelerator.scaler is None and not math.isfinite(grad_norm)):
            raise UserError(self._non_finite_message(loss, grad_norm))
        learning_rate = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - started
        self.step += 1
        self.window += step_sums
        self.window_seconds += seconds
        self.run_totals += step_sums
        self.run_seconds += seconds
        return step_sums, learning_rate, grad_norm

    def _log_window(self, learning_rate: float, grad_norm: float) -> dict[str, float]:
        record = {
            "step": self.step,
            "epoch": round(self.step / self.plan.steps_per_epoch, 4),
            **self.window.means(),
            "learning_rate": learning_rate,
            "grad_norm": grad_norm,
            "tokens_per_second": self.window.tokens / self.window_seconds,
            "num_tokens": self.num_tokens,
        }
        self.log.append(record)
        self.window, self.window_seconds = MetricSums(self.accelerator.device), 0.0
        return record

    def train(self) -> dict[str, float]:
        """Train to the last step; returns the last logged train metrics, with the last eval metrics if any."""
        config = self.config
        bar = tqdm(
            total=self.total_steps, initial=self.step, desc=f"poet train ({config.loss})",
            disable=not self.accelerator.is_main_process,
        )  # fmt: skip
        record: dict[str, float] = {}
        while self.step < self.total_steps:
            step_sums, learning_rate, grad_norm = self._optimizer_step()
            step_means = step_sums.means()
            bar.update(1)
            bar.set_postfix(loss=f"{step_means['loss']:.4f}", acc=f"{step_means['rewards/accuracies']:.2f}")
            last = self.step == self.total_steps
            if last or self.step % config.logging_steps == 0:
                record = self._log_window(learning_rate, grad_norm)
            if self.eval_pairs is not None and (last or (config.eval_steps and self.step % config.eval_steps == 0)):
                eval_record = self.evaluate()
                self.log.append({"step": self.step, **eval_record})
                record.update(eval_record)
                bar.write(f"step {self.step}: " + ", ".join(f"{k}={v:.4f}" for k, v in eval_record.items()), sys.stderr)
            if config.save_steps and self.step % config.save_steps == 0:
                self.save()
        bar.close()
        return record

    def save_final_model(self) -> None:
        """The trained model and tokenizer in OUT (``save_pretrained``), the curves PNG and a summary line."""
        out, main = self.config.output_dir, self.accelerator.is_main_process
        model = self.accelerator.unwrap_model(self.model)
        model.save_pretrained(out, is_main_process=main, save_function=self.accelerator.save)
        if main:
            self.tokenizer.save_pretrained(out)
            plot_curves(self.log.records(), out / CURVES_FILE, f"poet train --loss {self.config.loss}")
            records = [r for r in self.log.records() if "loss" in r]
            _say(
                f"done: loss {records[-1]['loss']:.4f}, reward accuracy {records[-1]['rewards/accuracies']:.3f}; "
                f"{self.run_totals.tokens / self.run_seconds:.0f} tokens/s, padding waste "
                f"{self.run_totals.means()['padding_waste']:.1%}; model, {METRICS_FILE} and {CURVES_FILE} in {out}"
            )
        self.accelerator.wait_for_everyone()

    def _non_finite_message(self, loss: float, grad_norm: float) -> str:
        what = f"loss ({loss})" if not math.isfinite(loss) else f"gradient norm ({grad_norm}, loss {loss:.4f})"
        where = (
            f"the last good checkpoint is {self.last_checkpoint}"
            if self.last_checkpoint
            else "no checkpoint was saved before it (use --save-steps N)"
        )
        return (
            f"non-finite {what} at step {self.step + 1}: stopped before applying that update; {where}. "
            "Lower --learning-rate, or check the data"
        )


# -- setting a run up ---------------------------------------------------------------------------------------
def _check_output_dir(config: TrainConfig) -> None:
    out = config.output_dir
    if out.exists() and not out.is_dir():
        raise UserError(f"--output-dir {out} is a file: pass a folder")
    if out.is_dir() and any(out.iterdir()) and not (config.overwrite or config.resume_from_checkpoint):
        raise UserError(
            f"output dir {out} is not empty: pass --overwrite to train into it anyway (its checkpoints and metrics "
            "are replaced), --resume-from-checkpoint OUT/checkpoint-N to continue a run, or another --output-dir"
        )


def _prepare_output_dir(config: TrainConfig, accelerator: Accelerator) -> None:
    """Create the output dir (with ``--overwrite``, without its old checkpoints and metrics) once the data, the
    tokenizer and the model have loaded: a run refused before leaves nothing behind."""
    out = config.output_dir
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        if config.overwrite and not config.resume_from_checkpoint:
            for stale in out.glob("checkpoint-*"):
                shutil.rmtree(stale)
            (out / METRICS_FILE).unlink(missing_ok=True)
    accelerator.wait_for_everyone()


def _say(message: str) -> None:
    if PartialState().is_main_process:
        tqdm.write(message, file=sys.stderr)


def _load_split(config: TrainConfig, split: str, is_train: bool) -> Pairs:
    pairs = load_pairs(config.data, split)
    if config.max_length:
        keep = np.flatnonzero(pairs.sequence_lengths() <= config.max_length)
        if len(keep) == 0:
            raise UserError(f"split {split!r}: no pair fits in --max-length {config.max_length}")
        if len(keep) < len(pairs):
            _say(f"split {split!r}: skipping {len(pairs) - len(keep)} of {len(pairs)} pairs longer than --max-length")
            pairs = pairs.take(keep)
    if is_train and config.max_samples and config.max_samples < len(pairs):
        pairs = pairs.take(np.arange(config.max_samples))
    # On POET shards (equal completion lengths) --poet scores every stored token: the columns still apply.
    if pairs.ref_logps is not None and config.poet and not np.array_equal(pairs.chosen.lengths, pairs.rejected.lengths):
        raise UserError(
            f"split {split!r} carries {'/'.join(REF_COLUMN_NAMES)} computed on its untruncated completions, "
            "which --poet would mask differently: drop --poet, or drop those columns"
        )
    return pairs


def _recorded_reference(data: str) -> dict | None:
    """The model that computed the data's stored reference log-probs, as its stats.json records it, or None."""
    from poet.pipeline.hub.download import fetch_prepared  # the same folder or Hub repo load_pairs read

    try:
        document = json.loads((fetch_prepared(data, only=(STATS_FILE,)) / STATS_FILE).read_text(encoding="utf-8"))
        return document.get("reference", {}).get("model")
    except (UserError, OSError, ValueError, AttributeError):  # no stats.json, or not poet's: nothing recorded
        return None


def _check_stored_reference(config: TrainConfig) -> None:
    """Stored reference log-probs must be --model's (the initial policy's), or DPO does not start at ln 2: warn,
    or with --strict-reference refuse, when stats.json does not record --model's weights as their source."""
    model = ReferenceModel(config.model, config.gguf_file)
    try:
        model = model.with_revision()  # sha256 of a local folder's weights, or the Hub commit
    except UserError:
        pass  # compared as "revision unknown"
    problem = model.mismatch(_recorded_reference(config.data))
    if problem is None:
        return
    message = f"the reference log-probs stored in {config.data} may not be --model's: {problem}"
    if config.strict_reference:
        raise UserError(f"{message}; score the data with --model (poet score --ref-model), or drop the columns")
    _say(f"poet train: warning: {message}. DPO's first loss is then not ln 2; --strict-reference refuses such data")


def _reference_model(config: TrainConfig, splits: dict[str, Pairs], device: torch.device):
    """Say which reference DPO uses for each split, and load the frozen copy of --model that splits without
    stored log-probs need (else None). The caller hands it straight to the trainer, which then holds the only
    reference to it, so that ``--precompute-ref`` can free it."""
    if not LOSSES[config.loss].needs_reference:
        return None
    stored = [split for split, pairs in splits.items() if pairs.ref_logps is not None]
    missing = [split for split, pairs in splits.items() if pairs.ref_logps is None]
    if stored:
        _check_stored_reference(config)
        _say(f"{config.loss} reference of {', '.join(stored)}: the stored {'/'.join(REF_COLUMN_NAMES)} columns"
             + ("; no reference model loaded" if not missing else ""))  # fmt: skip
    if not missing:
        return None
    how = ("log-probs precomputed by a frozen copy of --model, which is freed before training" if config.precompute_ref
           else "a frozen copy of --model, in memory beside the policy (--precompute-ref scores the pairs once and "
                "frees it)")  # fmt: skip
    _say(f"{config.loss} reference of {', '.join(missing)}: {how}")
    return load_reference(config.model, config.dtype, config.gguf_file, device)


def _resume_state(config: TrainConfig, accelerator: Accelerator) -> dict | None:
    """The checkpoint's trainer state, if resuming, after checking that it continues this very run."""
    if config.resume_from_checkpoint is None:
        return None
    state = read_state(config.resume_from_checkpoint)
    changed = [name for name, value in config.trajectory().items() if state["config"].get(name) != value]
    if state["world_size"] != accelerator.num_processes:
        changed.append(f"number of processes ({state['world_size']} → {accelerator.num_processes})")
    if changed:
        raise UserError(f"cannot resume {config.resume_from_checkpoint} bit-for-bit: changed {', '.join(changed)}")
    return state


def _with_reference_logps(pairs: Pairs, among: np.ndarray, reference, config: TrainConfig, accelerator: Accelerator,
                          pad_id: int, what: str) -> Pairs:
    """``pairs`` with the summed reference log-probs of the pairs ``among`` (the others stay NaN: never read),
    computed once, sharded over ranks and gathered, with a progress bar."""
    batches = sharded_batches(pairs.sequence_lengths(), config.eval_batch_size, accelerator.process_index,
                              accelerator.num_processes, among)  # fmt: skip
    bar = tqdm(total=len(among), desc=f"reference log-probs ({what})", unit="pair",
               disable=not accelerator.is_main_process)  # fmt: skip
    with accelerator.autocast():
        # every rank advances the bar by its own share: rank 0 counts for all (ranks get equal shares ±1)
        share = accelerator.num_processes
        results = list(iter_reference_logps(reference, pairs, batches, poet=config.poet, pad_id=pad_id,
                                            device=accelerator.device, progress=lambda n: bar.update(n * share)))
    bar.close()
    chosen, rejected = np.full(len(pairs), np.nan), np.full(len(pairs), np.nan)
    for indices, chosen_sums, rejected_sums in gather_object(results):
        chosen[indices], rejected[indices] = chosen_sums, rejected_sums
    return pairs.with_ref_logps(chosen, rejected)


def train(config: TrainConfig) -> dict[str, float]:
    """Run one training job end to end; returns the last logged metrics (train and eval)."""
    accelerator = Accelerator(cpu=not torch.accelerator.is_available())
    _check_output_dir(config)
    resume_state = _resume_state(config, accelerator)
    set_seed(config.seed)

    train_pairs = _load_split(config, config.split, is_train=True)
    eval_pairs = _load_split(config, config.eval_split, is_train=False) if config.eval_split else None
    tokenizer = load_tokenizer(config.tokenizer or config.model, None if config.tokenizer else config.gguf_file)
    if resume_state:
        model = load_model(str(config.resume_from_checkpoint), config.dtype)
    else:
        model = load_model(config.model, config.dtype, config.gguf_file)
    for pairs, split in ((train_pairs, config.split), (eval_pairs, config.eval_split)):
        if pairs is not None:
            check_fits(pairs, split, model)
    _prepare_output_dir(config, accelerator)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    disable_dropout(model)
    model.train()

    # DPO's reference: log-probs from the shards, else a frozen copy of the initial model, or its log-probs.
    splits = {config.split: train_pairs, **({config.eval_split: eval_pairs} if eval_pairs is not None else {})}
    reference = _reference_model(config, splits, accelerator.device)
    trainer = PreferenceTrainer(config, accelerator, model, tokenizer, reference, train_pairs, eval_pairs)
    del reference  # the trainer's is the only reference left: precompute_reference frees the model
    if resume_state:
        trainer.resume(config.resume_from_checkpoint, resume_state)
        _say(f"resuming from {config.resume_from_checkpoint} at step {trainer.step}")
    if trainer.reference is not None and config.precompute_ref:
        trainer.precompute_reference()
    _say(
        f"{config.loss}: {len(train_pairs)} pairs, {trainer.plan.steps_per_epoch} steps per epoch of "
        f"{trainer.plan.global_batch} pairs, {trainer.total_steps} steps on {accelerator.num_processes} process(es)"
    )
    final = trainer.train()
    trainer.save_final_model()
    return final
