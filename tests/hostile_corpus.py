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
    (_pair("Last good row.", " Yes.", " No."), KEPT),
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
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    config = json.loads((target / "tokenizer_config.json").read_text())
    config["chat_template"] = (
        "{% for message in messages %}{% if '" + RAISING_TEMPLATE_MARK + "' in message['content'] %}"
        "{{ raise_exception('this template refuses the message') }}{% endif %}{% endfor %}"
        + config["chat_template"]
    )
    (target / "tokenizer_config.json").write_text(json.dumps(config))
    return target


def kept_rows(folder: Path, split: str = "train") -> list[dict]:
    return [row for path in sorted((folder / "data").glob(f"{split}-*.parquet")) for row in pq.read_table(path).to_pylist()]


def dead_letters(folder: Path, split: str = "train") -> list[dict]:
    path = folder / "dead_letter" / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def assert_every_row_accounted_for(folder: Path, rows: list[tuple[bytes, str]], split: str = "train") -> None:
    expected = expected_by_line(rows)
    dead = {letter["line"]: letter["reason"] for letter in dead_letters(folder, split)}
    assert dead == {line: reason for line, reason in expected.items() if reason != KEPT}
    kept = kept_rows(folder, split)
    assert len(kept) == sum(reason == KEPT for reason in expected.values())
    stats = json.loads((folder / "stats.json").read_text())["splits"][split]
    assert stats["read"] == stats["pairs"] + stats["dead_lettered"] == len(rows)
    assert (stats["pairs"], stats["dead_lettered"]) == (len(kept), len(dead))
