"""``stats.json``: the versioned document that describes a prepared folder.

Schema (version 1)::

    {
      "schema_version": 1,
      "run": {...provenance: sources, tokenizer, options, versions, date: transforms.contract.RunDescription...},
      "splits": {SPLIT: SPLIT_STATS},
      "overall": SPLIT_STATS,              # all splits merged
      "shards": {SPLIT: [{"file", "num_rows", "num_bytes", "file_size"}]},
      "reference": REFERENCE,                # only when scored with --ref-model (prepare or score)
      "decontamination": DECONTAMINATION     # only with --decontaminate
    }

    DECONTAMINATION = {
      "ngram": 13, "eval_ngrams",            # n-gram size; distinct n-grams of all eval prompts
      "eval_sources": [{"file", "prompts", "shorter_than_ngram", "contaminated"}]   # in --decontaminate order
    }

    REFERENCE = {
      "model": {"name", "gguf_file", "revision", "dtype", "scored_with": {"cpu/float32": pairs, ...}},
      "bin_width": 0.05,
      "splits": {SPLIT: {chosen|rejected: {"pairs", "mean", "histogram": [[bin lower bound, count], ...]}}}
    }

    SPLIT_STATS = {
      "pairs", "dead_lettered", "read",        # read == pairs + dead_lettered
      "lengths": {prompt|chosen|rejected|poet|sequence: {count, mean, std, min, p10, p50, p90, p99, max}},
      "histograms": {prompt|chosen|rejected|poet|sequence: [[length, count], ...]},
      "chosen_rejected": {"edges": [0, 1, 2, ...], "counts": [[chosen_bin, rejected_bin, count], ...]},
      "chosen_longer" | "rejected_longer" | "equal_length" | "poet_cut" | "poet_would_cut"
        | "poet_removed_tokens": {"count", "pct"},
      "chosen_lost_eos", "rejected_lost_eos",
      "completion_tokens" | "training_tokens": {"before_poet", "after_poet", "removed", "removed_pct"},
      "dead_letter_reasons": {reason: count}   # the data-quality rules' removals too (duplicate, low_margin...)
    }

Lengths are in tokens. ``chosen``/``rejected`` are completion lengths before any
truncation (EOS included), ``poet`` is ``min`` of the two after the max-length
cap, ``sequence`` is prompt + the longer completion before truncation (what the
max-length cap applies to). ``histograms`` are exact (length -> number of pairs, zero counts left out).
``chosen_rejected`` is the joint histogram of the (chosen, rejected) lengths
before any truncation on a fixed grid: ``edges`` are the bins' lower bounds (bin
``i`` holds lengths ``edges[i] <= x < edges[i+1]``, the last one is open) and
each count names its bins by their lower bounds.

Shares: ``chosen_longer``/``rejected_longer``/``equal_length`` compare the
lengths before any truncation; ``poet_cut`` counts the pairs whose written
completions are shorter than after the max-length cap alone (0 for a
``--no-poet`` run), ``poet_would_cut`` the pairs whose completions differ in
length after the max-length cap (what POET cuts, or would cut at train time);
``poet_removed_tokens`` the completion tokens the POET rule removes after the
max-length cap, in % of them (what it removed, or would remove at train time).
A completion "lost its EOS" when truncation removed every EOS token it had.
"before_poet" token totals are after the max-length cap; training tokens
count the prompt once per sequence (twice per pair). ``std`` is the sample
standard deviation and percentiles interpolate linearly (pandas' defaults);
undefined values (statistics of no pairs, a % of nothing) are ``null``.

Reference: the distribution of the per-token reference log-probs (summed log-probs of a stored completion
divided by its token count) in bins of ``bin_width`` nats; ``revision`` is the Hub commit of the model or
``sha256:`` of its weight files; ``scored_with`` counts the pairs each device/dtype scored.

Shards: ``num_bytes`` is the Arrow size of the shard's table (what ``datasets``
reports as a split's ``num_bytes``), ``file_size`` the Parquet file's size in bytes.
"""

from __future__ import annotations

import json
import math
import re

