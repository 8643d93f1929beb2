"""``ScoreReference``: add the reference model's log-probs to prepared rows, with Beam's ``RunInference``.

A thin wrapper: :class:`_PairScoringHandler` is a ``ModelHandler`` whose model is a
:class:`~trainer.reference.ReferenceScorer` (loaded once per worker process and shared by its threads, or with
``model_copies`` once per machine, shared across processes), and whose examples are whole
:class:`~pipeline.steps.read.RowBatch` lists: the kept rows of one fixed chunk of one file. ``RunInference`` hands
over one list at a time (``max_batch_size=1``, Beam's advice for a handler that batches itself); the scorer
groups the list's pairs by length into token-budget batches. So a pair's stored value depends only on its chunk,
never on how a runner bundled the chunks: shards are byte-identical across runners.
"""

from __future__ import annotations

import functools
import logging
import time

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, RunInference

from poet.pipeline.steps.read import RowBatch
from poet.transforms.errors import UserError, first_line
from poet.transforms.hub_ids import missing_local_path
from poet.transforms.prepare import PreparedRow
from poet.transforms.reference import ReferenceModel, ReferenceStats
from poet.transforms.contract import REF_COLUMN_NAMES
from poet.transforms.contract import TOKEN_COLUMN_NAMES

_log = logging.getLogger("poet")


def check_reference_model(model: ReferenceModel, vocabulary: int | None, max_length: int | None) -> ReferenceModel:
    """On the launcher, before any worker starts: the model exists, covers the token ids and the sequence length.
    Returns it with its ``revision`` (Hub commit or sha256 of the weights) for the card."""
    from transformers import AutoConfig

    if missing_local_path(model.name):
        raise UserError(f"no such reference model folder: {model.name}; pass a local model folder or a Hub model id")
    model = model.with_revision()
    try:
        config = AutoConfig.from_pretrained(model.name, gguf_file=model.gguf_file)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load reference model {model.name}: {first_line(err)}") from None
    size = getattr(config, "vocab_size", None)
    if vocabulary is not None and size is not None and vocabulary > size:
        raise UserError(f"the tokenizer has {vocabulary} tokens but reference model {model.name} only {size}: "
                        "score with the model the data was tokenized for")  # fmt: skip
    context = getattr(config, "max_position_embeddings", None)
    if context is not None and (max_length is None or max_length > context):
        raise UserError(f"reference model {model.name} has a context of {context} tokens: "
                        f"pass --max-length {context} or less")  # fmt: skip
    return model


class _PairScoringHandler(ModelHandler):
    def __init__(self, model: ReferenceModel, model_copies: int | None = None, report_every_s: float = 10.0):
        # model_copies: load that many scorers per machine, shared by every worker process there (Beam's
        # multi_process_shared); unset: one per worker process, shared by its threads
        super().__init__(max_batch_size=1, model_copies=model_copies)
        self.model = model
        self.report_every_s = report_every_s
        self._progress = None  # (pairs scored, started, last report) on this worker, from the first batch

    def _report(self, pairs: int) -> None:
        now = time.monotonic()
        done, started, last = self._progress or (0, now, now)
        done += pairs
        if now - last >= self.report_every_s:
            _log.info("poet: %s pairs scored by the reference model on this worker (%.1f pairs/s)",
                      f"{done:,}", done / max(now - started, 1e-9))  # fmt: skip
            last = now
        self._progress = (done, started, last)

    def load_model(self):
        from poet.trainer.reference import ReferenceScorer  # torch loads on the workers, only here

        return ReferenceScorer(self.model)

    def run_inference(self, batch, scorer, inference_args=None):
        results = [_scored(rows, scorer) for rows in batch]
        self._report(sum(len(rows) for rows in batch))
        return results

    def get_num_bytes(self, batch) -> int:
        return sum(4 * sum(len(r.row[name]) for name in TOKEN_COLUMN_NAMES) for rows in batch for r in rows)

    def get_metrics_namespace(self) -> str:
        return "poet_reference"


def _scored(rows: RowBatch, scorer) -> tuple[RowBatch, ReferenceStats]:
    """The rows with their two sums, and the statistics of this list (one file, so one split)."""
    sums = scorer.score(*([r.row[name] for r in rows] for name in TOKEN_COLUMN_NAMES))
    stats, scored = ReferenceStats(), RowBatch()
    _, chosen_ids, rejected_ids = TOKEN_COLUMN_NAMES
    for r, (chosen, rejected) in zip(rows, sums.tolist()):
        scored.append(PreparedRow(r.origin, {**r.row, **dict(zip(REF_COLUMN_NAMES, (chosen, rejected)))}, r.lengths))
        stats.add(chosen, len(r.row[chosen_ids]), rejected, len(r.row[rejected_ids]), scorer.used)
    return scored, stats


def _merged(stats) -> ReferenceStats:
    """Beam may call this again on its own results: a fresh accumulator, so no input is modified."""
    return functools.reduce(ReferenceStats.merge, stats, ReferenceStats())


class ScoreReference(beam.PTransform):
    """Lists of ``PreparedRow`` → the same lists with ``ref_chosen_logps``/``ref_rejected_logps`` in each row;
    and ``(split, ReferenceStats)`` per split (per-token log-prob distribution, what ran)."""

    def __init__(self, model: ReferenceModel, model_copies: int | None = None):
        super().__init__()
        self.model, self.model_copies = model, model_copies

    def expand(self, row_lists):
        scored = row_lists | "RunInference" >> RunInference(_PairScoringHandler(self.model, self.model_copies))
        stats = (
            scored
            | "StatsPerList" >> beam.Map(lambda result: (result[0][0].origin.split, result[1]))
            | "PerSplit" >> beam.CombinePerKey(_merged)
        )
        return scored | "Rows" >> beam.Map(lambda result: result[0]), stats
