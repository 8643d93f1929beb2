"""The dataset contract: every file and column name is spelled in transforms/contract.py alone, the shards'
features and the card's columns come from it, and the run description survives stats.json."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from conftest import HH_SAMPLE
from poet.transforms import contract
from poet.transforms.contract import PrepareOptions, RunDescription, Source, SourceRepo, TokenizerInfo
from poet.transforms.stats import LengthStats
from poet.transforms.stats_file import build_stats_document, dumps

REPO = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = ("pipeline", "transforms", "trainer", "dataset_cards", "benchmarks")
WORK = REPO / "benchmarks" / "_work"
# Every column name but the text columns' (prompt, chosen, rejected are also the input fields of TRL's formats,
# which transforms/formats.py reads, and the length quantities of the statistics), with or without an
# underscore (id), and the file and folder names; a folder counts when used as a path ("data/...").
NAMES = {name for name in contract.COLUMNS if contract.COLUMNS[name] not in contract.TEXT_COLUMNS} | {
    contract.CARD_FILE, contract.STATS_FILE, contract.MANIFEST_FILE, contract.DEAD_LETTER_DIR}
FOLDERS = (contract.DATA_DIR, contract.PLOTS_DIR)


def spells_a_name(text: str) -> bool:
    """Whether a string constant is a contract name, or a path with one in it."""
    parts = text.split("/")
    return (text in NAMES or any(part in NAMES for part in parts if "." in part or "_" in part)
            or any(folder in parts[:-1] for folder in FOLDERS))


def string_constants(source: str):
    """``(line, text)`` of every string constant of Python source (f-strings' literal parts too), docstrings
    left out."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def template_strings(source: str):
    """``(line, text)`` of the string literals inside the card template's Jinja expressions."""
    for number, line in enumerate(source.splitlines(), 1):
        for expression in re.findall(r"{[{%](.*?)[%}]}", line):
            for _, text in re.findall(r"""(["'])(.*?)\1""", expression):
                yield number, text


def test_file_and_column_names_are_spelled_in_the_contract_only():
    """No string constant of the code (its syntax tree, docstrings aside) or of the card template's expressions
    holds a column, file or folder name of the contract."""
    found = []
    for folder in PACKAGE_FOLDERS:
        for path in sorted((REPO / folder).rglob("*")):
            if path.suffix not in (".py", ".j2") or path.name == "contract.py" or WORK in path.parents:
                continue  # benchmarks/_work holds generated files, e.g. an older commit's code to compare with
            source = path.read_text(encoding="utf-8")
            strings = string_constants(source) if path.suffix == ".py" else template_strings(source)
            found += [f"{path.relative_to(REPO)}:{number}: {text!r}" for number, text in strings if spells_a_name(text)]
    assert found == []


def test_the_checker_above_would_see_a_spelled_name():
    def seen(source: str) -> bool:
        return any(spells_a_name(text) for _, text in string_constants(source))

    assert seen('row["chosen_ids"]') and seen("open(f'{folder}/stats.json')") and seen('row["id"]')
    assert seen('glob("data/*.parquet")') and seen("name = 'README.md'") and seen('f"{out}/dead_letter/{s}"')
    assert not seen("pair.chosen_ids") and not seen('"the data is conversational"') and not seen('"identity"')
    assert not seen('def f():\n    """Reads stats.json and the chosen_ids column."""')
    assert any(spells_a_name(t) for _, t in template_strings("{{ row['ref_chosen_logps'] }} and chosen_ids"))


def test_shard_names_follow_the_pattern():
    name = contract.shard_file("train_prefs", 3, 12)
    assert name == "data/train_prefs-00003-of-00012.parquet"
    assert contract.SHARD_PATTERN.fullmatch(name)["split"] == "train_prefs"
    assert name.startswith(contract.split_shards_prefix("train_prefs"))
    assert not contract.SHARD_PATTERN.fullmatch(contract.dead_letter_file("train"))


def test_shard_names_past_99999_shards_follow_the_pattern():
    name = contract.shard_file("train", 123_456, 200_000)
    assert name == "data/train-123456-of-200000.parquet"
    assert contract.SHARD_PATTERN.fullmatch(name).group("split", "index", "count") == ("train", "123456", "200000")


def test_features_follow_the_columns():
    features = contract.features(contract.prepared_columns(include_text=False), conversational=False)
    assert list(features) == ["id", "prompt_ids", "chosen_ids", "rejected_ids", "prompt_length",
                              "chosen_length_orig", "rejected_length_orig", "poet_length"]
    with_text = contract.features(contract.prepared_columns(include_text=True), conversational=True)
    assert list(with_text)[-3:] == [column.name for column in contract.TEXT_COLUMNS]
    assert contract.TRAINER_COLUMNS == ("prompt_ids", "chosen_ids", "rejected_ids")
    assert all(column.description for column in contract.COLUMNS.values())


def test_the_run_description_round_trips_through_stats_json():
    run = RunDescription(
        sources=(Source("train", "a.jsonl"), Source("test", "hf://datasets/u/d@" + "c" * 40 + "/b.parquet")),
        source_repos=(SourceRepo("u/d", "c" * 40, "main"),),
        conversational=True,
        tokenizer=TokenizerInfo("tok", "ab" * 32, "</s>", 100, True),
        options=PrepareOptions(inputs=("train=a.jsonl", "test=b.parquet"), max_length=512, poet=False, license="mit"),
        versions={"datasets": "5.2.0", "trl": None},
    )
    document = json.loads(dumps(build_stats_document({"train": LengthStats()}, [], run)))
    assert RunDescription.from_json(document["run"]) == run
    assert list(document["run"]) == ["sources", "source_repos", "conversational", "tokenizer", "options",
                                     "versions"]
    assert RunDescription.from_json({}) == RunDescription()  # a hand-made document: every field defaults
    newer = {"options": {"max_length": 5, "a_newer_option": 1, "output": "/home/someone/out"}}
    assert RunDescription.from_json(newer).options == PrepareOptions(max_length=5)  # only the recorded fields


def test_stats_json_records_the_options_that_shape_the_data_and_no_path_of_the_launcher(prepared_sample):
    from dataclasses import fields

    recorded = json.loads((prepared_sample / contract.STATS_FILE).read_text())["run"]["options"]
    assert list(recorded) == [f.name for f in fields(PrepareOptions) if f.metadata == contract.RECORDED]
    assert recorded["inputs"] == [f"train={HH_SAMPLE.name}"] and recorded["license"] == "mit"
    assert str(prepared_sample.parent) not in json.dumps(recorded)


def test_a_prepared_folder_has_the_contract_layout(prepared_sample):
    run = RunDescription.from_json(json.loads((prepared_sample / contract.STATS_FILE).read_text())["run"])
    assert run.sources == (Source("train", HH_SAMPLE.name),) and run.options.license == "mit"
    files = {p.relative_to(prepared_sample).as_posix() for p in prepared_sample.rglob("*") if p.is_file()}
    shards = {f for f in files if contract.SHARD_PATTERN.fullmatch(f)}
    assert shards and files == {contract.CARD_FILE, contract.STATS_FILE, contract.MANIFEST_FILE,
                                contract.dead_letter_file("train"),
                                *(contract.plot_file("train", kind) for kind in contract.PLOT_KINDS), *shards}


def test_the_default_shard_size_is_one_number():
    from poet.pipeline.commands.options import DEFAULT_MAX_SHARD_SIZE, parse_size

    assert parse_size(DEFAULT_MAX_SHARD_SIZE) == contract.DEFAULT_MAX_SHARD_BYTES == PrepareOptions().max_shard_bytes
