"""Small shared helpers, each the one place for its rule: the first line of an error, Hub repo ids, help texts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from poet.transforms.errors import first_line
from poet.transforms.hub_ids import dataset_of_file, is_repo_id, parse_dataset

REPO = Path(__file__).resolve().parents[1]


def test_first_line():
    assert first_line(ValueError("bad thing\nTraceback details")) == "bad thing"
    assert first_line(OSError()) == "OSError" and first_line("") == "" and first_line("  \n x \n") == "x"


@pytest.mark.parametrize(("text", "repo_id"), [
    ("you/data", True), ("org-x/my.data_1", True), ("./tok", False), ("../tok", False), ("a/b/c", False),
    ("not-a-repo-id", False), ("hf://datasets/you/data", False),
])
def test_repo_ids(text, repo_id):
    assert is_repo_id(text) is repo_id


def test_dataset_ids_and_files():
    assert parse_dataset("you/data") == ("you/data", None)
    assert parse_dataset("hf://datasets/you/data@v1") == ("you/data", "v1")
    assert parse_dataset("out/../x") is None and parse_dataset("a/b/c") is None
    assert dataset_of_file("hf://datasets/you/data@main/train/part-0.parquet") == "you/data"
    assert dataset_of_file("gs://bucket/you/data/x.parquet") is None


@pytest.mark.parametrize("command", ["prepare", "publish", "stats", "train"])
def test_help_shows_only_meaningful_defaults(command, capsys):
    from poet.pipeline.commands.cli import main

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for noise in ("(default: None)", "(default: True)", "(default: False)"):
        assert noise not in text
    if command == "prepare":
        assert "(default: 2048)" in text


def test_benchmark_modules_do_not_import_each_other():
    def imports(name):
        tree = ast.parse((REPO / "benchmarks" / f"{name}.py").read_text())
        found = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        found |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
                  for a in n.names}
        return {m for m in found if m.startswith("benchmarks.")}

    assert not {"benchmarks.workloads"} & imports("training")
