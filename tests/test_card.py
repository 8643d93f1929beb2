"""The dataset card: a YAML header that ``datasets`` and the Hub read back exactly (and that ``load_dataset``
verifies the splits against), a body that no user string can break, and honest wording for ``--no-poet``."""

from __future__ import annotations

import gzip
import html
import json
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from datasets import Features, SplitInfo, load_dataset
from datasets.exceptions import NonMatchingSplitsSizesError
from huggingface_hub import DatasetCard
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import HH_SAMPLE, MINIMIND, prepare
from poet.transforms import contract
from poet.transforms.card import (card_metadata, fenced, md_code, md_text, one_line, render_card, snippet_splits,
                                  yaml_header)
from poet.transforms.contract import PrepareOptions, RunDescription, Source, TokenizerInfo
from poet.transforms.schema import preference_features
from poet.transforms.stats import LengthStats
from poet.transforms.stats_file import build_stats_document

FEATURES = preference_features(conversational=True, include_text=True)
SECTIONS = ["The POET rule", "Columns", "Statistics", "Load it", "Train on it", "Provenance"]
PNG = b"\x89PNG\r\n\x1a\n"
# every way a string could break YAML front matter, Markdown or the Jinja template
EVIL_DIR = "src ---\n: | {{ 7*7 }} `x` <i>"
EVIL_TOKENIZER = "tok ---\n: | {{ 7*7 }} ``x`` *y*"
SAME = {"chosen": "\n\nHuman: hi\n\nAssistant: same", "rejected": "\n\nHuman: hi\n\nAssistant: same"}
EVIL_ROW = {"chosen": "\n\nHuman: ---\nlicense: evil\n---\n{{ 7*7 }} | a\n\nAssistant: yes indeed",
            "rejected": "\n\nHuman: ---\nlicense: evil\n---\n{{ 7*7 }} | a\n\nAssistant: no"}


def markdown():
    markdown_it = pytest.importorskip("markdown_it")  # installed with huggingface_hub (typer -> rich)
    return markdown_it.MarkdownIt("js-default")  # CommonMark + GFM tables, like the Hub's renderer


class _Html(HTMLParser):
    """Headings and table rows (cell texts) of rendered HTML."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.headings, self.tables, self._cell, self._heading = [], [], None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag in ("h1", "h2", "h3"):
            self._heading = (tag, "")

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell)
            self._cell = None
        elif tag in ("h1", "h2", "h3") and self._heading:
            self.headings.append(self._heading)
            self._heading = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._heading is not None:
            self._heading = (self._heading[0], self._heading[1] + data)


def parse_html(text: str) -> _Html:
    parser = _Html()
    parser.feed(text)
    return parser


def body_of(card_text: str) -> str:
    return DatasetCard(card_text).text


def read_card(folder: Path) -> str:
    return (folder / "README.md").read_text(encoding="utf-8")


def stats_document(folder: Path) -> dict:
    return json.loads((folder / "stats.json").read_text())


@pytest.fixture(scope="module")
def evil(tmp_path_factory) -> Path:
    """A small run whose source paths, tokenizer path and license hold YAML/Markdown/Jinja syntax and line
    breaks, with a second split ``test`` whose every row is dead-lettered (identical responses, bad JSON)."""
    root = tmp_path_factory.mktemp("evil")
    sources = root / EVIL_DIR
    sources.mkdir()
    with gzip.open(HH_SAMPLE, "rt", encoding="utf-8") as handle:
        lines = [line for line in handle if line.strip()][:40]
    (sources / f"train {EVIL_DIR}.jsonl").write_text("".join(lines) + json.dumps(EVIL_ROW) + "\n", encoding="utf-8")
    (sources / "test.jsonl").write_text((json.dumps(SAME) + "\n") * 5 + "{not json\n\n", encoding="utf-8")
    tokenizer = root / EVIL_TOKENIZER
    shutil.copytree(MINIMIND, tokenizer)
    output = root / "out"
    assert prepare(output, "--input", f"train={sources}/train*.jsonl", "--input", f"test={sources}/test.jsonl",
                   "--tokenizer", str(tokenizer), "--license", "other", "--max-length", "512") == 0
    return output


# --- the YAML header --------------------------------------------------------------------------------------------


def test_card_metadata_parses_back(prepared_sample):
    data = DatasetCard.load(prepared_sample / "README.md").data
    document = stats_document(prepared_sample)
    assert data.to_dict() == card_metadata(document, FEATURES)
    assert data.license == "mit"
    assert data.task_categories == ["text-generation"]
    assert data.tags == ["dpo", "preference", "poet"]
    assert data.size_categories == ["1K<n<10K"]
    assert data.source_datasets == [HH_SAMPLE.name]  # a file name, never a path of the machine that ran the job
    assert data.configs == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    info = data.dataset_info
    assert Features._from_yaml_list(info["features"]) == FEATURES
    shards = document["shards"]["train"]
    assert info["splits"] == [{"name": "train", "num_bytes": sum(s["num_bytes"] for s in shards),
                               "num_examples": 2229}]
    assert info["download_size"] == sum(p.stat().st_size for p in (prepared_sample / "data").glob("*.parquet"))
    assert info["dataset_size"] == sum(s["num_bytes"] for s in shards)


@pytest.mark.parametrize("which", ["prepared_sample", "evil"])
def test_dataset_info_and_configs_are_what_push_to_hub_writes(which, request, tmp_path):
    """Same dict as datasets' own card update in ``DatasetDict.push_to_hub`` given the same splits and sizes."""
    from datasets.arrow_dataset import _get_updated_dataset_card
    from fsspec.implementations.dirfs import DirFileSystem
    from fsspec.implementations.local import LocalFileSystem

    folder = request.getfixturevalue(which)
    document = stats_document(folder)
    splits = [s for s, shards in document["shards"].items() if sum(x["num_rows"] for x in shards)]
    infos = [SplitInfo(name=s, num_bytes=sum(x["num_bytes"] for x in document["shards"][s]),
                       num_examples=sum(x["num_rows"] for x in document["shards"][s])) for s in splits]
    uploaded = [sum((folder / x["file"]).stat().st_size for x in document["shards"][s]) for s in splits]
    (tmp_path / "repo").mkdir()
    card, _ = _get_updated_dataset_card(
        fs=DirFileSystem(str(tmp_path / "repo"), LocalFileSystem()), config_name="default", splits_info=infos,
        features=FEATURES, data_dir="data", set_default=None, uploaded_sizes=uploaded, deleted_sizes=[],
        remove_other_splits=True)
    ours = DatasetCard.load(folder / "README.md").data.to_dict()
    theirs = card.data.to_dict()
    assert ours["dataset_info"] == theirs["dataset_info"]
    assert ours["configs"] == theirs["configs"]


