"""A hostile user's inputs, rows, files and options (tests/hostile_corpus.py): nothing ends in a traceback.

Where a run is refused: exit status 2, exactly one line of error, nothing at
``--output`` (nor a staging folder). Where it runs: every row is kept or
dead-lettered with its reason, ``kept + dead-lettered == read``, and the good
rows are kept exactly.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import GPT2, HH_SAMPLE, MINIMIND, REPO, prepare
from hostile_corpus import (BUDGET_ROWS, BUDGET_TEMPLATE, KEPT, KEPT_BYTES, MAX_ROW_BYTES, OVERSIZED_ROWS, PLAIN_ROWS,
                            SHAREGPT_ROWS, assert_every_row_accounted_for, dead_letters, kept_rows, raising_tokenizer,
                            tokenizer_with_template_prefix, write_rows)
from poet.pipeline.commands.cli import main


def assert_refused(capfd, output: Path, code: int = 2) -> str:
    """Exactly one line on stderr, no traceback, nothing at (or next to) ``output``."""
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("poet")]
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("poet"), err
    assert not list(output.parent.glob(output.name + "*")), "a refused run must leave nothing"
    return lines[0]


# --------------------------------------------------------------------------- rows


def test_every_hostile_row_is_dead_lettered_with_its_reason_and_the_good_rows_kept(plain_run):
    source, output = plain_run
    assert_every_row_accounted_for(output, PLAIN_ROWS)
    good = [json.loads(line) for line, expected in PLAIN_ROWS if expected == KEPT]
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in kept_rows(output)] == [
        (g["prompt"], g["chosen"], g["rejected"]) for g in good]


def test_hostile_rows_keep_their_reasons_under_the_quality_options(plain_run, tmp_path):
    """Rows that fail parsing pass the data-quality rules untouched and keep their own reasons; the good rows all
    pass dedup and decontamination (nothing duplicated, nothing leaked) and only change split."""
    source, plain = plain_run
    evals = tmp_path / "evals.txt"
    evals.write_text(" ".join(["unrelated words"] * 10) + "\n\u2028\n")
    output = tmp_path / "out"
    assert prepare(output, "--input", str(source), "--tokenizer", str(GPT2), "--dedup", "--test-size", "0.5",
                   "--decontaminate", str(evals)) == 0
    assert dead_letters(output) == dead_letters(plain)
    kept = sorted(row["id"] for split in ("train", "test") for row in kept_rows(output, split))
    assert kept == sorted(row["id"] for row in kept_rows(plain)) and kept_rows(output, "test")


def test_dead_letters_keep_the_original_row_or_line(plain_run):
    source, output = plain_run
    lines = source.read_bytes().removeprefix(b"\xef\xbb\xbf").split(b"\n")
    for letter in dead_letters(output):
        raw = lines[letter["line"] - 1].rstrip(b"\r")
        if letter["reason"] == "malformed_json" or isinstance(letter["row"], str) and letter["line"] == 3:
            assert letter["row"] == raw.decode("utf-8", errors="backslashreplace")
        else:
            # lone surrogates included, written as \ud800 escapes; NaN and infinities as the strings "NaN"...
            assert letter["row"] == json.loads(raw, parse_constant=str)
        assert letter["detail"] or letter["reason"] in {"identical_responses", "empty_prompt"}


def test_a_raising_chat_template_and_bad_turns_are_dead_letters(tmp_path):
    """(In worker processes too: tests/test_scaleout.py prepares these rows with two of them.)"""
    tokenizer = raising_tokenizer(MINIMIND, tmp_path / "tokenizer")
    source = write_rows(tmp_path / "sharegpt.jsonl", SHAREGPT_ROWS, bom=False)
    output = tmp_path / "out"
    assert prepare(output, "--input", str(source), "--tokenizer", str(tokenizer), "--batch-size", "3") == 0
    assert_every_row_accounted_for(output, SHAREGPT_ROWS)
    [letter] = [d for d in dead_letters(output) if d["reason"] == "template_error"]
    assert "Still fine?" in {r["prompt"][-1]["content"] for r in kept_rows(output)}  # its batch-mate is kept
    assert "this template refuses the message" in letter["detail"]


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.jsonl.gz"])
def test_rows_over_max_row_bytes_are_dead_letters_with_their_first_bytes(tmp_path, name):
    source = write_rows(tmp_path / "rows.jsonl", OVERSIZED_ROWS, bom=False)
    if name.endswith(".gz"):
        source = tmp_path / name
        source.write_bytes(gzip.compress((tmp_path / "rows.jsonl").read_bytes(), mtime=0))
    output = tmp_path / "out"
    assert prepare(output, "--input", str(source), "--tokenizer", str(GPT2), "--max-row-bytes", str(MAX_ROW_BYTES)) == 0
    assert_every_row_accounted_for(output, OVERSIZED_ROWS)
    lines = (tmp_path / "rows.jsonl").read_bytes().split(b"\n")
    for letter in dead_letters(output):
        head = lines[letter["line"] - 1][:KEPT_BYTES]
        assert letter["row"] == head.decode("utf-8", errors="backslashreplace")
        assert "--max-row-bytes" in letter["detail"]


def test_a_template_over_its_budget_is_a_template_error_and_its_batch_mates_are_kept(tmp_path, monkeypatch):
    import poet.transforms.template_budget as budget

    monkeypatch.setattr(budget, "RENDER_SECONDS", 0.5)
    tokenizer = tokenizer_with_template_prefix(MINIMIND, tmp_path / "tokenizer", BUDGET_TEMPLATE)
    source = write_rows(tmp_path / "sharegpt.jsonl", BUDGET_ROWS, bom=False)
    output = tmp_path / "out"
    assert prepare(output, "--input", str(source), "--tokenizer", str(tokenizer), "--batch-size", "3") == 0
    assert_every_row_accounted_for(output, BUDGET_ROWS)
    details = [letter["detail"] for letter in dead_letters(output)]
    assert "ran over 0.5 s" in details[0] and "built a value over" in details[1]


def _named_templates(tmp_path, names: dict[str, str], folder: str = "named") -> Path:
    """MiniMind with its template under the first name, and other named templates (a list in the config)."""
    target = tokenizer_with_template_prefix(MINIMIND, tmp_path / folder, "")
    config = json.loads((target / "tokenizer_config.json").read_text())
    config["chat_template"] = [{"name": name, "template": template or config["chat_template"]}
                               for name, template in names.items()]
    (target / "tokenizer_config.json").write_text(json.dumps(config))
    return target


def test_named_chat_templates_render_the_default_and_are_all_fingerprinted(tmp_path):
    from poet.transforms.tokenization import load_tokenizer, tokenizer_fingerprint

    source = write_rows(tmp_path / "sharegpt.jsonl", SHAREGPT_ROWS[:1] + SHAREGPT_ROWS[4:5], bom=False)
    named = _named_templates(tmp_path, {"default": "", "tool_use": "{{ 'tools' }}"})
    other = _named_templates(tmp_path, {"default": "", "tool_use": "{{ 'other tools' }}"}, "other")
    fingerprints = {tokenizer_fingerprint(load_tokenizer(str(path))) for path in (named, other, MINIMIND)}
    assert len(fingerprints) == 3
    for tokenizer in (named, MINIMIND):
        assert prepare(tmp_path / f"out-{tokenizer.name}", "--input", str(source), "--tokenizer", str(tokenizer)) == 0
    assert kept_rows(tmp_path / "out-named") == kept_rows(tmp_path / f"out-{MINIMIND.name}")


def test_named_chat_templates_without_a_default_are_one_line(tmp_path, capfd):
    source = write_rows(tmp_path / "sharegpt.jsonl", SHAREGPT_ROWS[:1], bom=False)
    tokenizer = _named_templates(tmp_path, {"chat": "", "tool_use": "{{ 'tools' }}"})
    output = tmp_path / "out"
    assert prepare(output, "--input", str(source), "--tokenizer", str(tokenizer)) == 2
    assert "none named 'default'" in assert_refused(capfd, output)


# the property: garbage lines (any bytes, any JSON) mixed into good rows never cost a good row
_GOOD = [json.dumps({"prompt": f"Question {i}?", "chosen": f" Yes {i}.", "rejected": f" No {i}."}).encode()
         for i in range(4)]
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["prompt", "chosen", "rejected", "conversations", "from", "value", "role", "content"]) | st.text(),
        inner, max_size=4),
    max_leaves=8,
)
_garbage = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" ")),
    _json_values.map(lambda v: json.dumps(v).encode()),
    st.text(max_size=20).map(lambda t: json.dumps({"prompt": t, "chosen": [t], "rejected": {"from": t}}).encode()),
)


@pytest.fixture(scope="module")
def gpt2_preparer():
    from poet.transforms.contract import PrepareOptions
    from poet.transforms.prepare import OverlappingPreparer, PairPreparer
    from poet.transforms.tokenization import load_tokenizer

    preparer = OverlappingPreparer(PairPreparer(load_tokenizer(str(GPT2)), PrepareOptions(max_length=None),
                                                conversational=False))
    yield preparer
    preparer.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.booleans(), _garbage), min_size=1, max_size=12), st.integers(1, 5))
def test_good_rows_survive_any_garbage_around_them(gpt2_preparer, mixed, batch_size):
    import io

    from poet.transforms.prepare import DeadLetter, RowOrigin
    from poet.transforms.readers import iter_rows

    lines = []
    for i, (good_first, garbage) in enumerate(mixed):
        pair = [_GOOD[i % len(_GOOD)], garbage] if good_first else [garbage, _GOOD[i % len(_GOOD)]]
        lines += pair
    data = b"\n".join(lines) + b"\n"
    rows = [(RowOrigin("train", "f.jsonl", 0, s.line), s) for s in iter_rows("f.jsonl", io.BytesIO(data))]
    results = []
    for start in range(0, len(rows), batch_size):
        results += gpt2_preparer.push(rows[start:start + batch_size])
    results += gpt2_preparer.flush()

    # kept + dead == read: every line with content (a file's leading byte-order mark is not content)
    assert len(results) == len(rows) == sum(1 for line in [lines[0].removeprefix(b"\xef\xbb\xbf"), *lines[1:]]
                                            if line.strip())
    kept = {r.origin.line: r.row for r in results if not isinstance(r, DeadLetter)}
    for number, line in enumerate(lines, start=1):
        if line in _GOOD:
            good = json.loads(line)
            for column in ("prompt", "chosen", "rejected"):  # byte for byte
                assert kept[number][column].encode() == good[column].encode()


# --------------------------------------------------------------------------- files


def _gzip_of(rows: list[tuple[bytes, str]]) -> bytes:
    return gzip.compress(b"".join(line + b"\n" for line, _ in rows) * 50, mtime=0)


@pytest.mark.parametrize("damage", ["truncated", "crc"])
def test_a_damaged_gzip_is_one_line_and_leaves_nothing(tmp_path, capfd, damage):
    data = bytearray(_gzip_of(PLAIN_ROWS[:1]))
    if damage == "truncated":
        data = data[:-30]
    else:
        data[-6] ^= 0xFF  # the CRC32 trailer
    source = tmp_path / "train.jsonl.gz"
    source.write_bytes(bytes(data))
    output = tmp_path / "out"
    assert prepare(output, "--input", str(source), "--tokenizer", str(GPT2)) == 2
    line = assert_refused(capfd, output)
    assert str(source) in line and "nothing was written" in line


def test_a_file_that_vanishes_after_planning_is_one_line(tmp_path, capfd, monkeypatch):
    import poet.pipeline.launch.prepare as pipeline

    source = write_rows(tmp_path / "train.jsonl", PLAIN_ROWS)
    plan_inputs = pipeline.plan_inputs

    def plan_then_vanish(config):
        plan = plan_inputs(config)
        source.unlink()
        return plan

    monkeypatch.setattr(pipeline, "plan_inputs", plan_then_vanish)
    output = tmp_path / "out"
    assert prepare(output, "--input", str(source), "--tokenizer", str(GPT2)) == 2
    assert str(source) in assert_refused(capfd, output)


def _fifo(tmp_path: Path) -> str:
    os.mkfifo(tmp_path / "fifo.jsonl")
    return str(tmp_path / "fifo.jsonl")


def _symlink(tmp_path: Path) -> list[str]:
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "train.jsonl")
    return ["train=" + str(tmp_path / "train.jsonl"), "test=" + str(tmp_path / "link.jsonl")]


def _hard_link(tmp_path: Path) -> list[str]:
    os.link(tmp_path / "train.jsonl", tmp_path / "other-name.jsonl")
    return ["train=" + str(tmp_path / "train.jsonl"), "test=" + str(tmp_path / "other-name.jsonl")]


def _json_object(tmp_path: Path) -> list[str]:
    (tmp_path / "rows.json").write_text(json.dumps({"data": [json.loads(PLAIN_ROWS[0][0])]}))
    return [str(tmp_path / "rows.json")]


@pytest.mark.parametrize("inputs, message", [
    (lambda d: [_fifo(d)], "not a regular file"),
    (_symlink, "given twice"),
    (lambda d: [str(d / "train.jsonl"), f"test={d}/../{d.name}/train.jsonl"], "given twice"),
    (lambda d: [str(d / "train.jsonl"), os.path.relpath(d / "train.jsonl")], "given twice"),
    (lambda d: [str(d / "folder.jsonl")], "not a regular file"),
    (_hard_link, "given twice"),
    (_json_object, "holding a list under 'data'"),
], ids=["fifo", "symlink-across-splits", "dotdot", "relative-and-absolute", "folder", "hard-link", "json-object"])
def test_file_problems_are_refused_before_any_work(tmp_path, capfd, inputs, message):
    write_rows(tmp_path / "train.jsonl", PLAIN_ROWS[:1])
    (tmp_path / "folder.jsonl").mkdir()
    output = tmp_path / "out"
    args = [arg for value in inputs(tmp_path) for arg in ("--input", value)]
    assert prepare(output, *args, "--tokenizer", str(GPT2)) == 2
    assert message in assert_refused(capfd, output)


def test_a_json_file_over_64_rows_at_the_limit_is_one_line(tmp_path, capfd):
    """A .json array is parsed whole: its size is bounded instead of its rows."""
    source = tmp_path / "rows.json"
    source.write_text(json.dumps([json.loads(PLAIN_ROWS[0][0])] * 200))
    output = tmp_path / "out"
    assert prepare(output, "--input", str(source), "--tokenizer", str(GPT2), "--max-row-bytes", "100") == 2
    assert "convert it to JSON Lines" in assert_refused(capfd, output)


def test_glob_characters_in_a_file_name_are_escaped_in_brackets(tmp_path):
    """README: ``[brackets].jsonl`` is given as ``[[]brackets].jsonl`` (each of ``*?[`` inside ``[]``)."""
    write_rows(tmp_path / "[brackets].jsonl", PLAIN_ROWS[:1])
    write_rows(tmp_path / "b.jsonl", PLAIN_ROWS[-1:])  # what the unescaped glob would match instead
    output = tmp_path / "out"
    assert prepare(output, "--input", str(tmp_path / "[[]brackets].jsonl"), "--tokenizer", str(GPT2)) == 0
    assert [row["prompt"] for row in kept_rows(output)] == [json.loads(PLAIN_ROWS[0][0])["prompt"]]
    assert json.loads((output / "stats.json").read_text())["run"]["sources"][0]["file"] == "[brackets].jsonl"


# --------------------------------------------------------------------------- options and outputs


@pytest.mark.parametrize("extra, message", [
    (["--max_length", "3"], "did you mean --max-length?"),
    (["--max-lenght", "256"], "did you mean --max-length?"),
    (["--drop_text"], "did you mean --drop-text?"),
    (["--max-len", "3"], "did you mean --max-length?"),  # no silent abbreviation either
    (["--direct_num_worker", "2"], "did you mean --direct_num_workers?"),
    (["second.jsonl.gz"], "quote it"),
    (["--max-shard-size", "0"], "at least one byte"),
    (["--license", "evil ---\n---\nlicense: gpl-3.0"], "not a license id the Hub knows"),
    (["--license", "MIT-0"], "did you mean mit?"),
    (["--runner", "NoSuchRunner"], "unknown --runner"),
    (["--direct_num_workers", "two"], "invalid int value"),
    (["--input", "all=x.jsonl"], "reserved"),
    (["--input", "Train=x.jsonl"], "differ only by case"),
    (["--input", "tr\u0430in=x.jsonl"], "use ASCII letters"),  # a Cyrillic a
    (["--max-row-bytes", "0"], "at least one byte"),
], ids=lambda value: value if isinstance(value, str) else " ".join(value))
def test_option_mistakes_are_one_line(tmp_path, capfd, extra, message):
    source = write_rows(tmp_path / "train.jsonl", PLAIN_ROWS[:1])
    output = tmp_path / "out"
    assert prepare(output, "--input", str(source), "--tokenizer", str(GPT2), *extra) == 2
    assert message in assert_refused(capfd, output)


@pytest.mark.parametrize("argv, line", [
    (["train", "--loss", "bogus"], "poet train: error: argument --loss: invalid choice: 'bogus'"),
    (["prepare", "--tokenizer", "gpt2"], "poet prepare: error: the following arguments are required: --input"),
    (["stats"], "poet stats: error: the following arguments are required: DIR_OR_REPO_ID"),
    (["bogus"], "poet: error: argument COMMAND: invalid choice: 'bogus'"),
])
def test_a_parse_error_names_its_command(tmp_path, capfd, argv, line):
    assert main(argv) == 2
    assert assert_refused(capfd, tmp_path / "nothing").startswith(line)


@pytest.mark.parametrize("argv, line", [
    (["prepare", "--input", "SOURCE", "--tokenizer", "./nowhere", "--output", "OUT"],
     "poet prepare: error: no such tokenizer folder: ./nowhere"),
    (["score", "PREPARED", "--ref-model", "models/x/nowhere", "--output", "OUT"],
     "poet score: error: no such reference model folder: models/x/nowhere"),
    (["train", "--model", "./nowhere", "--data", "PREPARED", "--output-dir", "OUT"],
     "poet train: error: no such folder: ./nowhere"),
    (["train", "--model", "/nowhere/model", "--tokenizer", str(GPT2), "--data", "PREPARED", "--output-dir", "OUT"],
     "poet train: error: no such model folder: /nowhere/model"),
], ids=["tokenizer", "reference", "train-tokenizer", "train-model"])
def test_a_model_or_tokenizer_path_that_is_not_there_is_one_line(plain_run, tmp_path, capfd, monkeypatch, argv, line):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: the Hub must not be asked
    source, prepared = plain_run
    names = {"SOURCE": str(source), "PREPARED": str(prepared), "OUT": str(tmp_path / "out")}
    assert main([names.get(arg, arg) for arg in argv]) == 2
    assert assert_refused(capfd, tmp_path / "out").startswith(line)


def test_score_of_a_mistyped_local_folder_is_one_line_without_asking_the_hub(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: a Hub request would fail otherwise
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    assert main(["score", "out/typo", "--ref-model", "model", "--output", "scored"]) == 2
    assert "no such folder: out/typo (for the Hub dataset, not the local folder out/" in assert_refused(
        capfd, tmp_path / "scored")


@pytest.mark.parametrize("extra, message", [
    (["--ref-batch-tokns", "10"], "did you mean --ref-batch-tokens?"),  # not handed to Beam, which ignores it
    (["--batch-size", "0"], "must be at least 1"),
], ids=lambda value: value if isinstance(value, str) else " ".join(value))
def test_score_option_mistakes_are_one_line(tmp_path, capfd, extra, message):
    output = tmp_path / "scored"
    assert main(["score", str(tmp_path), "--ref-model", str(tmp_path / "model"), "--output", str(output),
                 *extra]) == 2
    assert message in assert_refused(capfd, output)


def test_beam_options_pass_through():
    from poet.pipeline.commands.beam_args import check_beam_args

    check_beam_args(["--runner", "DirectRunner", "--direct_num_workers", "2", "--direct_running_mode",
                     "multi_processing", "--temp_location", "gs://b/tmp", "--project", "p", "--region", "r",
                     "--setup_file", "./setup.py", "--sdk_container_image", "img", "--experiments", "x",
                     "--num_workers", "3", "--max_num_workers", "9"], [], "poet prepare")
    try:
        import apache_beam.runners.dask.dask_runner  # noqa: F401 - needs dask
    except ImportError:
        return
    check_beam_args(["--dask_client_address", "127.0.0.1:8786"], [], "poet prepare")


@pytest.mark.parametrize("where, message", [
    (lambda d: "/", "system location"),
    (lambda d: "/proc/poet-out", "system location"),
    (lambda d: str(d / "file.txt" / "out"), "which is a file"),
    (lambda d: str(d / "file.txt"), "is a file"),
], ids=["root", "proc", "inside-a-file", "a-file"])
def test_bad_output_locations_are_refused_before_any_work(tmp_path, capfd, where, message):
    (tmp_path / "file.txt").write_text("not a folder")
    source = write_rows(tmp_path / "train.jsonl", PLAIN_ROWS[:1])
    assert main(["prepare", "--input", str(source), "--tokenizer", str(GPT2), "--output", where(tmp_path)]) == 2
    err = capfd.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert (tmp_path / "file.txt").read_text() == "not a folder"


def test_overwrite_replaces_only_a_folder_poet_wrote(tmp_path, capfd, plain_run):
    source, prepared = plain_run
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    assert prepare(mine, "--input", str(source), "--tokenizer", str(GPT2), "--overwrite") == 2
    assert "did not write it" in capfd.readouterr().err
    assert (mine / "thesis.tex").read_text() == "years of work"


def test_a_second_run_on_the_same_output_does_not_replace_the_first(tmp_path, capfd, monkeypatch):
    """The target appears while the run works (another run finished first): the final move refuses it."""
    import poet.pipeline.launch.staged as staged

    source = write_rows(tmp_path / "train.jsonl", PLAIN_ROWS)
    output = tmp_path / "out"
    write_manifest = staged.write_manifest

    def first_run_finishes_meanwhile(folder, document):
        write_manifest(folder, document)
        output.mkdir()
        (output / "from-the-other-run").write_text("first")

    monkeypatch.setattr(staged, "write_manifest", first_run_finishes_meanwhile)
    assert prepare(output, "--input", str(source), "--tokenizer", str(GPT2)) == 2
    err = capfd.readouterr().err
    assert "appeared while this run was working" in err and "Traceback" not in err
    assert [p.name for p in output.iterdir()] == ["from-the-other-run"]
    assert not list(tmp_path.glob("out.poet-*"))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_ends_the_run_with_one_line_and_no_staging_folder(tmp_path, signum):
    """SIGTERM (a scheduler, ``kill``) and SIGHUP (the terminal closed, an ssh session lost)."""
    output = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "poet.pipeline.commands.cli", "prepare", "--input", str(HH_SAMPLE), "--tokenizer",
         str(MINIMIND), "--output", str(output), "--batch-size", "8"],
        cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("out.poet-staging-*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list(tmp_path.glob("out.poet-staging-*")), "the run never started"
        process.send_signal(signum)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "poet prepare: interrupted"
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- the other commands


@pytest.mark.parametrize("damage", [b"", b"{\"schema_version\": 1, \"splits\": ", b"[1, 2]", b"\xff\xfe"])
def test_stats_on_a_damaged_stats_json_is_one_line(tmp_path, capfd, damage):
    (tmp_path / "stats.json").write_bytes(damage)
    assert main(["stats", str(tmp_path)]) == 2
    err = capfd.readouterr().err
    assert "is damaged" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("option", ["--weight-decay", "--max-grad-norm", "--learning-rate"])
@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_train_refuses_non_finite_numbers_in_one_line(tmp_path, capfd, option, value):
    assert main(["train", "--data", str(tmp_path), "--model", str(tmp_path), "--output-dir", str(tmp_path / "run"),
                 option, value]) == 2
    err = capfd.readouterr().err
    assert option in err and len(err.strip().splitlines()) == 1


def test_temporary_tokenizer_folders_are_removed(tmp_path, monkeypatch):
    import tempfile

    from poet.pipeline.steps.tokenizer_source import TokenizerSource

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    tokenizer = TokenizerSource.resolve(str(GPT2)).load()
    assert tokenizer.name_or_path == str(GPT2) and tokenizer("hi")["input_ids"]
    assert not list(tmp_path.iterdir())


def test_other_commands_refuse_unknown_options_with_a_suggestion(tmp_path, capfd):
    assert main(["publish", str(tmp_path), "--repo-id", "alice/x", "--privat"]) == 2
    err = capfd.readouterr().err
    assert err.strip() == "poet publish: error: unrecognized argument --privat; did you mean --private?"
