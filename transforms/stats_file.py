"""``stats.json``: the versioned document that describes a prepared folder.

Schema (version 1)::

    {
      "schema_version": 1,
      "run": {...provenance: sources, tokenizer, options, versions, date...},
      "splits": {SPLIT: SPLIT_STATS},
      "overall": SPLIT_STATS,              # all splits merged
      "shards": {SPLIT: [{"file", "num_rows", "num_bytes"}]}
    }

    SPLIT_STATS = {
      "pairs", "dead_lettered", "read",        # read == pairs + dead_lettered
      "lengths": {prompt|chosen|rejected|poet: {count, mean, std, min, p10, p50, p90, p99, max}},
      "histograms": {prompt|chosen|rejected|poet: [[length, count], ...]},
      "chosen_longer" | "rejected_longer" | "equal_length" | "poet_cut": {"count", "pct"},
      "chosen_lost_eos", "rejected_lost_eos",
      "completion_tokens" | "training_tokens": {"before_poet", "after_poet", "removed", "removed_pct"},
      "dead_letter_reasons": {reason: count}
    }

Lengths are in tokens. ``chosen``/``rejected`` are completion lengths before any
truncation (EOS included), ``poet`` is ``min`` of the two after the max-length
cap. "before_poet" token totals are after the max-length cap; training tokens
count the prompt once per sequence (twice per pair). ``std`` is the sample
standard deviation and percentiles interpolate linearly (pandas' defaults);
undefined values are ``null``.
"""

from __future__ import annotations

import json

from transforms.stats import STATS_SCHEMA_VERSION, LengthStats, overall

STATS_FILE = "stats.json"


def build_stats_document(split_stats: dict[str, LengthStats], shards: list[tuple], run: dict) -> dict:
    """``shards`` holds ``(split, file, num_rows, num_bytes)`` for every shard written."""
    files = {split: [] for split in split_stats}
    for split, name, rows, nbytes in sorted(shards):
        files[split].append({"file": name, "num_rows": rows, "num_bytes": nbytes})
    return {
        "schema_version": STATS_SCHEMA_VERSION,
        "run": run,
        "splits": {split: stats.to_dict() for split, stats in sorted(split_stats.items())},
        "overall": overall(split_stats).to_dict(),
        "shards": files,
    }


def dumps(document: dict) -> str:
    return json.dumps(document, indent=2, sort_keys=False, allow_nan=False) + "\n"