from poet.transforms.contract import RunDescription
from poet.transforms.stats import STATS_SCHEMA_VERSION, LengthStats, overall


def build_stats_document(
    split_stats: dict[str, LengthStats],
    shards: list[tuple],
    run: RunDescription,
    file_sizes: dict[str, int] | None = None,
) -> dict:
    """``shards`` holds ``(split, file, num_rows, num_bytes)`` for every shard written;
    ``file_sizes`` maps a shard's ``file`` to its size in bytes (``file_size`` is null without it)."""
    return {
        "schema_version": STATS_SCHEMA_VERSION,
        "run": run.to_json(),
        "splits": {split: stats.to_dict() for split, stats in sorted(split_stats.items())},
        "overall": overall(split_stats).to_dict(),
        "shards": shard_entries(list(split_stats), shards, file_sizes),
    }


def shard_entries(splits: list[str], shards: list[tuple], file_sizes: dict[str, int] | None = None) -> dict:
    """The ``shards`` block: per split, its files in order (see :func:`build_stats_document`)."""
    files = {split: [] for split in splits}
    for split, name, rows, nbytes in sorted(shards):
        size = (file_sizes or {}).get(name)
        files[split].append({"file": name, "num_rows": rows, "num_bytes": nbytes, "file_size": size})
    return files


# a JSON array of numbers that json.dumps(indent=...) spread over several lines; raw newlines never
# occur inside JSON strings, so this cannot match (and rewrite) the content of a string
_NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_NUMBER_ARRAY = re.compile(r"\[\n\s*(" + _NUMBER + r"(?:,\n\s*" + _NUMBER + r")*)\n\s*\]")


def dumps(document: dict) -> str:
    """Indented JSON with short arrays of numbers (histogram entries) kept on one line; no NaN."""
    text = json.dumps(document, indent=2, sort_keys=False, allow_nan=False)
    text = _NUMBER_ARRAY.sub(lambda m: "[" + ", ".join(re.split(r",\n\s*", m.group(1))) + "]", text)
    return text + "\n"


def loads(text: str | bytes) -> dict:
    """A stats.json document, checked: ``ValueError`` naming the first problem when poet did not write it this way.

    Readers (``poet stats``, ``poet score``, ``poet publish``) must not print, add up or carry over counts
    that cannot be: an unknown ``schema_version``, a negative, fractional or non-finite count, or splits whose
    ``read`` is not ``pairs + dead_lettered``.
    """
    document = json.loads(text)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    if document.get("schema_version") != STATS_SCHEMA_VERSION:
        raise ValueError(f"schema_version {document.get('schema_version')!r} is not {STATS_SCHEMA_VERSION}, "
                         "the one this poet reads")
    splits = document.get("splits")
    if not isinstance(splits, dict) or not isinstance(document.get("overall"), dict):
        raise ValueError("no splits")
    for name, stats in [*splits.items(), ("overall", document["overall"])]:
        where = f"split {name!r}" if name != "overall" else "overall"
        if not isinstance(stats, dict):
            raise ValueError(f"{where} is not an object")
        for key in ("pairs", "dead_lettered", "read"):
            if not _is_count(stats.get(key)):
                raise ValueError(f"{where}: {key} is {stats.get(key)!r}, not a count")
        if stats["read"] != stats["pairs"] + stats["dead_lettered"]:
            raise ValueError(f"{where}: read is not pairs + dead_lettered")
        _check_numbers(stats, where)  # lengths, shares and histograms: never negative, never NaN or infinite
    for split, files in (document.get("shards") or {}).items():
        for shard in files if isinstance(files, list) else [None]:
            if not isinstance(shard, dict) or not _is_count(shard.get("num_rows")):
                raise ValueError(f"shards of split {split!r}: an entry without a row count")
    return document


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_numbers(value, where: str) -> None:
    if isinstance(value, dict):
        for child in value.values():
            _check_numbers(child, where)
    elif isinstance(value, list):
        for child in value:
            _check_numbers(child, where)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{where} holds {value!r} where only counts, lengths and shares (>= 0) belong")
