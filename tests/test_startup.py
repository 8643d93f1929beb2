"""What start-up pays for: each sub-command imports only what it uses, torch stays out of ``poet prepare``,
the tokenizer is loaded once per process, and the faster paths write the same bytes as before."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pyarrow
import pytest

from conftest import GPT2, HH_SAMPLE, SMOLLM2
from poet.transforms.contract import DATA_DIR, STATS_FILE

HEAVY = ("apache_beam", "transformers", "torch", "datasets", "matplotlib")


def imported_by(tmp_path, *argv: str) -> dict[str, bool]:
    """Run ``poet ARGV`` in a fresh interpreter; which heavy packages were imported by the end."""
    script = textwrap.dedent(f"""
        import contextlib, io, json, sys
        from poet.pipeline.commands.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main({list(argv)!r})
            except SystemExit as exit:  # --help
                code = exit.code
        print(json.dumps({{"code": code, **{{name: name in sys.modules for name in {HEAVY!r}}}}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_prepare_imports_no_torch_and_help_and_stats_import_neither_beam_nor_transformers(tmp_path):
    rows = tmp_path / "rows.jsonl"
    with gzip.open(HH_SAMPLE, "rt", encoding="utf-8") as handle:
        rows.write_text("".join(line for _, line in zip(range(8), handle)), encoding="utf-8")
    out = tmp_path / "out"
    prepared = imported_by(tmp_path, "prepare", "--input", str(rows), "--tokenizer", str(SMOLLM2),
                           "--output", str(out))
    assert prepared["code"] == 0 and (out / STATS_FILE).exists()
    assert prepared["apache_beam"] and prepared["transformers"]  # the check itself sees imports
    assert not prepared["torch"]
    for argv in (["--help"], ["prepare", "--help"], ["stats", str(out)]):
        seen = imported_by(tmp_path, *argv)
        assert seen["code"] == 0, argv
        assert not any(seen[name] for name in HEAVY), (argv, seen)


def test_deferred_import_binds_a_stand_in_that_imports_on_first_use(tmp_path, monkeypatch):
    from poet.transforms.deferred_import import deferred

    package = tmp_path / "heavy_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("import builtins\nbuiltins.heavy_pkg_ran = True\nVALUE = 42\n")
    (tmp_path / "user_mod.py").write_text("import heavy_pkg\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "heavy_pkg", raising=False)
    monkeypatch.delitem(sys.modules, "user_mod", raising=False)
    import builtins

    with deferred("heavy_pkg"):
        import user_mod
    assert not hasattr(builtins, "heavy_pkg_ran") and "heavy_pkg" not in sys.modules
    assert user_mod.heavy_pkg.VALUE == 42  # first use: the real package runs
    assert builtins.heavy_pkg_ran and sys.modules["heavy_pkg"].VALUE == 42
    del builtins.heavy_pkg_ran


def test_the_tokenizer_is_loaded_once_per_process(tmp_path, monkeypatch):
    from conftest import prepare
    from poet.pipeline.steps import tokenizer_source

    loads = []
    real = tokenizer_source.load_tokenizer
    monkeypatch.setattr(tokenizer_source, "load_tokenizer", lambda name: loads.append(name) or real(name))
    tokenizer_source._load.cache_clear()
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."}) + "\n")
    assert prepare(tmp_path / "out", "--input", str(rows), "--tokenizer", str(GPT2)) == 0
    assert loads == [str(GPT2)]  # the launcher's; the in-process worker reuses it


# sha256 of the shard written for the conftest ``prepared_sample`` (HH-RLHF sample, MiniMind tokenizer,
# --max-length 512) by commit 3d10fd2, main before the faster paths (288bb64 wrote other bytes: issue 10 changed
# the Parquet writer's options since); Parquet bytes depend on pyarrow's version.
BEFORE = {"25.0.1": {"train-00000-of-00001.parquet":
                     "7b42d021efefead9e7a706f7fb7307f7cf4a52241a1cdcdc0b898c832dcb66f6"}}


@pytest.mark.skipif(pyarrow.__version__ not in BEFORE, reason="reference bytes recorded with another pyarrow")
def test_shards_are_byte_identical_to_before(prepared_sample):
    written = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (prepared_sample / DATA_DIR).iterdir()}
    assert written == BEFORE[pyarrow.__version__]


def test_the_poet_command_ends_with_its_output_its_exit_handlers_and_mains_status(tmp_path):
    """``console`` (the ``poet`` script): what it printed to a pipe (block-buffered) arrives, exit handlers
    run, and the exit status is main's."""
    from importlib.metadata import entry_points

    assert entry_points(group="console_scripts")["poet"].value == "poet.pipeline.commands.cli:console"
    rows = tmp_path / "rows.jsonl"
    with gzip.open(HH_SAMPLE, "rt", encoding="utf-8") as handle:
        rows.write_text("".join(line for _, line in zip(range(8), handle)), encoding="utf-8")

    def poet(*argv: str) -> subprocess.CompletedProcess:
        script = ("import atexit, sys; atexit.register(print, 'exit handlers ran'); "
                  f"sys.argv = ['poet', *{list(argv)!r}]; from poet.pipeline.commands.cli import console; console()")
        return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)

    out = tmp_path / "out"
    done = poet("prepare", "--input", str(rows), "--tokenizer", str(SMOLLM2), "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2:] == [f"wrote {out}", "exit handlers ran"]
    assert "type hint will be ignored" not in done.stderr  # Beam's warning about a mistaken type hint
    assert (out / STATS_FILE).exists()
    failed = poet("prepare", "--input", str(rows), "--tokenizer", str(SMOLLM2), "--output", str(out),
                  "--max-lenght", "64")
    assert failed.returncode == 2 and failed.stdout == "exit handlers ran\n"
    assert failed.stderr.strip().splitlines()[-1].startswith("poet prepare: error:")
