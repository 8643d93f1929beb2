"""Why a row was set aside: the dead-letter reason codes.

Every input row ends in a shard or in ``dead_letter/{split}.jsonl`` with one of
these codes, so ``kept + dead-lettered == read`` can always be checked.
"""

from __future__ import annotations

import enum

from poet.transforms.errors import describe


class Reason(str, enum.Enum):
    MALFORMED_JSON = "malformed_json"
    ROW_TOO_LARGE = "row_too_large"  # over --max-row-bytes: never read whole, its first bytes kept
    UNKNOWN_FORMAT = "unknown_format"
    MISSING_FIELD = "missing_field"
    EMPTY_PROMPT = "empty_prompt"
    EMPTY_RESPONSE = "empty_response"
    NON_TEXT_CONTENT = "non_text_content"
    BAD_ROLE_ORDER = "bad_role_order"
    IDENTICAL_RESPONSES = "identical_responses"
    IDENTICAL_AFTER_TRUNCATION = "identical_after_truncation"
    PROMPT_TOO_LONG = "prompt_too_long"
    MIXED_KINDS = "mixed_kinds"
    INVALID_TEXT = "invalid_text"  # not UTF-8, or a lone surrogate: never replaced silently
    BAD_FIELD_TYPE = "bad_field_type"  # a field of a type its format does not allow
    TEMPLATE_ERROR = "template_error"  # the tokenizer's chat template raised on this row
    UNEXPECTED_ERROR = "unexpected_error"  # anything else one row raised while it was prepared
    # the data-quality options (transforms/quality.py), in the order they apply
    DUPLICATE = "duplicate"  # --dedup: the same pair as an earlier row (its id is in the dead letter)
    MISSING_SCORE = "missing_score"  # --min-score-margin: the row lacks a chosen or a rejected score
    LOW_MARGIN = "low_margin"  # --min-score-margin: score_chosen - score_rejected below the margin
    CONTAMINATED = "contaminated"  # --decontaminate: the prompt shares an n-gram with an eval prompt


class RowRejected(Exception):
    """Raised by the pure transforms for a row that cannot become a training pair."""

    def __init__(self, reason: Reason, detail: str = ""):
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


class rejects_as:  # noqa: N801 - used like a function: ``with rejects_as(reason):``
    """Turn any exception of the block into :class:`RowRejected` with ``reason`` (a ``RowRejected`` passes as is).

    The one mechanism by which an unexpected exception of one row's processing
    becomes a dead letter instead of ending the job. (A class, not
    ``contextlib.contextmanager``: it runs once per row.)
    """

    def __init__(self, reason: Reason):
        self.reason = reason

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, err, _traceback) -> bool:
        if err is None or isinstance(err, RowRejected) or not isinstance(err, Exception):
            return False
        raise RowRejected(self.reason, describe(err)) from err