def test_load_dataset_verifies_the_split_sizes_of_the_card(prepared_sample, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(prepared_sample / "data", copy / "data")
    card = read_card(prepared_sample)
    (copy / "README.md").write_text(card, encoding="utf-8")
    assert load_dataset(str(copy), cache_dir=str(tmp_path / "cache-ok"))["train"].num_rows == 2229

    assert card.count("num_examples: 2229\n") == 1
    (copy / "README.md").write_text(card.replace("num_examples: 2229\n", "num_examples: 2228\n"), encoding="utf-8")
    with pytest.raises(NonMatchingSplitsSizesError):
        load_dataset(str(copy), cache_dir=str(tmp_path / "cache-tampered"))


def test_the_card_is_rendered_from_stats_json_alone(prepared_sample, prepared_sample_no_poet):
    for folder in (prepared_sample, prepared_sample_no_poet):
        document = stats_document(folder)
        assert read_card(folder) == render_card(document, FEATURES) == render_card(document, FEATURES)


def test_repo_id_goes_into_the_title_and_the_snippets(prepared_sample):
    text = render_card(stats_document(prepared_sample), FEATURES, repo_id="someone/hh-poet")
    assert "\n# someone\\/hh\\-poet\n" in text
    assert 'load_dataset("someone/hh-poet")' in text
    assert "poet train --data someone/hh-poet --model MODEL --loss simpo" in text
    assert "PATH_OR_REPO_ID" not in text
    assert "PATH_OR_REPO_ID" in read_card(prepared_sample)  # no repo id: a placeholder, explained
    assert DatasetCard(text).data.to_dict() == DatasetCard.load(prepared_sample / "README.md").data.to_dict()


# --- the body ---------------------------------------------------------------------------------------------------


def test_body_sections_statistics_plots_and_provenance(prepared_sample):
    text = read_card(prepared_sample)
    page = parse_html(markdown().render(body_of(text)))
    assert [h for tag, h in page.headings if tag == "h2"] == SECTIONS
    assert "https://arxiv.org/abs/2506.09457" in text
    for path in ("plots/train_lengths.png", "plots/train_chosen_vs_rejected.png"):
        assert f"]({path})" in text and (prepared_sample / path).read_bytes().startswith(PNG)
    stats = stats_document(prepared_sample)["splits"]["train"]
    rows = {row[0]: row[1:] for table in page.tables for row in table}
    assert rows["pairs kept"] == [f"{stats['pairs']:,}"]
    assert rows["completion tokens removed by POET"] == [
        f"{stats['completion_tokens']['removed']:,} ({stats['completion_tokens']['removed_pct']:.1f}%)"]
    assert rows["chosen (before POET)"][5] == f"{stats['lengths']['chosen']['p50']:,.1f}"
    assert rows["dead letters: prompt_too_long"] == [str(stats["dead_letter_reasons"]["prompt_too_long"])]
    run = stats_document(prepared_sample)["run"]
    assert rows["sha256 of its files and chat template"] == [run["tokenizer"]["sha256"]]
    assert rows["chat template"] == ["yes"]
    assert rows["license"] == ['"mit"'] and rows["max_length"] == ["512"]
    assert rows["datasets"] == [run["versions"]["datasets"]]
    assert "created" not in run and "Prepared on" not in text  # no date: a re-run gives the same bytes
    assert 'load_dataset("PATH_OR_REPO_ID")' in text
    assert "--loss simpo" in text and "PretokenizedDPOTrainer" in text


def test_no_poet_card_says_the_completions_are_not_truncated(prepared_sample, prepared_sample_no_poet):
    text = body_of(read_card(prepared_sample_no_poet))
    top = text.split("## The POET rule")[0]
    assert "NOT cut to equal length" in top and "`poet train --poet`" in top
    assert re.search(r"poet train --data \S+ --model \S+ --loss simpo --output-dir \S+ --poet\n", text)
    assert "pairs POET would cut" in text and "pairs cut by POET" not in text
    poet_text = body_of(read_card(prepared_sample))
    assert "NOT" not in poet_text and "--poet\n" not in poet_text and "pairs cut by POET" in poet_text


def test_strings_from_options_and_paths_cannot_break_the_card(evil):
    text = read_card(evil)
    document = stats_document(evil)
    data = DatasetCard.load(evil / "README.md").data
    assert data.to_dict() == card_metadata(document, FEATURES)
    assert data.license == "other"  # --license takes only the Hub's ids (test_hostile.py)
    assert data.source_datasets == [source["file"] for source in document["run"]["sources"]]
    assert any(EVIL_DIR in source for source in data.source_datasets)
    assert data.tags == ["dpo", "preference", "poet"]
    assert yaml.safe_load(text.split("\n---\n", 1)[0].removeprefix("---\n")) == data.to_dict()

    rendered = markdown().render(body_of(text))
    page = parse_html(rendered)
    assert [h for tag, h in page.headings if tag == "h1"] == ["POET preference pairs"]
    assert [h for tag, h in page.headings if tag == "h2"] == SECTIONS
    for table in page.tables:  # no string added a cell
        assert len({len(row) for row in table}) == 1, table
    rows = {row[0]: row[1:] for table in page.tables for row in table}
    assert rows["name"] == [one_line(document["run"]["tokenizer"]["name"])]
    assert rows["license"] == [json.dumps("other")]
    sources = {row[0]: row[1] for table in page.tables if table[0] == ["split", "file"] for row in table[1:]}
    assert sources == {s["split"]: one_line(s["file"]) for s in document["run"]["sources"]}
    assert "<b>" not in rendered and "<i>" not in rendered and "<em>em</em>" not in rendered
    assert "{{ 7*7 }}" in html.unescape(rendered)  # shown as written, never evaluated


def test_a_split_with_no_kept_rows(evil, tmp_path):
    document = stats_document(evil)
    stats = document["splits"]["test"]
    assert (stats["read"], stats["pairs"], stats["dead_lettered"]) == (6, 0, 6)
    assert stats["dead_letter_reasons"] == {"identical_responses": 5, "malformed_json": 1}
    assert all(value is None for q in stats["lengths"].values() for key, value in q.items() if key != "count")
    assert stats["chosen_longer"] == {"count": 0, "pct": None} and stats["completion_tokens"]["removed_pct"] is None
    for name in ("test_lengths.png", "test_chosen_vs_rejected.png"):
        assert (evil / "plots" / name).read_bytes().startswith(PNG)

    data = DatasetCard.load(evil / "README.md").data
    assert [s["name"] for s in data.dataset_info["splits"]] == ["train"]  # datasets cannot load an empty split
    assert data.configs[0]["data_files"] == [{"split": "train", "path": "data/train-*"}]
    body = body_of(read_card(evil))
    assert "### Split test\n\n**This split has no pairs**" in body
    loaded = load_dataset(str(evil), cache_dir=str(tmp_path / "cache"))
    assert list(loaded) == ["train"] and loaded["train"].num_rows == document["splits"]["train"]["pairs"] == 41


# --- escaping, property-tested ----------------------------------------------------------------------------------

printable = st.lists(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")) | st.sampled_from(
    list("`|*_[]()<>#!\\-{}:\n\r\t &;") + ["---", "```", "{{", "}}", "\u2028", "\x85", "\\|"]),
    max_size=25).map("".join)


