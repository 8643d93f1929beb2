"""A hostile corpus: the rows, files and folders a scraped dataset throws at ``poet prepare``, and the check that
every row of a prepared folder is accounted for.

Rows are kept here as raw JSON Lines bytes next to what must become of each one
(``KEPT`` or a dead-letter reason), so a test writes them into a file (some
cases, like FIFOs and symlinks, only exist at test time) and checks every line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

KEPT = "kept"
BOM = b"\xef\xbb\xbf"


def _pair(prompt, chosen, rejected, **extra) -> bytes:
    return json.dumps({"prompt": prompt, "chosen": chosen, "rejected": rejected, **extra}).encode()


def _turns(history, chosen, rejected) -> bytes:
    return json.dumps({"conversations": history, "chosen": chosen, "rejected": rejected}).encode()


def _h(text):
    return {"from": "human", "value": text}


def _g(text):
    return {"from": "gpt", "value": text}


# plain-text (TRL "standard") rows; line 1 is written after a UTF-8 BOM
PLAIN_ROWS: list[tuple[bytes, str]] = [
    (_pair("What is 2+2?", " Four.", " Five."), KEPT),
    (b'{"prompt": "lone \\ud800 surrogate", "chosen": " a", "rejected": " b"}', "invalid_text"),
    (b'{"prompt": "bad \xff\xfe bytes", "chosen": " a", "rejected": " b"}', "invalid_text"),
    (b'{"prompt": "p", "chosen": " a", "rejected": " b", "extra": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
     "malformed_json"),
    (b'{"prompt": "p", "chosen": " a", "rejected": " b", "n": ' + b"9" * 5000 + b"}", "malformed_json"),
    (b"null", "malformed_json"),
    (b'{"prompt": "truncated", "chosen": " a", "rej', "malformed_json"),
    (b"[1, 2, 3]", "unknown_format"),
    (b'"just a string"', "unknown_format"),
    (b"42", "unknown_format"),
    (b"{}", "unknown_format"),
    (_pair("number chosen", 7, " b"), "unknown_format"),
    (_pair({"nested": "prompt"}, " a", " b"), "unknown_format"),
    (_pair("p", " same", " same"), "identical_responses"),
    (_pair("   ", " a", " b"), "empty_prompt"),
    (_pair("p", " a", ""), "empty_response"),
    (b'{"prompt": "p", "rejected": " b"}', "missing_field"),
    (_pair("Emoji \U0001f600 and NUL \x00 and RTL \u202e", " Kept.", " Also kept?"), KEPT),
    (_pair("extra fields", " a", " b", meta={"deep": [[[[1.5e308, None, True]]]], "nan": float("nan")}), KEPT),
    (b'{"prompt": "surrogate pair \\ud83d\\ude00", "chosen": " ok", "rejected": " fine"}', KEPT),
    (b'{"prompt": "CRLF line", "chosen": " a", "rejected": " b"}\r', KEPT),
    (b'{"prompt": "duplicate", "prompt": "keys", "chosen": " a", "rejected": " b"}', KEPT),
    (_pair("p", " same", " same", score=float("nan"), weight=float("-inf")), "identical_responses"),  # strict JSON
    (_pair("Last good row.", " Yes.", " No."), KEPT),
]

# rows around a --max-row-bytes of MAX_ROW_BYTES: a longer row is set aside with its first KEPT_BYTES, never read
# whole; the rows after it are read as usual
MAX_ROW_BYTES = 4096
KEPT_BYTES = 1000
OVERSIZED_ROWS: list[tuple[bytes, str]] = [
    (_pair("small", " a", " b"), KEPT),
    (_pair("x" * 10_000, " a", " b"), "row_too_large"),
    (b"{" + b" " * 50_000, "row_too_large"),  # not even JSON: it is never parsed
    (_pair("y" * 4000, " a", " b"), KEPT),  # just under the limit
    (_pair("\u00e9" * 3000, " a", " b", note="\u00e9" * 3000), "row_too_large"),  # 2-byte letters cut mid-way
    (_pair("after", " a", " b"), KEPT),
]

# ShareGPT rows (conversational), for a tokenizer whose chat template raises on "RAISE"
SHAREGPT_ROWS: list[tuple[bytes, str]] = [
    (_turns([_h("Hello?")], _g("Hi."), _g("Go away.")), KEPT),
    (_turns([{"from": ["human"], "value": "list speaker"}], _g("a"), _g("b")), "bad_field_type"),
    (_turns([{"from": {"x": 1}, "value": "dict speaker"}], _g("a"), _g("b")), "bad_field_type"),
    (_turns([_h("please RAISE here")], _g("a"), _g("b")), "template_error"),
    (_turns([_h("Still fine?")], _g("Yes."), _g("No.")), KEPT),  # same tokenizer batch (of 3) as the row above
    (_turns([_h("number value")], {"from": "gpt", "value": 3}, _g("b")), "non_text_content"),
    (b'{"conversations": [{"from": "human", "value": "lone \\udfff"}], '
     b'"chosen": {"from": "gpt", "value": "a"}, "rejected": {"from": "gpt", "value": "b"}}', "invalid_text"),
    (_turns("not a list", _g("a"), _g("b")), "non_text_content"),
]

RAISING_TEMPLATE_MARK = "RAISE"

# conversational rows for a tokenizer whose chat template loops on LOOP and builds a huge string on HUGE: each is a
# template_error with its reason, its batch-mates are kept (run with a small RenderBudget: see the test)
BUDGET_ROWS: list[tuple[bytes, str]] = [
    (_turns([_h("Hello?")], _g("Hi."), _g("Go away.")), KEPT),
    (_turns([_h("please LOOP for ever")], _g("a"), _g("b")), "template_error"),
    (_turns([_h("Still fine?")], _g("Yes."), _g("No.")), KEPT),
    (_turns([_h("a HUGE string please")], _g("a"), _g("b")), "template_error"),
    (_turns([_h("Last one.")], _g("Yes."), _g("No.")), KEPT),
]
BUDGET_TEMPLATE = (
    "{% for message in messages %}"
    "{% if 'LOOP' in message['content'] %}{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}"
    "{% endfor %}{% endif %}"
    "{% if 'HUGE' in message['content'] %}{% set ns = namespace(s=message['content']) %}"
    "{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}{% endif %}"
    "{% endfor %}"
)


def write_rows(path: Path, rows: list[tuple[bytes, str]], bom: bool = True) -> Path:
    """One row per line, blank lines between some of them (never rows themselves), a BOM first."""
    lines = [line + b"\n" + (b"\n" if i % 5 == 4 else b"") for i, (line, _) in enumerate(rows)]
    path.write_bytes((BOM if bom else b"") + b"".join(lines))
    return path


def expected_by_line(rows: list[tuple[bytes, str]]) -> dict[int, str]:
    """Line number (1-based, blank lines counted) → what must become of the row on it."""
    out, line = {}, 1
    for i, (_, expected) in enumerate(rows):
        out[line] = expected
        line += 2 if i % 5 == 4 else 1
    return out


def raising_tokenizer(source: Path, target: Path) -> Path:
    """A copy of the tokenizer at ``source`` whose chat template raises on a message containing ``RAISE``."""
    return tokenizer_with_template_prefix(source, target, (
        "{% for message in messages %}{% if '" + RAISING_TEMPLATE_MARK + "' in message['content'] %}"
        "{{ raise_exception('this template refuses the message') }}{% endif %}{% endfor %}"))


def tokenizer_with_template_prefix(source: Path, target: Path, prefix: str) -> Path:
    """A copy of the tokenizer at ``source`` whose chat template starts with ``prefix``."""
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    config = json.loads((target / "tokenizer_config.json").read_text())
    config["chat_template"] = prefix + config["chat_template"]
    (target / "tokenizer_config.json").write_text(json.dumps(config))
    return target


def kept_rows(folder: Path, split: str = "train") -> list[dict]:
    return [row for path in sorted((folder / "data").glob(f"{split}-*.parquet")) for row in pq.read_table(path).to_pylist()]


def _not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")


def dead_letters(folder: Path, split: str = "train") -> list[dict]:
    """The split's dead letters, read as strict JSON (no NaN, no Infinity)."""
    path = folder / "dead_letter" / f"{split}.jsonl"
    return ([json.loads(line, parse_constant=_not_json) for line in path.read_text(encoding="utf-8").splitlines()]
            if path.exists() else [])


