"""One file read in parts gives the rows, numbers and dead-letter texts of the whole file, for any number of parts."""

from __future__ import annotations

import gzip
import io

import pytest

from poet.transforms.readers import WHOLE, Part, iter_rows, split_file

LINES = [b'\xef\xbb\xbf{"prompt": "p0", "chosen": "a", "rejected": "b"}\n', b"\n", b"not json\n",
         b'{"prompt": "' + b"x" * 300 + b'", "chosen": "a", "rejected": "b"}\r\n', b"   \n", b"\xff\xfe\n",
         b"null\n", *(b'{"prompt": "p%d", "chosen": "a", "rejected": "b"}\n' % i for i in range(20)),
         b'{"prompt": "no newline at the end", "chosen": "a", "rejected": "b"}']


def _rows(path: str, data: bytes, part: Part = WHOLE) -> list:
    return list(iter_rows(path, io.BytesIO(data), part))


@pytest.mark.parametrize("parts", [1, 2, 3, 5, 8, 40, 1000])
def test_jsonl_parts_read_exactly_the_whole_file(parts):
    data = b"".join(LINES)
    whole = _rows("a.jsonl", data)
    split = split_file("a.jsonl", io.BytesIO(data), parts)
    assert 1 <= len(split) <= parts and split[0].start == 0 and split[-1].end is None
    assert all(a.end == b.start for a, b in zip(split, split[1:]))
    assert all(data[p.start - 1:p.start] == b"\n" for p in split[1:])  # every part starts a line
    assert [row for part in split for row in _rows("a.jsonl", data, part)] == whole
    assert whole[0].record["prompt"] == "p0" and whole[-1].line == len(LINES)


def test_a_small_block_size_finds_the_same_cuts():
    from poet.transforms.readers import _line_parts

    data = b"".join(LINES)
    assert _line_parts(io.BytesIO(data), 6, block_size=7) == _line_parts(io.BytesIO(data), 6)


@pytest.mark.parametrize("parts", [2, 3, 7])
def test_parquet_parts_are_row_groups_numbered_as_in_the_whole_file(parts):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"prompt": [f"p{i}" for i in range(50)], "chosen": ["a"] * 50, "rejected": ["b"] * 50})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=8)  # 7 row groups
    data = buffer.getvalue()
    whole = _rows("a.parquet", data)
    split = split_file("a.parquet", io.BytesIO(data), parts)
    assert len(split) == parts
    assert [row for part in split for row in _rows("a.parquet", data, part)] == whole
    assert [row.line for row in whole] == list(range(1, 51))


def test_gzip_and_json_arrays_are_read_whole():
    data = gzip.compress(b"".join(LINES))
    assert split_file("a.jsonl.gz", io.BytesIO(data), 4) == [WHOLE]
    assert split_file("a.json", io.BytesIO(b"[]"), 4) == [WHOLE]
