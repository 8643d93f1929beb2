"""The dataset contract: every file and column name is spelled in transforms/contract.py alone, the shards'
features and the card's columns come from it, and the run description survives stats.json."""

from __future__ import annotations

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
# Names that cannot be mistaken for English or for an input field (the text columns share the names of TRL's
# input fields, which transforms/formats.py reads); folders count when used as a path ("data/...").
NAMES = [name for name in contract.COLUMNS if "_" in name] + [contract.CARD_FILE, contract.STATS_FILE,
                                                                contract.DEAD_LETTER_DIR]
FOLDERS = [contract.DATA_DIR, contract.PLOTS_DIR]
_LITERAL = re.compile(r"""(["'])((?:(?!\1).)*\b(?:%s)\b(?:(?!\1).)*|(?:(?!\1).)*\b(?:%s)/(?:(?!\1).)*)\1"""
                      % ("|".join(map(re.escape, NAMES)), "|".join(map(re.escape, FOLDERS))))


def test_file_and_column_names_are_spelled_in_the_contract_only():
    """No quoted string of the code or the card template holds a column, file or folder name of the contract."""
    found = []
    for folder in PACKAGE_FOLDERS:
        for path in sorted((REPO / folder).rglob("*")):
            if path.suffix not in (".py", ".j2") or path.name == "contract.py" or WORK in path.parents:
                continue  # benchmarks/_work holds generated files, e.g. an older commit's code to compare with
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                stripped = line.strip()
                if stripped.startswith(("#", '"""', "{#")) or path.suffix == ".j2" and "{{" not in line:
                    continue  # comments, docstrings' first lines and the card's prose about columns
                for match in _LITERAL.finditer(line.split(" # ")[0]):
                    found.append(f"{path.relative_to(REPO)}:{number}: {match.group(2)}")
    assert found == []


def test_the_checker_above_would_see_a_spelled_name():
    assert _LITERAL.search('row["chosen_ids"]') and _LITERAL.search("open(f'{folder}/stats.json')")
    assert _LITERAL.search('glob("data/*.parquet")') and _LITERAL.search("'README.md'")
    assert not _LITERAL.search("pair.chosen_ids") and not _LITERAL.search('"the data is conversational"')


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
