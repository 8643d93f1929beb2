"""Why a row was set aside: the dead-letter reason codes.

Every input row ends in a shard or in ``dead_letter/{split}.jsonl`` with one of
these codes, so ``kept + dead-lettered == read`` can always be checked.
"""

from __future__ import annotations

import enum


class Reason(str, enum.Enum):
    MALFORMED_JSON = "malformed_json"
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


class RowRejected(Exception):
    """Raised by the pure transforms for a row that cannot become a training pair."""

    def __init__(self, reason: Reason, detail: str = ""):
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail
