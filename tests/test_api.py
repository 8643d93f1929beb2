"""poet as a library: ``poet.prepare`` writes what ``poet prepare`` writes, ``PreparePreferencePairs`` gives a
user's pipeline the command's rows and dead letters, errors are the command's lines, ``import poet`` stays
light, and the README's examples run as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HH_SAMPLE, MINIMIND, REPO, SHAREGPT_SAMPLE, prepare
from hostile_corpus import PLAIN_ROWS, SHAREGPT_ROWS, write_rows


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_import_poet_imports_neither_beam_nor_transformers():
    script = ("import sys, poet; heavy = [m for m in ('apache_beam', 'transformers', 'torch', 'pyarrow', 'datasets') "
              "if m in sys.modules]; assert not heavy, heavy; print(sorted(poet.__all__))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "prepare" in done.stdout and "PreparePreferencePairs" in done.stdout
    import poet

    for name in poet.__all__:  # every exported name resolves
        assert getattr(poet, name) is not None


def test_poet_prepare_writes_the_bytes_of_poet_prepare(tmp_path):
    import poet

    train, test = HH_SAMPLE, write_rows(tmp_path / "hostile.jsonl", SHAREGPT_ROWS)
    assert prepare(tmp_path / "command", "--input", f"train={train}", "--input", f"test={test}",
                   "--tokenizer", str(MINIMIND), "--max-length", "256", "--no-poet", "--license", "mit",
                   "--num-shards", "2") == 0
    stats = poet.prepare({"train": train, "test": [test]}, MINIMIND, tmp_path / "api", max_length=256, no_poet=True,
                         license="mit", num_shards=2)
    assert folder_files(tmp_path / "api") == folder_files(tmp_path / "command")
    assert stats == json.loads((tmp_path / "api" / "stats.json").read_text())


def test_errors_are_the_commands_lines(tmp_path, capsys):
    import poet

    source = write_rows(tmp_path / "rows.jsonl", PLAIN_ROWS)
    assert prepare(tmp_path / "out", "--input", str(source), "--tokenizer", str(MINIMIND), "--max-length", "-1") == 2
    printed = capsys.readouterr().err.strip()
    with pytest.raises(poet.UserError) as raised:
        poet.prepare(source, MINIMIND, tmp_path / "out", max_length=-1)
    assert printed == f"poet prepare: error: {raised.value}"
    with pytest.raises(poet.UserError, match="unknown option max_lenght; did you mean max_length"):
        poet.prepare(source, MINIMIND, tmp_path / "out", max_lenght=5)
    with pytest.raises(poet.UserError, match="unknown option --max_length: neither poet nor Beam"):
        poet.prepare(source, MINIMIND, tmp_path / "out", pipeline_options=["--max_length", "5"])
    with pytest.raises(poet.UserError, match="takes the row options"):
        poet.PreparePreferencePairs(MINIMIND, output="elsewhere")
    with pytest.raises(poet.UserError, match="unknown option publish; "):
        poet.publish(tmp_path, "user/name", publish=True)
    assert not (tmp_path / "out").exists()

    from poet.pipeline.commands.cli import main

    assert main(["score", str(tmp_path / "missing"), "--output", str(tmp_path / "scored"), "--ref-model", "m"]) == 2
    printed = capsys.readouterr().err.strip()
    with pytest.raises(poet.UserError) as raised:
        poet.score(tmp_path / "missing", tmp_path / "scored", ref_model="m")
    assert printed == f"poet score: error: {raised.value}"


# --- PreparePreferencePairs in a pipeline of one's own --------------------------------------------------------


def a_users_row(record) -> bool:
    """Whether a user's source could give ``record``: a dict whose text is Unicode (Beam's coders cannot carry a
    lone surrogate; poet sets such a row aside)."""
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        return False
    return isinstance(record, dict)


def json_records(lines: list[bytes]) -> list[dict]:
    """The rows a user's source would give, out of JSON lines."""
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except (ValueError, RecursionError):
            continue
    return [record for record in records if a_users_row(record)]


def command_output(folder: Path) -> tuple[list[str], list[str]]:
    """A prepared folder's rows and dead letters (reason, detail and row), each as sorted JSON."""
    import pyarrow.parquet as pq

    rows = [row for shard in sorted(folder.glob("data/*.parquet")) for row in pq.read_table(shard).to_pylist()]
    letters = [json.loads(line) for path in sorted(folder.glob("dead_letter/*.jsonl"))
               for line in path.read_text(encoding="utf-8").splitlines()]
    return (sorted(json.dumps(row, sort_keys=True) for row in rows),
            sorted(json.dumps({k: letter[k] for k in ("reason", "detail", "row")}, sort_keys=True)
                   for letter in letters))