@settings(max_examples=150, deadline=None)
@given(printable)
def test_md_code_in_a_table_cell_renders_the_string(value):
    cells = parse_html(markdown().render(f"| a | b |\n| --- | --- |\n| x | {md_code(value)} |\n")).tables[0][1]
    assert len(cells) == 2
    assert cells[1] == (one_line(value) if one_line(value).strip() else "(empty)")


@settings(max_examples=150, deadline=None)
@given(printable)
def test_md_text_renders_the_string(value):
    rendered = markdown().render(f"before {md_text(value)} after\n")
    assert rendered.startswith("<p>") and rendered.count("<p>") == 1
    assert html.unescape(re.sub(r"<br />|<[^>]+>", "", rendered)).strip() == f"before {one_line(value)} after"


@settings(max_examples=100, deadline=None)
@given(printable)
def test_fenced_blocks_hold_any_text(value):
    rendered = markdown().render(fenced(value, "python") + "\n\nafter\n")
    assert rendered.count("<pre>") == 1 and rendered.endswith("<p>after</p>\n")


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=30), st.text(max_size=30))
@example("", "\x85")  # PyYAML writes NEL raw with allow_unicode and reads it back as a space
@example("a\u2028b", "---\n...\r\n: |")
def test_any_license_and_source_survive_the_yaml_header(license_, source):
    document = build_stats_document({"train": LengthStats()}, [("train", "data/train-00000-of-00001.parquet", 0, 0)],
                                    RunDescription(sources=(Source("train", source),), options=PrepareOptions(license=license_)),
                                    {"data/train-00000-of-00001.parquet": 10})
    metadata = card_metadata(document, FEATURES)
    header = yaml_header(metadata)
    assert yaml.safe_load(header) == metadata
    data = DatasetCard(f"---\n{header}---\n\n# body\n").data
    assert data.license == license_ and (data.source_datasets == [source] if source else True)


