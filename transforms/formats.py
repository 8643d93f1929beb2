"""Preference-pair formats: recognise each common layout and normalise it to TRL's form.

Every reader output goes through :func:`normalize`, which returns a
:class:`PreferencePair` whose ``prompt``/``chosen``/``rejected`` are either three
strings (TRL "standard") or three lists of ``{"role", "content"}`` messages (TRL
"conversational"), exactly what ``trl.DPOTrainer`` would see after its own
``maybe_extract_prompt``. A row that cannot become a pair raises
:class:`~transforms.reasons.RowRejected` with a reason code.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from poet.transforms.reasons import Reason, RowRejected, rejects_as

Message = dict[str, str]
Text = Union[str, list[Message]]

_ROLES = ("system", "user", "assistant")
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
_HH_ASSISTANT = "\n\nAssistant: "
_HH_TURN = re.compile(r"(\n\nAssistant: |\n\nHuman: )")


@dataclass(frozen=True)
class PreferencePair:
    """One preference example in TRL form (all three fields strings, or all three message lists)."""

    prompt: Text
    chosen: Text
    rejected: Text

    @property
    def conversational(self) -> bool:
        return isinstance(self.chosen, list)

    def content_id(self) -> str:
        """A stable hash of the pair's content: the same pair gets the same id in any file or format
        (``--dedup`` compares pairs by it). Kept once computed: the id column and ``--dedup`` both ask."""
        known = self.__dict__.get("_content_id")
        if known is None:
            known = content_hash([self.prompt, self.chosen, self.rejected])
            object.__setattr__(self, "_content_id", known)  # not a field: equality and the dataclass stay the same
        return known

    def prompt_id(self) -> str:
        """The same hash of the prompt alone: pairs that share a prompt share it (``--test-size`` splits by it)."""
        return content_hash(self.prompt)


def content_hash(value) -> str:
    """The hex blake2b-128 of ``value``'s canonical JSON: the one content hash of the project's ids."""
    canonical = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return hashlib.blake2b(canonical.encode("utf-8"), digest_size=16).hexdigest()


def common_prefix_length(a: Sequence, b: Sequence) -> int:
    """Number of leading elements (characters, messages or token ids) ``a`` and ``b`` share.

    Bisects with slice comparisons (C loops over at most ``2 n`` elements in all)
    instead of a Python loop per element: transcripts run to thousands of characters.
    """
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    same, differs = 0, n  # a[:same] == b[:same]; a[same:differs] != b[same:differs]
    while differs - same > 1:
        middle = (same + differs) // 2
        if a[same:middle] == b[same:middle]:
            same = middle
        else:
            differs = middle
    return same


# --------------------------------------------------------------------------- detection


def _is_message_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, Mapping) for m in value)


def detect_format(record: Any) -> str:
    """Name the format of one row from its keys and value types (see ``FORMATS``)."""
    if not isinstance(record, Mapping):
        raise RowRejected(Reason.UNKNOWN_FORMAT, f"row is a {type(record).__name__}, not an object")
    if "conversations" in record:
        return "sharegpt"
    if "chosen" not in record or "rejected" not in record:
        known = {"prompt", "chosen", "rejected"} & set(record)
        if known:
            missing = sorted({"chosen", "rejected"} - set(record))
            raise RowRejected(Reason.MISSING_FIELD, f"no {' or '.join(missing)}")
        raise RowRejected(Reason.UNKNOWN_FORMAT, f"unrecognised keys {sorted(record)[:8]}")
    chosen = record["chosen"]
    if record.get("prompt") is not None:
        prompt = record["prompt"]
        if isinstance(prompt, str) and isinstance(chosen, str):
            return "standard"
        if _is_message_list(prompt) and _is_message_list(chosen):
            return "conversational"
        if isinstance(prompt, str) and _is_message_list(chosen):
            return "ultrafeedback"
        raise RowRejected(
            Reason.UNKNOWN_FORMAT, f"prompt is {type(prompt).__name__} and chosen is {type(chosen).__name__}"
        )
    if isinstance(chosen, str) and chosen.startswith("\n\nHuman: "):
        return "hh_rlhf"
    if isinstance(chosen, str) or _is_message_list(chosen):
        return "implicit_prompt"
    raise RowRejected(Reason.UNKNOWN_FORMAT, f"chosen is {type(chosen).__name__}")


# --------------------------------------------------------------------------- field access


def _field(record: Mapping, key: str) -> Any:
    value = record.get(key)
    if value is None:
        raise RowRejected(Reason.MISSING_FIELD, f"no {key!r}")
    return value


def _text(record: Mapping, key: str) -> str:
    value = _field(record, key)
    if not isinstance(value, str):
        raise RowRejected(Reason.NON_TEXT_CONTENT, f"{key!r} is {type(value).__name__}, expected text")
    return value


def _message(raw: Any, where: str) -> Message:
    if not isinstance(raw, Mapping) or "role" not in raw or "content" not in raw:
        raise RowRejected(Reason.MISSING_FIELD, f"{where}: message without role/content")
    role, content = raw["role"], raw["content"]
    if not isinstance(content, str):
        raise RowRejected(Reason.NON_TEXT_CONTENT, f"{where}: content is {type(content).__name__}")
    if role not in _ROLES:
        raise RowRejected(Reason.BAD_ROLE_ORDER, f"{where}: unsupported role {role!r}")
    return {"role": role, "content": content}


def _messages(record: Mapping, key: str) -> list[Message]:
    value = _field(record, key)
    if not _is_message_list(value):
        raise RowRejected(Reason.NON_TEXT_CONTENT, f"{key!r} is {type(value).__name__}, expected messages")
    return [_message(m, f"{key}[{i}]") for i, m in enumerate(value)]


def _chosen_rejected(record: Mapping) -> tuple[Text, Text]:
    chosen = record.get("chosen")
    if isinstance(chosen, list):
        return _messages(record, "chosen"), _messages(record, "rejected")
    return _text(record, "chosen"), _text(record, "rejected")


# --------------------------------------------------------------------------- normalisers


def _standard(record: Mapping) -> PreferencePair:
    return PreferencePair(_text(record, "prompt"), _text(record, "chosen"), _text(record, "rejected"))


def _conversational(record: Mapping) -> PreferencePair:
    return PreferencePair(_messages(record, "prompt"), _messages(record, "chosen"), _messages(record, "rejected"))


def extract_prompt(chosen: Text, rejected: Text) -> PreferencePair:
    """The shared prefix is the prompt: ``trl.extract_prompt``, quirks included.

    Like TRL, a space just before the split point goes to the completions, and
    when one side is a prefix of the other the split falls on the last common
    element (TRL's loop ends without ``break``), so the ids match TRL's.
    """
    if chosen == rejected:
        raise RowRejected(Reason.IDENTICAL_RESPONSES)
    shortest = min(len(chosen), len(rejected))
    if shortest == 0:
        raise RowRejected(Reason.EMPTY_RESPONSE)
    idx = shortest - 1
    for i in range(shortest):
        if chosen[i] != rejected[i]:
            idx = i - 1 if chosen[i - 1] == " " else i
            break
    return PreferencePair(chosen[:idx], chosen[idx:], rejected[idx:])


def _implicit_prompt(record: Mapping) -> PreferencePair:
    return extract_prompt(*_chosen_rejected(record))


def _ultrafeedback(record: Mapping) -> PreferencePair:
    # TRL's maybe_extract_prompt: a text prompt next to full conversations is
    # ignored, the prompt is the conversations' shared prefix.
    return extract_prompt(_messages(record, "chosen"), _messages(record, "rejected"))


def _hh_rlhf(record: Mapping) -> PreferencePair:
    """Anthropic HH-RLHF transcript, split as TRL's ``examples/datasets/hh-rlhf-helpful-base.py``."""
    chosen, rejected = _text(record, "chosen"), _text(record, "rejected")
    common = chosen[: common_prefix_length(chosen, rejected)]
    if not common.endswith(_HH_ASSISTANT):
        cut = common.rfind(_HH_ASSISTANT)
        if cut < 0:
            raise RowRejected(Reason.BAD_ROLE_ORDER, "transcript has no '\\n\\nAssistant: ' turn before the responses")
        common = common[:cut] + _HH_ASSISTANT
    turns = _HH_TURN.split(common[: -len(_HH_ASSISTANT)])
    if turns[0]:
        raise RowRejected(Reason.BAD_ROLE_ORDER, "transcript does not start with '\\n\\nHuman: '")
    prompt = [
        {"role": "user" if marker == "\n\nHuman: " else "assistant", "content": content}
        for marker, content in zip(turns[1::2], turns[2::2])
    ]
    return PreferencePair(
        prompt,
        [{"role": "assistant", "content": chosen[len(common) :]}],
        [{"role": "assistant", "content": rejected[len(common) :]}],
    )


def _sharegpt_message(raw: Any, where: str) -> Message:
    if not isinstance(raw, Mapping) or "from" not in raw or "value" not in raw:
        raise RowRejected(Reason.MISSING_FIELD, f"{where}: turn without from/value")
    speaker = raw["from"]
    if not isinstance(speaker, str):
        raise RowRejected(Reason.BAD_FIELD_TYPE, f"{where}: 'from' is {type(speaker).__name__}, expected text")
    role = _SHAREGPT_ROLES.get(speaker)
    if role is None:
        raise RowRejected(Reason.BAD_ROLE_ORDER, f"{where}: unsupported speaker {raw['from']!r}")
    return _message({"role": role, "content": raw["value"]}, where)


def _sharegpt(record: Mapping) -> PreferencePair:
    """ShareGPT / LLaMA-Factory: ``conversations`` history plus one ``chosen``/``rejected`` turn."""
    history = _field(record, "conversations")
    if not isinstance(history, list):
        raise RowRejected(Reason.NON_TEXT_CONTENT, "'conversations' is not a list")
    prompt = [_sharegpt_message(turn, f"conversations[{i}]") for i, turn in enumerate(history)]
    system = record.get("system")
    if system:
        prompt.insert(0, _message({"role": "system", "content": system}, "system"))
    return PreferencePair(
        prompt,
        [_sharegpt_message(_field(record, "chosen"), "chosen")],
        [_sharegpt_message(_field(record, "rejected"), "rejected")],
    )


FORMATS: dict[str, Callable[[Mapping], PreferencePair]] = {
    "standard": _standard,
    "conversational": _conversational,
    "implicit_prompt": _implicit_prompt,
    "ultrafeedback": _ultrafeedback,
    "hh_rlhf": _hh_rlhf,
    "sharegpt": _sharegpt,
}


# --------------------------------------------------------------------------- validation


def _check_roles(prompt: list[Message], completion: list[Message], side: str) -> None:
    """system? then user/assistant alternating, prompt ending on user, completion starting on assistant."""
    roles = [m["role"] for m in prompt]
    if roles and roles[0] == "system":
        roles = roles[1:]
    expected = ("user", "assistant")
    for i, role in enumerate(roles + [m["role"] for m in completion]):
        if role != expected[i % 2]:
            raise RowRejected(Reason.BAD_ROLE_ORDER, f"{side}: turn {i} is {role!r}, expected {expected[i % 2]!r}")
    if len(roles) % 2 == 0:
        raise RowRejected(Reason.BAD_ROLE_ORDER, "prompt must end with a user turn")


def _is_blank(text: Text) -> bool:
    """Empty or whitespace only (``not text.strip()``, without copying the text)."""
    if isinstance(text, str):
        return not text or text.isspace()
    return all(not m["content"] or m["content"].isspace() for m in text)


def _check_text(text: Text, side: str) -> None:
    """Text a tokenizer and Parquet can take: a lone surrogate (JSON ``"\\ud800"``) is not UTF-8."""
    for part in [text] if isinstance(text, str) else [m["content"] for m in text]:
        if not part.isascii():
            try:
                part.encode("utf-8")
            except UnicodeEncodeError as err:
                raise RowRejected(Reason.INVALID_TEXT, f"{side}: {err.reason} at character {err.start}") from None


def validate(pair: PreferencePair) -> PreferencePair:
    """Reject pairs that carry no training signal, that are not valid text or that a chat template would mis-render."""
    for side in ("prompt", "chosen", "rejected"):
        _check_text(getattr(pair, side), side)
    if _is_blank(pair.prompt):
        raise RowRejected(Reason.EMPTY_PROMPT)
    if _is_blank(pair.chosen) or _is_blank(pair.rejected):
        raise RowRejected(Reason.EMPTY_RESPONSE, "chosen" if _is_blank(pair.chosen) else "rejected")
    if pair.chosen == pair.rejected:
        raise RowRejected(Reason.IDENTICAL_RESPONSES)
    if pair.conversational:
        _check_roles(pair.prompt, pair.chosen, "chosen")
        _check_roles(pair.prompt, pair.rejected, "rejected")
    return pair


def normalize(record: Any, fmt: str | None = None) -> PreferencePair:
    """Detect (or force, with ``fmt``) the row's format and return its validated TRL-form pair.

    Raises only :class:`RowRejected`: whatever else a row's fields make a normaliser raise is ``bad_field_type``.
    """
    with rejects_as(Reason.BAD_FIELD_TYPE):
        if fmt is None:
            fmt = detect_format(record)
        elif not isinstance(record, Mapping):
            raise RowRejected(Reason.UNKNOWN_FORMAT, f"row is a {type(record).__name__}, not an object")
        return validate(FORMATS[fmt](record))
