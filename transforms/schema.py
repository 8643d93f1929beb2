"""The output dataset's features: one place that says what a prepared row is.

The same ``datasets.Features`` object gives the Arrow schema of every shard
(with the features embedded in its metadata, so ``load_dataset`` restores them
exactly) and the ``dataset_info`` block of the card.
"""

from __future__ import annotations

from datasets import Features, List, Value

from poet.transforms.formats import PreferencePair
from poet.transforms.truncation import TruncatedPair

TOKEN_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")
LENGTH_COLUMNS = ("prompt_length", "chosen_length_orig", "rejected_length_orig", "poet_length")
TEXT_COLUMNS = ("prompt", "chosen", "rejected")

_MESSAGES = List({"role": Value("string"), "content": Value("string")})


def preference_features(*, conversational: bool, include_text: bool) -> Features:
    columns = {"id": Value("string")}
    columns.update({name: List(Value("int32")) for name in TOKEN_COLUMNS})
    columns.update({name: Value("int32") for name in LENGTH_COLUMNS})
    if include_text:
        text = _MESSAGES if conversational else Value("string")
        columns.update({name: text for name in TEXT_COLUMNS})
    return Features(columns)


def to_row(pair: PreferencePair, truncated: TruncatedPair, *, include_text: bool) -> dict:
    row = {
        "id": pair.content_id(),
        "prompt_ids": truncated.prompt_ids,
        "chosen_ids": truncated.chosen_ids,
        "rejected_ids": truncated.rejected_ids,
        "prompt_length": truncated.prompt_length,
        "chosen_length_orig": truncated.chosen_length_orig,
        "rejected_length_orig": truncated.rejected_length_orig,
        "poet_length": truncated.poet_length,
    }
    if include_text:
        row.update(prompt=pair.prompt, chosen=pair.chosen, rejected=pair.rejected)
    return row


def estimate_nbytes(row: dict) -> int:
    """Approximate Arrow size of one row, to pick a shard count from ``--max-shard-size``."""
    size = 32 + 4 * len(LENGTH_COLUMNS)
    for name in TOKEN_COLUMNS:
        size += 4 * len(row[name]) + 4
    for name in TEXT_COLUMNS:
        value = row.get(name)
        if isinstance(value, str):
            size += len(value.encode("utf-8")) + 4
        elif value:
            size += sum(len(m["role"]) + len(m["content"].encode("utf-8")) + 8 for m in value) + 4
    return size
