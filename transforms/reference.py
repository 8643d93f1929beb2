"""The reference model that scores a dataset (``--ref-model``): what it is, and what its scores look like.

Torch-free, so the launcher can describe and check a run without loading a model. The scoring itself is in
``trainer.reference`` (one implementation for the pipeline and ``poet train --precompute-ref``).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

REF_DTYPES = ("auto", "float32", "bfloat16", "float16", "float64")
DEFAULT_BATCH_TOKENS = 4096
PER_TOKEN_BIN = 0.05
"""Width in nats of the bins of the per-token reference log-prob histograms."""
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")
_SHA256 = "sha256:"  # prefix of a revision that is the digest of local weight files, not a Hub commit


@dataclass(frozen=True)
class ReferenceModel:
    """A causal LM to score pairs with. ``dtype="auto"``: float32 on CPU, bfloat16 on a GPU.

    ``batch_tokens`` bounds the padded tokens of one forward pass (chosen and rejected rows together); the
    logits of a pass take ``batch_tokens × vocabulary × 4`` bytes, twice at the log-softmax (2 GB at 4096 tokens
    and a 49k vocabulary), so raise it on a GPU with memory to spare.
    ``revision`` identifies the weights: a Hub commit, or ``sha256:…`` of the local weight files.
    The card and stats.json record a local folder by its name only, never a path of the machine that scored.
    """

    name: str
    gguf_file: str | None = None
    dtype: str = "auto"
    batch_tokens: int = DEFAULT_BATCH_TOKENS
    revision: str | None = None

    def resolved_dtype(self, on_gpu: bool) -> str:
        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if on_gpu else "float32"

    def with_revision(self) -> ReferenceModel:
        """This model with ``revision`` filled in: the sha256 of a local folder's weights, else the Hub commit."""
        if self.revision is not None:
            return self
        from dataclasses import replace

        from poet.transforms.errors import UserError

        if os.path.isdir(self.name):
            files = [self.gguf_file] if self.gguf_file else sorted(
                f for f in os.listdir(self.name) if f.endswith(_WEIGHT_SUFFIXES)
            )
            if not files or not all(os.path.isfile(os.path.join(self.name, f)) for f in files):
                wanted = self.gguf_file or "weights (*.safetensors, *.bin, *.gguf)"
                raise UserError(f"--ref-model {self.name} has no {wanted}: pass a model folder or a Hub model id")
            return replace(self, revision=_SHA256 + _sha256_files([os.path.join(self.name, f) for f in files]))
        try:
            import huggingface_hub

            return replace(self, revision=huggingface_hub.model_info(self.name).sha)
        except Exception as err:  # noqa: BLE001 - any failure to resolve is the same user problem
            raise UserError(
                f"cannot find reference model {self.name!r} ({type(err).__name__}): "
                "pass a local model folder or a Hub model id you can access"
            ) from None

    @property
    def recorded_name(self) -> str:
        """The name stats.json and the card give: a Hub id as is, a local folder by its own name."""
        return os.path.basename(os.path.normpath(self.name)) if os.path.isdir(self.name) else self.name

    def describe(self, used: dict[str, int]) -> dict:
        """For the card and stats.json; ``used`` counts the pairs scored per ``device/dtype``."""
        return {"name": self.recorded_name, "gguf_file": self.gguf_file, "revision": self.revision,
                "dtype": self.dtype, "scored_with": dict(sorted(used.items()))}

    def mismatch(self, recorded: dict | None) -> str | None:
        """Why reference log-probs recorded as computed by ``recorded`` (stats.json's ``reference.model``) may not
        be this model's, or None when they are: the same sha256 of the weights (local folders, whatever their
        names), or the same Hub id at the same commit. ``revision`` is filled in (:meth:`with_revision`), or None
        where it could not be found out."""
        mine = f"{self.name} (revision {self.revision or 'unknown'})"
        if not recorded:
            return f"nothing records which model computed them, so they may not be {mine}'s"
        theirs = f"{recorded.get('name')} (revision {recorded.get('revision')})"
        local = [str(revision or "").startswith(_SHA256) for revision in (self.revision, recorded.get("revision"))]
        same_hub_model = not any(local) and recorded.get("name") == self.name and self.revision is not None
        if all(local) or same_hub_model:
            return None if self.revision == recorded.get("revision") else f"they were computed by {theirs}, not {mine}"
        if not any(local) and recorded.get("name") != self.name:
            return f"they were computed by {theirs}, not {mine}"
        return f"they were computed by {theirs}, which cannot be compared with {mine}"


def _sha256_files(paths: list[str]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.path.basename(path).encode() + b"\0")
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


@dataclass
class ReferenceStats:
    """Mergeable distribution of the per-token reference log-probs (sum / completion tokens) of one split.

    Values are binned in :data:`PER_TOKEN_BIN` nats (bin ``k`` holds ``[k·w, (k+1)·w)``); ``used`` counts
    pairs per ``device/dtype`` that scored them, so the card states what actually ran on the workers.
    """

    chosen: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    used: Counter = field(default_factory=Counter)

    def add(self, chosen_logps: float, chosen_tokens: int, rejected_logps: float, rejected_tokens: int,
            used: str) -> None:
        self.chosen[math.floor(chosen_logps / chosen_tokens / PER_TOKEN_BIN)] += 1
        self.rejected[math.floor(rejected_logps / rejected_tokens / PER_TOKEN_BIN)] += 1
        self.used[used] += 1

    def merge(self, other: ReferenceStats) -> ReferenceStats:
        for mine, theirs in ((self.chosen, other.chosen), (self.rejected, other.rejected), (self.used, other.used)):
            mine.update(theirs)
        return self

    def to_dict(self) -> dict:
        """``{chosen|rejected: {pairs, mean, histogram: [[bin lower bound, count], ...]}}``; means from bin centres."""
        out = {}
        for side, counts in (("chosen", self.chosen), ("rejected", self.rejected)):
            pairs = sum(counts.values())
            mean = sum((k + 0.5) * PER_TOKEN_BIN * n for k, n in counts.items()) / pairs if pairs else None
            out[side] = {
                "pairs": pairs,
                "mean": None if mean is None else round(mean, 4),
                "histogram": [[round(k * PER_TOKEN_BIN, 4), n] for k, n in sorted(counts.items())],
            }
        return out


def reference_section(model: ReferenceModel, stats: dict[str, ReferenceStats], splits: Iterable[str]) -> dict:
    """``stats.json``'s ``reference`` block: the model and, per split, the per-token log-prob distribution
    (every split in ``splits``: one without scored rows gets an empty one)."""
    stats = {split: stats.get(split, ReferenceStats()) for split in splits}
    used = Counter()
    for split_stats in stats.values():
        used.update(split_stats.used)
    return {
        "model": model.describe(dict(used)),
        "bin_width": PER_TOKEN_BIN,
        "splits": {split: split_stats.to_dict() for split, split_stats in sorted(stats.items())},
    }