def transform_output(records: list[dict], tokenizer: Path, folder: Path, runner="FnApiRunner", beam_args: tuple = (),
                     **options) -> tuple[list[str], list[str]]:
    """What ``PreparePreferencePairs`` gives for ``records`` in a pipeline that only creates them and writes
    what comes out, in one last step (Beam's Dask runner runs only what its last step depends on)."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    import poet

    def as_in_a_file(element) -> str:  # dead_letter/*.jsonl writes NaN and infinities as strings, to stay JSON
        return json.dumps(json.loads(json.dumps(element), parse_constant=str), sort_keys=True)

    def write(keyed):
        name, elements = keyed
        (folder / name).write_text(json.dumps(sorted(as_in_a_file(x) for x in elements)))

    folder.mkdir(parents=True, exist_ok=True)
    with beam.Pipeline(runner=runner, options=PipelineOptions(list(beam_args))) as pipeline:
        prepared = pipeline | beam.Create(records) | poet.PreparePreferencePairs(tokenizer, **options)
        _ = (
            (prepared.rows | "Rows" >> beam.Map(lambda row: ("rows", row)),
             prepared.dead_letters | "DeadLetters" >> beam.Map(lambda letter: ("dead_letters", letter)))
            | beam.Flatten()
            | beam.GroupByKey()
            | beam.Map(write)
        )
    return tuple(json.loads((folder / name).read_text()) if (folder / name).exists() else []
                 for name in ("rows", "dead_letters"))


def conversational_records(tmp_path: Path) -> tuple[Path, list[dict]]:
    """The LLaMA-Factory sample and the hostile ShareGPT rows: one file for the command, dicts for the transform."""
    lines = [json.dumps(row, ensure_ascii=False).encode() for row in json.loads(SHAREGPT_SAMPLE.read_text())[:120]]
    lines += [line for line, _ in SHAREGPT_ROWS]
    return write_rows(tmp_path / "conversational.jsonl", [(line, "") for line in lines]), json_records(lines)


def test_the_transform_gives_the_commands_rows_and_dead_letters(tmp_path):
    source, records = conversational_records(tmp_path)
    assert prepare(tmp_path / "command", "--input", str(source), "--tokenizer", str(MINIMIND), "--max-length", "512",
                   "--batch-size", "16") == 0
    rows, letters = command_output(tmp_path / "command")
    parsed_letters = [letter for letter in letters if a_users_row(json.loads(letter)["row"])]
    got_rows, got_letters = transform_output(records, MINIMIND, tmp_path / "transform", max_length=512, batch_size=16)
    assert len(rows) > 50 and got_rows == rows
    assert len(parsed_letters) > 5 and got_letters == parsed_letters

    lines = [json.dumps({"prompt": f"Count to {n}.", "chosen": " " + " ".join(map(str, range(n))),  # plain text
                         "rejected": " No."}).encode() for n in range(0, 80, 2)] + [line for line, _ in PLAIN_ROWS]
    plain = write_rows(tmp_path / "plain.jsonl", [(line, "") for line in lines])
    assert prepare(tmp_path / "plain-command", "--input", str(plain), "--tokenizer", str(MINIMIND), "--drop-text",
                   "--no-poet", "--max-prompt-length", "30") == 0
    rows, letters = command_output(tmp_path / "plain-command")
    got = transform_output(json_records(lines), MINIMIND, tmp_path / "plain-transform", drop_text=True, no_poet=True,
                           max_prompt_length=30)
    assert len(rows) > 30 and got == (rows, [letter for letter in letters if a_users_row(json.loads(letter)["row"])])


# --- the README's examples --------------------------------------------------------------------------------------


def readme_examples() -> list[str]:
    """The README's Python blocks marked ``<!-- run by tests/test_api.py -->``."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return re.findall(r"<!-- run by tests/test_api\.py -->\n```python\n(.*?)```", text, flags=re.S)


def test_the_readme_examples_run_as_written(tmp_path):
    examples = readme_examples()
    assert len(examples) >= 2 and any("poet.prepare(" in e for e in examples)
    assert any("PreparePreferencePairs" in e and "beam.Pipeline" in e for e in examples)
    (tmp_path / "samples").symlink_to(REPO / "samples")
    for example in examples:
        done = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, cwd=tmp_path,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
        assert done.returncode == 0, f"{example}\n{done.stderr[-3000:]}"
    assert (tmp_path / "out").is_dir()


def test_the_readme_no_longer_calls_main_with_an_argv_list():
    assert "main([" not in (REPO / "README.md").read_text(encoding="utf-8")