def assert_every_row_accounted_for(folder: Path, rows: list[tuple[bytes, str]], split: str = "train") -> None:
    expected = expected_by_line(rows)
    letters = dead_letters(folder, split)
    assert [letter["line"] for letter in letters] == sorted(letter["line"] for letter in letters)  # source order
    assert not [p.name for p in (folder / "dead_letter").glob("*") if p.suffix != ".jsonl"]  # no pieces left
    dead = {letter["line"]: letter["reason"] for letter in letters}
    assert dead == {line: reason for line, reason in expected.items() if reason != KEPT}
    kept = kept_rows(folder, split)
    assert len(kept) == sum(reason == KEPT for reason in expected.values())
    stats = json.loads((folder / "stats.json").read_text())["splits"][split]
    assert stats["read"] == stats["pairs"] + stats["dead_lettered"] == len(rows)
    assert (stats["pairs"], stats["dead_lettered"]) == (len(kept), len(dead))


def _set(path: str, value):
    """An edit of a stats.json document: ``path`` is ``/``-separated keys."""
    def edit(document: dict) -> None:
        *parents, last = path.split("/")
        for key in parents:
            document = document[key]
        document[last] = value
    return edit


# stats.json documents poet did not write (an edit of a real one each): readers refuse them in one line
HOSTILE_STATS = {
    "unknown-schema": _set("schema_version", 2),
    "no-schema": _set("schema_version", None),
    "negative-pairs": _set("splits/train/pairs", -1),
    "fractional-read": _set("overall/read", 1.5),
    "nan-mean": _set("splits/train/lengths/chosen/mean", float("nan")),
    "infinite-count": _set("splits/train/chosen_longer/count", float("inf")),
    "negative-histogram": _set("overall/histograms/poet", [[3, -5]]),
    "read-mismatch": _set("splits/train/read", 10**9),
    "bool-count": _set("splits/train/dead_lettered", True),
}