def test_a_minimal_document_renders(tmp_path):
    """A stats document with no provenance at all and only empty splits still gives a card that parses."""
    shard = "data/train-00000-of-00001.parquet"
    document = build_stats_document({"train": LengthStats()}, [("train", shard, 0, 0)], RunDescription(), {shard: 10})
    text = render_card(document, FEATURES)
    card = DatasetCard(text)
    assert card.data.to_dict() == card_metadata(document, FEATURES) and "license" not in card.data.to_dict()
    assert "**This split has no pairs**" in card.text
    assert [h for tag, h in parse_html(markdown().render(card.text)).headings if tag == "h2"] == SECTIONS


# --- the snippets' splits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sizes", "expected"), [
    ({"train": 10, "test": 5}, ("train", "test")),
    ({"test_prefs": 2000, "train_prefs": 61000}, ("train_prefs", "test_prefs")),  # UltraFeedback's names
    ({"train_gen": 61000, "test_gen": 1000, "train_prefs": 62000, "test_prefs": 2000}, ("train_prefs", "test_prefs")),
    ({"test": 100, "validation": 200, "main": 50}, ("main", "test")),
    ({"eval_set": 900, "other": 10}, ("other", "eval_set")),
    ({"test_prefs": 10}, (None, "test_prefs")),  # never train on a held-out split
    ({"a": 1, "b": 3}, ("b", None)),
])
def test_snippet_splits_follow_the_rule(sizes, expected):
    assert snippet_splits(sizes) == expected


def test_snippets_are_correct_for_ultrafeedback_split_names(tmp_path):
    """UltraFeedback's splits (train_prefs, test_prefs): the snippets train on train_prefs, evaluate on test_prefs."""
    shards = [(split, contract.shard_file(split, 0, 1), rows, 100) for split, rows in
              (("test_prefs", 2), ("train_prefs", 5))]
    stats = {split: LengthStats() for split, *_ in shards}
    document = build_stats_document(stats, shards, RunDescription(tokenizer=TokenizerInfo(name="org/model")),
                                    {name: 10 for _, name, _, _ in shards})
    text = body_of(render_card(document, FEATURES, repo_id="you/ultrafeedback-poet"))
    assert "poet train --data you/ultrafeedback-poet --split train_prefs --eval-split test_prefs --model org/model" \
        in text
    assert 'row = dataset["train_prefs"][0]' in text
    assert 'load_dataset("you/ultrafeedback-poet", split="train_prefs")' in text
    assert "test_prefs" not in text.split("## Train on it")[1].split("--eval-split test_prefs", 1)[1]
    assert "MODEL" not in text and "PATH_OR_REPO_ID" not in text


