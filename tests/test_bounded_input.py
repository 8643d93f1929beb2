"""Memory and time that do not grow with one row: --max-row-bytes before parsing, size estimates that cannot
overflow, dead letters streamed to their files, and a per-row budget for chat templates."""

from __future__ import annotations

import gzip
import io
import json
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.util import assert_that, equal_to

from conftest import MINIMIND
from poet.transforms.readers import iter_rows
from poet.transforms.reasons import Reason, RowRejected


def _rows(name: str, data: bytes, limit: int):
    return list(iter_rows(name, io.BytesIO(data), max_row_bytes=limit))


def test_a_long_line_inside_a_small_gzip_is_never_read_whole(tmp_path):
    """200 MB of one line in a gzip of a few hundred KB, read with a 1 MB limit: the reader holds a few MB."""
    path = tmp_path / "bomb.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=1) as handle:
        handle.write(b'{"prompt": "ok", "chosen": " a", "rejected": " b"}\n{"prompt": "')
        for _ in range(200):
            handle.write(b"a" * 10**6)
        handle.write(b'", "chosen": " a", "rejected": " b"}\n{"prompt": "after", "chosen": " a", "rejected": " b"}\n')
    assert path.stat().st_size < 2 * 10**6
    tracemalloc.start()
    try:
        with open(path, "rb") as stream:
            rows = list(iter_rows(str(path), stream, max_row_bytes=10**6))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 12 * 10**6, f"{peak:,} bytes held at once"
    assert [(r.line, r.reason) for r in rows] == [(1, None), (2, Reason.ROW_TOO_LARGE), (3, None)]
    assert rows[1].raw == '{"prompt": "' + "a" * 988 and "200,000,048 bytes" in rows[1].error
    assert rows[2].record["prompt"] == "after"


@pytest.mark.parametrize("limit, expected", [(57, [None]), (56, [Reason.ROW_TOO_LARGE])])
def test_the_limit_counts_the_row_not_its_line_end(limit, expected):
    line = b'{"prompt": "p", "chosen": " a", "rejected": " b", "x": 1}'  # 57 bytes
    assert [r.reason for r in _rows("f.jsonl", line + b"\r\n"[1:], limit)] == expected
    assert [r.reason for r in _rows("f.jsonl", line, limit)] == expected  # the last line, without a newline


def test_an_oversized_parquet_row_never_becomes_python_objects():
    rows = [{"prompt": "p", "chosen": " a", "rejected": " b"},
            {"prompt": "x" * 100_000, "chosen": " a", "rejected": " b"},
            {"prompt": "q", "chosen": " c", "rejected": " d"}]
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    read = _rows("f.parquet", buffer.getvalue(), 50_000)
    assert [r.reason for r in read] == [None, Reason.ROW_TOO_LARGE, None]
    assert [r.record["prompt"] for r in read if r.record] == ["p", "q"]
    assert "over --max-row-bytes 50,000" in read[1].error
    assert [r.reason for r in _rows("f.parquet", buffer.getvalue(), 10**6)] == [None, None, None]


