"""The output rows: one place that turns a truncated pair into a shard row of the contract's columns.

The same ``datasets.Features`` object gives the Arrow schema of every shard
(with the features embedded in its metadata, so ``load_dataset`` restores them
exactly) and the ``dataset_info`` block of the card.
"""

from __future__ import annotations

from poet.transforms import contract as c
from poet.transforms.formats import PreferencePair
from poet.transforms.truncation import TruncatedPair


def preference_features(*, conversational: bool, include_text: bool, reference: bool = False):
    """The shards' features; ``reference``: with the reference log-prob columns (``--ref-model``) at the end."""
    columns = (*c.prepared_columns(include_text), *(c.REF_COLUMNS if reference else ()))
    return c.features(columns, conversational=conversational)


def to_row(pair: PreferencePair, truncated: TruncatedPair, *, include_text: bool) -> dict:
    row = {
        c.ID.name: pair.content_id(),
        c.PROMPT_IDS.name: truncated.prompt_ids,
        c.CHOSEN_IDS.name: truncated.chosen_ids,
        c.REJECTED_IDS.name: truncated.rejected_ids,
        c.PROMPT_LENGTH.name: truncated.prompt_length,
        c.CHOSEN_LENGTH_ORIG.name: truncated.chosen_length_orig,
        c.REJECTED_LENGTH_ORIG.name: truncated.rejected_length_orig,
        c.POET_LENGTH.name: truncated.poet_length,
    }
    if include_text:
        row.update({c.PROMPT.name: pair.prompt, c.CHOSEN.name: pair.chosen, c.REJECTED.name: pair.rejected})
    return row


def estimate_nbytes(row: dict) -> int:
    """Approximate Arrow size of one row, to pick a shard count from ``--max-shard-size``."""
    size = 32 + 4 * len(c.LENGTH_COLUMNS) + 4 * sum(column.name in row for column in c.REF_COLUMNS)
    for column in c.TOKEN_COLUMNS:
        size += 4 * len(row[column.name]) + 4
    for column in c.TEXT_COLUMNS:
        value = row.get(column.name)
        if isinstance(value, str):
            size += len(value.encode("utf-8")) + 4
        elif value:
            size += sum(len(m["role"]) + len(m["content"].encode("utf-8")) + 8 for m in value) + 4
    return size