def test_a_prepared_ultrafeedback_layout_gets_correct_snippets(tmp_path):
    """End to end: splits named like UltraFeedback's; the card's snippets load and train on train_prefs."""
    from conftest import SHAREGPT_SAMPLE

    out, test_file = tmp_path / "uf", tmp_path / "test.json"
    shutil.copy(SHAREGPT_SAMPLE, test_file)
    assert prepare(out, "--input", f"test_prefs={test_file}", "--input", f"train_prefs={SHAREGPT_SAMPLE}",
                   "--tokenizer", str(MINIMIND), "--license", "mit") == 0
    text = body_of(read_card(out))
    assert re.search(r"poet train --data PATH_OR_REPO_ID --split train_prefs --eval-split test_prefs --model MODEL ",
                     text)
    assert 'row = dataset["train_prefs"][0]' in text and 'split="train_prefs")' in text
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0].replace("PATH_OR_REPO_ID", str(out))
    namespace: dict = {}
    exec(snippet, namespace)  # the card's load snippet, as a user would paste it
    assert len(namespace["row"]["prompt_ids"]) > 0


# --- the TRL snippet, run as written -------------------------------------------------------------------------
SNIPPET_PAIRS = 16


@pytest.fixture(scope="module")
def snippet_folders(tiny_model, tmp_path_factory) -> dict[str, Path]:
    """The first 16 HH pairs prepared three ways: POET with reference columns, POET, and --no-poet."""
    root = tmp_path_factory.mktemp("snippets")
    data = root / "hh-16.jsonl.gz"
    with gzip.open(HH_SAMPLE, "rt") as source, gzip.open(data, "wt") as target:
        target.writelines(line for _, line in zip(range(SNIPPET_PAIRS), source))
    folders = {}
    for name, extra in {"poet-ref": ["--ref-model", str(tiny_model)], "poet": [], "no-poet": ["--no-poet"]}.items():
        assert prepare(root / name, "--input", str(data), "--tokenizer", str(MINIMIND), "--max-length", "256",
                       "--license", "mit", *extra) == 0  # fmt: skip
        folders[name] = root / name
    return folders


def trl_snippet(folder: Path) -> str:
    """The card's TRL code block, as a user copies it."""
    text = body_of(read_card(folder))
    return text.split("With [TRL]", 1)[1].split("```python\n", 1)[1].split("\n```", 1)[0]


@pytest.mark.parametrize("variant", ["poet-ref", "poet", "no-poet"])
def test_the_trl_snippet_runs_as_written_with_trl(snippet_folders, tiny_model, tmp_path, monkeypatch, variant):
    """The snippet trains one stated epoch with TRL 1.16 on the stored ids (bf16 only where the machine has it),
    with no reference model when the columns are there, and cuts --no-poet completions to the POET length."""
    import trl

    assert trl.__version__ == "1.16.0"
    folder = snippet_folders[variant]
    snippet = trl_snippet(folder)
    assert "num_train_epochs=1" in snippet and "bf16=torch.cuda.is_available()" in snippet
    # the two placeholders the card asks the reader to replace: the dataset and a model with its tokenizer
    snippet = snippet.replace('"PATH_OR_REPO_ID"', json.dumps(str(folder))).replace('"MODEL"', json.dumps(str(tiny_model)))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(snippet, "card-snippet", "exec"), namespace)

    trainer, stored = namespace["trainer"], load_dataset(str(folder), split="train")
    assert trainer.state.global_step == -(-len(stored) // 8)  # one epoch of TRL's default 8 pairs per batch
    assert (trainer.ref_model is None) == (variant == "poet-ref")
    trained = trainer.train_dataset
    poet_lengths = [min(len(c), len(r)) for c, r in zip(stored["chosen_ids"], stored["rejected_ids"])]
    assert [len(ids) for ids in trained["chosen_ids"]] == [len(ids) for ids in trained["rejected_ids"]] == poet_lengths
    assert trained["prompt_ids"] == stored["prompt_ids"]
    if variant == "poet-ref":
        assert trained["ref_chosen_logps"] == stored["ref_chosen_logps"]
    assert all(math.isfinite(record["train_loss"]) for record in trainer.state.log_history if "train_loss" in record)