def test_a_json_array_is_bounded_as_a_whole():
    array = json.dumps([{"prompt": "p", "chosen": " a", "rejected": " b"}] * 20).encode()
    assert len(_rows("f.json", array, len(array) // 64 + 1)) == 20
    with pytest.raises(ValueError, match="convert it to JSON Lines"):
        _rows("f.json", array, len(array) // 64 - 1)


def test_a_json_object_holding_the_rows_is_refused_not_read_as_one_row():
    document = json.dumps({"data": [{"prompt": "p", "chosen": " a", "rejected": " b"}]}).encode()
    with pytest.raises(ValueError, match="holding a list under 'data'"):
        _rows("f.json", document, 10**6)
    one_row = json.dumps({"chosen": ["x"], "rejected": ["y"]}).encode()  # a single row stays a row
    assert len(_rows("f.json", one_row, 10**6)) == 1


def test_a_large_first_row_does_not_overflow_the_size_estimate():
    """Beam keeps the estimate in 32 bits: 1.2 MB x 3,001 rows used to end the run with OverflowError."""
    import apache_beam as beam

    from poet.pipeline.steps.gather import Spread
    from poet.pipeline.steps.read import RowBatch

    with beam.Pipeline("DirectRunner") as pipeline:
        counted = (pipeline | beam.Create([0])
                   | beam.Map(lambda _: RowBatch(["x" * 1_200_000] + ["y"] * 3000)).with_output_types(RowBatch)
                   | Spread(len) | beam.Map(len))
        assert_that(counted, equal_to([3001]))


def test_dead_letters_are_written_in_file_and_line_order_whatever_the_chunk_order(tmp_path):
    """Pieces written in any order are joined in file and line order, and removed."""
    import apache_beam as beam

    from poet.pipeline.steps.dead_letters import WriteDeadLetters
    from poet.pipeline.steps.dead_letters import DeadLetters
    from poet.transforms.prepare import DeadLetter, RowOrigin

    def chunk(split, file_index, lines):
        return DeadLetters(DeadLetter(RowOrigin(split, f"f{file_index}", file_index, line), "malformed_json", "",
                                      f"{file_index}:{line}") for line in lines)

    chunks = [chunk("train", 1, [3, 4]), chunk("test", 0, [9]), chunk("train", 0, [100, 2000]),
              chunk("train", 0, [7, 8]), chunk("train", 1, [1])]
    (tmp_path / "dead_letter").mkdir()
    with beam.Pipeline("DirectRunner") as pipeline:
        counts = pipeline | beam.Create(chunks[::-1]) | WriteDeadLetters(str(tmp_path))
        assert_that(counts, equal_to([("train", 7), ("test", 1)]))
    rows = [json.loads(line)["row"] for line in (tmp_path / "dead_letter" / "train.jsonl").read_text().splitlines()]
    assert rows == ["0:7", "0:8", "0:100", "0:2000", "1:1", "1:3", "1:4"]
    assert sorted(p.name for p in (tmp_path / "dead_letter").iterdir()) == ["test.jsonl", "train.jsonl"]


# --------------------------------------------------------------------------- chat templates


@pytest.fixture(scope="module")
def minimind():
    from poet.transforms.tokenization import load_tokenizer

    return load_tokenizer(str(MINIMIND))


@pytest.mark.parametrize("body, reason", [
    ("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}", "ran over 0.3 s"),
    ("{% set r = range(99999) %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}", "ran over 0.3 s"),
    ("{% for i in range(99999) %}{% for m in messages %}{{ m.role|length }}{% endfor %}{% endfor %}"
     "{% for i in range(99999) %}{% for j in range(99999) %}{{ '' }}{% endfor %}{% endfor %}", "ran over 0.3 s"),
    ("{{ 'x' * (messages|length * 10**10) }}", "built a value over 1,000,000"),
    ("{{ 9 ** (messages|length * 10**10) }}", "to a power over 4096"),
    ("{% set ns = namespace(s='xx') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
     "built a value over 1,000,000"),
    ("{% set ns = namespace(s='xx') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
     "built a value over 1,000,000"),
    ("{{ 'x'|center(messages|length * 10**10) }}", "a number over 1,000,000"),
    ("{% for i in range(99999) %}{{ 'y' * 999 }}{% endfor %}", "wrote over 1,000,000"),
    ("{% set s = 'x' * 99999 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}", "ran over 0.3 s"),
], ids=["loop", "stored-range", "loop-with-output", "repeat", "power", "tilde", "plus", "filter", "output",
        "loop-over-text"])
def test_a_template_over_its_budget_on_one_row_is_a_template_error(minimind, body, reason):
    import time

    from poet.transforms.exact_shortcuts import ChatRenderer
    from poet.transforms.template_budget import RenderBudget

    minimind.chat_template = ("{% if 'BAD' in messages[0]['content'] %}" + body + "{% endif %}"
                              "{% for m in messages %}{{ m['content'] }}{% endfor %}")
    try:
        renderer = ChatRenderer.create(minimind, RenderBudget(seconds=0.3, chars=10**6))
        assert renderer.render([[{"role": "user", "content": "fine"}]], False) == ["fine"]
        started = time.monotonic()
        with pytest.raises(RowRejected) as rejected:
            renderer.render([[{"role": "user", "content": "BAD"}]], False)
        assert time.monotonic() - started < 3
        assert rejected.value.reason == Reason.TEMPLATE_ERROR and reason in rejected.value.detail
        assert renderer.render([[{"role": "user", "content": "fine again"}]], False) == ["fine again"]
    finally:
        minimind.chat_template = None  # the fixture's tokenizer is reloaded by nobody else: leave no template


def test_the_budget_renders_exactly_what_transformers_renders(minimind):
    from transformers import AutoTokenizer

    from poet.transforms.exact_shortcuts import ChatRenderer

    tokenizer = AutoTokenizer.from_pretrained(MINIMIND)
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi ~ there"},
                    {"role": "assistant", "content": "Hello."}]
    renderer = ChatRenderer.create(tokenizer)
    for generation_prompt in (False, True):
        assert renderer.render([conversation], generation_prompt) == [tokenizer.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=generation_prompt)]


def _peak_rss_kb(*args: str) -> int:
    """``poet prepare ARGS`` in a fresh process; its peak RSS."""
    import subprocess
    import sys

    code = ("import resource, sys; from poet.pipeline.commands.cli import main; code = main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, "prepare", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])


def test_dead_letters_cost_no_memory_that_grows_with_them(tmp_path):
    """100 MB of bad lines between 400 good rows: the peak stays within 1.2x of the good rows alone
    (grouping, sorting and joining them in memory took several times that)."""
    from conftest import HH_SAMPLE

    with gzip.open(HH_SAMPLE, "rb") as handle:
        good = [line for _, line in zip(range(400), handle)]
    bad = [b'{"prompt": "' + b"x" * 10**6 + b"\n", json.dumps({"prompt": "p", "chosen": "y" * 500_000,
                                                                "rejected": "y" * 500_000}).encode() + b"\n"] * 50
    (tmp_path / "clean.jsonl").write_bytes(b"".join(good))
    (tmp_path / "bad.jsonl").write_bytes(b"".join(line for pair in zip(good, bad + [b""] * 300) for line in pair))
    peaks = {name: _peak_rss_kb("--input", str(tmp_path / f"{name}.jsonl"), "--tokenizer", str(MINIMIND),
                                "--output", str(tmp_path / f"out-{name}"))
             for name in ("clean", "bad")}
    assert peaks["bad"] <= 1.2 * peaks["clean"], peaks
    dead = {name: json.loads((tmp_path / f"out-{name}" / "stats.json").read_text())["overall"]["dead_lettered"]
            for name in peaks}
    assert dead["bad"] == dead["clean"] + 100
