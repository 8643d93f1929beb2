"""The dataset card (``README.md``) of a prepared folder, rendered from its stats.json document.

Pure and Beam-free: :func:`render_card` takes the stats.json document and the
``datasets.Features`` of the shards and returns the card's text. The YAML header
is the dict ``datasets``' ``push_to_hub`` would write (``dataset_info`` with the
exact features and split sizes, ``configs`` with the data files per split) plus
the Hub's descriptive fields, dumped with ``yaml.safe_dump``: no user string is
ever pasted into YAML. The body comes from ``dataset_cards/README.md.j2``; every
string that comes from the data or from the user's options goes through one of
the Markdown escapers below (:func:`md_text`, :func:`md_cell`, :func:`fenced`).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
import shlex

import yaml

from poet.transforms import contract
from poet.transforms.contract import RunDescription
from poet.transforms.hub_ids import dataset_of_file, is_repo_id
from poet.transforms.decontamination import NGRAM
from poet.transforms.plots import plot_paths
from poet.transforms.reasons import Reason
from poet.transforms.stats import PERCENTILES, QUANTITIES
from poet.transforms.stats_table import format_number, format_pct

TEMPLATE = f"{contract.CARD_FILE}.j2"
PAPER_URL = "https://arxiv.org/abs/2506.09457"
TAGS = ["dpo", "preference", "poet"]
TASK_CATEGORIES = ["text-generation"]

_LINE_BREAKS = re.compile(r"\r\n|[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_PUNCTUATION = re.compile(r"([!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])")
_SIZE_CATEGORIES = [(10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M"),
                    (10**7, "1M<n<10M"), (10**8, "10M<n<100M"), (10**9, "100M<n<1B"), (10**10, "1B<n<10B"),
                    (10**11, "10B<n<100B"), (10**12, "100B<n<1T")]


# --- Markdown escaping ----------------------------------------------------------------------------------------


def one_line(value) -> str:
    """``str(value)`` with every kind of line break turned into a space."""
    return _LINE_BREAKS.sub(" ", str(value))


def md_text(value) -> str:
    """Plain text for a Markdown paragraph, heading or table cell: one line, every ASCII punctuation
    character backslash-escaped (CommonMark renders each as itself; no emphasis, link, HTML or pipe)."""
    return _PUNCTUATION.sub(r"\\\1", one_line(value))


def md_code(value, *, cell: bool = True) -> str:
    """Inline code: one line, a backtick fence longer than any backtick run inside; in a table cell
    (GFM) ``|`` is escaped as ``\\|``, which GFM removes again before rendering the code span."""
    text = one_line(value)
    if not text.strip():
        return "*(empty)*"
    if cell:
        text = text.replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    if text.startswith("`") or text.endswith("`") or (text.startswith(" ") and text.endswith(" ")):
        text = f" {text} "
    return f"{fence}{text}{fence}"


def fenced(content: str, language: str = "") -> str:
    """A fenced code block around ``content`` whose fence no line of it can close."""
    longest = max((len(run) for run in re.findall(r"`{3,}", content)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{content.rstrip(chr(10))}\n{fence}"


_number = functools.partial(format_number, missing="–")
_pct = functools.partial(format_pct, missing="–")


# --- YAML header ----------------------------------------------------------------------------------------------


def size_category(pairs: int) -> str:
    for bound, name in _SIZE_CATEGORIES:
        if pairs < bound:
            return name
    return "n>1T"


LISTED_FILES = 20  # input files a card names; stats.json's run.sources lists them all


def source_datasets(run: RunDescription) -> list[str]:
    """The run's sources, once each and in order: a Hub dataset id for ``hf://datasets/...`` files, else the path;
    the first :data:`LISTED_FILES` of them (thousands of input files would make a card of megabytes)."""
    out = []
    for source in run.sources:
        file = str(source.file)
        name = dataset_of_file(file) or file
        if name and name not in out:
            out.append(name)
    return out[:LISTED_FILES]


def split_sizes(document: dict) -> dict[str, dict]:
    """Per split: ``num_examples`` (rows in its shards), ``num_bytes`` (Arrow) and ``file_size`` (None if unknown)."""
    sizes = {}
    for split in document["splits"]:
        shards = document.get("shards", {}).get(split, [])
        file_sizes = [shard.get("file_size") for shard in shards]
        sizes[split] = {
            "num_examples": sum(shard["num_rows"] for shard in shards),
            "num_bytes": sum(shard["num_bytes"] for shard in shards),
            "file_size": None if None in file_sizes else sum(file_sizes),
        }
    return sizes


def loadable_splits(document: dict) -> list[str]:
    """The splits the card declares: those with rows. ``datasets`` (5.x) cannot load a split of 0 rows, and one
    such split in the card's ``configs`` makes ``load_dataset`` fail for every split, so empty splits are left
    out of the YAML header (the body still shows their statistics). If every split is empty, all are listed."""
    sizes = split_sizes(document)
    return [split for split, size in sizes.items() if size["num_examples"] > 0] or list(sizes)


def card_metadata(document: dict, features) -> dict:
    """The YAML header as a dict: the Hub's descriptive fields, then exactly what ``push_to_hub`` writes."""
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs

    run = RunDescription.from_json(document.get("run"))
    sizes = {split: size for split, size in split_sizes(document).items() if split in loadable_splits(document)}
    metadata: dict = {}
    if run.options.license is not None:
        metadata["license"] = run.options.license
    metadata["task_categories"] = list(TASK_CATEGORIES)
    metadata["tags"] = list(TAGS)
    metadata["size_categories"] = [size_category(sum(s["num_examples"] for s in sizes.values()))]
    sources = source_datasets(run)
    if sources:
        metadata["source_datasets"] = sources

    info = DatasetInfo(config_name="default", features=features, splits=SplitDict(), download_size=0, dataset_size=0)
    for split, size in sizes.items():
        info.splits.add(SplitInfo(name=split, num_bytes=size["num_bytes"], num_examples=size["num_examples"]))
        info.dataset_size += size["num_bytes"]
        info.download_size = None if info.download_size is None or size["file_size"] is None \
            else info.download_size + size["file_size"]
    DatasetInfosDict({"default": info}).to_dataset_card_data(metadata)
    if metadata["dataset_info"].get("download_size") is None:
        metadata["dataset_info"].pop("download_size", None)
    MetadataConfigs(
        {"default": {"data_files": [{"split": split, "path": contract.split_shards_prefix(split) + "*"}
                                    for split in sizes]}}
    ).to_dataset_card_data(metadata)
    return metadata


def yaml_header(metadata: dict) -> str:
    """``yaml.safe_dump`` of the metadata, checked to read back identically and to hold no front-matter fence.

    Non-ASCII text is written as is when that round-trips; PyYAML writes a few Unicode line breaks (NEL,
    U+2028...) raw in quoted scalars, where they fold into spaces on reading, so then everything non-ASCII
    is escaped instead (``"\\N"``, ``"\\u2028"``), which always reads back exactly."""
    for allow_unicode in (True, False):
        text = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=allow_unicode, width=1_000_000,
                              default_flow_style=False)
        if yaml.safe_load(text) == metadata and not re.search(r"(?m)^(---|\.\.\.)", text) and "\r" not in text:
            return text
    raise ValueError("the card's metadata does not survive a YAML round trip")  # never seen: safe_dump escapes


# --- body -----------------------------------------------------------------------------------------------------


def _length_rows(stats: dict) -> list[list[str]]:
    columns = ["count", "mean", "std", "min", *[f"p{p}" for p in PERCENTILES], "max"]
    names = {"prompt": "prompt", "chosen": "chosen (before POET)", "rejected": "rejected (before POET)",
             "poet": "POET length (after)", "sequence": "prompt + longer completion (before truncation)"}
    return [[names[q], *[_number(stats["lengths"][q][c]) for c in columns]] for q in QUANTITIES]


def _summary_rows(columns: dict[str, dict], poet: bool) -> list[list[str]]:
    def row(label, get):
        return [label, *[get(stats) for stats in columns.values()]]

    def share(key):
        return lambda s: f"{_pct(s[key]['pct'])} ({s[key]['count']:,})" if key in s else "–"

    rows = [
        row("rows read", lambda s: _number(s["read"])),
        row("pairs kept", lambda s: _number(s["pairs"])),
        row("rows dead-lettered", lambda s: _number(s["dead_lettered"])),
        row("chosen longer than rejected", share("chosen_longer")),
        row("rejected longer than chosen", share("rejected_longer")),
        row("equal length", share("equal_length")),
    ]
    if poet:
        rows += [
            row("pairs cut by POET", share("poet_cut")),
            row("completion tokens before POET", lambda s: _number(s["completion_tokens"]["before_poet"])),
            row("completion tokens after POET", lambda s: _number(s["completion_tokens"]["after_poet"])),
            row("completion tokens removed by POET",
                lambda s: f"{_number(s['completion_tokens']['removed'])} ({_pct(s['completion_tokens']['removed_pct'])})"),
            row("training tokens (prompt counted twice) before → after POET",
                lambda s: f"{_number(s['training_tokens']['before_poet'])} → {_number(s['training_tokens']['after_poet'])}"),
        ]
    else:
        rows += [
            row("pairs POET would cut (at train time)", share("poet_would_cut")),
            row("completion tokens", lambda s: _number(s["completion_tokens"]["after_poet"])),
            row("completion tokens POET would remove",
                lambda s: f"{_number(s['poet_removed_tokens']['count'])} ({_pct(s['poet_removed_tokens']['pct'])})"),
            row("training tokens (prompt counted twice)", lambda s: _number(s["training_tokens"]["after_poet"])),
        ]
    rows += [
        row("chosen completions that lost their EOS", lambda s: _number(s["chosen_lost_eos"])),
        row("rejected completions that lost their EOS", lambda s: _number(s["rejected_lost_eos"])),
    ]
    reasons = sorted({reason for stats in columns.values() for reason in stats["dead_letter_reasons"]})
    for reason in reasons:
        rows.append(row(f"dead letters: {md_code(reason)}", lambda s, r=reason: _number(s["dead_letter_reasons"].get(r, 0))))
    return rows


def _table(header: list[str], rows: list[list[str]], align: str = "r") -> str:
    """A GFM table; cells must already be escaped. First column left-aligned, the others ``align``."""
    rule = [":---"] + ["---:" if align == "r" else ":---"] * (len(header) - 1)
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def _provenance(run: RunDescription, sizes: dict) -> dict:
    tokenizer = run.tokenizer
    source_rows = [[md_text(s.split), md_code(s.file)] for s in run.sources[:LISTED_FILES]]
    if len(run.sources) > LISTED_FILES:
        source_rows.append(["", f"*and {len(run.sources) - LISTED_FILES:,} more (all in `{contract.STATS_FILE}`, run.sources)*"])
    sources = _table(["split", "file"], source_rows, align="l")
    repo_rows = [[md_code(repo.repo_id), md_code(repo.requested), md_code(repo.revision)] for repo in run.source_repos]
    tok_rows = [
        ["name", md_code(tokenizer.name)],
        ["sha256 of its files and chat template", md_code(tokenizer.sha256)],
        ["EOS token", md_code(tokenizer.eos_token)],
        ["vocabulary size", _number(tokenizer.vocab_size)],
        ["chat template", "yes" if tokenizer.chat_template else "no"],
    ]
    options = run.to_json()["options"]
    option_rows = [[md_code(name), md_code(json.dumps(value, ensure_ascii=False))] for name, value in options.items()]
    version_rows = [[md_code(name), md_code(version if version is not None else "not installed")]
                    for name, version in run.versions.items()]
    shard_rows = [[md_text(split), _number(s["num_examples"]), _number(s["num_bytes"]), _number(s["file_size"])]
                  for split, s in sizes.items()]
    return {
        "sources": sources,
        "source_repos": _table(["dataset", "revision asked", "commit read"], repo_rows, align="l") if repo_rows else "",
        "tokenizer": _table(["", ""], tok_rows, align="l"),
        "options": _table(["option", "value"], option_rows, align="l") if option_rows else "*(none recorded)*",
        "versions": _table(["package", "version"], version_rows, align="l") if version_rows else "*(none recorded)*",
        "sizes": _table(["split", "rows", "Arrow bytes", "Parquet bytes"], shard_rows),
        "shard_files": md_code(contract.SHARD_FILES_SHOWN, cell=False),
        "dead_letter_files": md_code(contract.dead_letter_file("{split}"), cell=False),
    }


def _data_quality(document: dict, run: RunDescription) -> dict | None:
    """The data-quality rules the run applied (in their fixed order), what each removed per split, and the eval
    sources of the decontamination; None when no rule was on."""
    options = run.options
    rules = []
    if options.dedup:
        rules.append(("exact duplicates of (prompt, chosen, rejected): the first in input order is kept",
                      "--dedup", [Reason.DUPLICATE]))
    if options.min_score_margin is not None:
        rules.append(("score margin: score_chosen - score_rejected below the margin, or a score missing",
                      f"--min-score-margin {options.min_score_margin:g}", [Reason.MISSING_SCORE, Reason.LOW_MARGIN]))
    if options.decontaminate:
        rules.append((f"benchmark decontamination: the prompt shares a {NGRAM}-word n-gram with an eval prompt",
                      "--decontaminate", [Reason.CONTAMINATED]))
    if not rules and not options.test_size:
        return None
    splits = list(document["splits"])
    rows = [[md_text(what), md_code(option), md_code(reason.value),
             *[_number(document["splits"][split]["dead_letter_reasons"].get(reason.value, 0)) for split in splits]]
            for what, option, reasons in rules for reason in reasons]
    section = {"table": _table(["rule", "option", "reason", *[md_text(split) for split in splits]], rows)
               if rows else "", "test_size": None, "eval_sources": None}
    if options.test_size:
        section["test_size"] = {"option": md_code(f"--test-size {options.test_size}", cell=False),
                                "test": md_code(contract.TEST_SPLIT, cell=False),
                                "train": md_code(contract.TRAIN_SPLIT, cell=False),
                                "pairs": _number(document["splits"].get(contract.TEST_SPLIT, {}).get("pairs", 0))}
    decontamination = document.get("decontamination")
    if decontamination:
        source_rows = [[md_code(source["file"]), _number(source["prompts"]), _number(source["shorter_than_ngram"]),
                        _number(source["contaminated"])] for source in decontamination["eval_sources"]]
        section["eval_sources"] = _table(
            ["eval file", "prompts", f"shorter than {decontamination['ngram']} words (cannot match)",
             "pairs set aside"], source_rows)
        section["ngrams"] = _number(decontamination["eval_ngrams"])
        section["ngram"] = decontamination["ngram"]
    return section


def _columns(features, run: RunDescription) -> list[tuple[str, str]]:
    """``(name, description)`` of each column, from the contract, with what this run's options add to it."""
    options = run.options
    rows = []
    for name in features:
        column = contract.COLUMNS.get(name)
        description = column.description if column else ""
        if column == contract.PROMPT_IDS and options.max_prompt_length:
            description += f" (its last {_number(options.max_prompt_length)} tokens at most)"
        elif column in (contract.CHOSEN_IDS, contract.REJECTED_IDS) and options.poet:
            description += ", POET-truncated"
        elif column is not None and column.type == contract.TEXT:
            description += " (messages)" if run.conversational else " (string)"
        rows.append((name, description))
    return rows


_HELD_OUT = ("test", "valid", "eval")


def snippet_splits(sizes: dict[str, int]) -> tuple[str | None, str | None]:
    """The splits the card's snippets train and evaluate on, from ``{split: rows}``.

    Training: a split named ``train``, else the largest whose name starts with ``train`` (UltraFeedback's
    ``train_prefs``), else the largest split at all, but never one named ``test*``, ``valid*`` or ``eval*``.
    Evaluation: a split named ``test``, else the largest whose name starts with ``test``, ``valid`` or ``eval``.
    None where no split qualifies."""
    def pick(exact: str, prefixes: tuple[str, ...], candidates) -> str | None:
        if exact in candidates:
            return exact
        named = [split for split in candidates if split.lower().startswith(prefixes)]
        pool = named or (list(candidates) if exact == "train" else [])
        return max(sorted(pool), key=lambda split: sizes[split], default=None)

    train = pick("train", ("train",), [s for s in sizes if not s.lower().startswith(_HELD_OUT)])
    return train, pick("test", _HELD_OUT, [s for s in sizes if s != train])


def _model_hint(tokenizer_name) -> str:
    """The tokenizer's name when it looks like a Hub model id (``org/name``), else a placeholder."""
    name = str(tokenizer_name or "")
    return name if is_repo_id(name) else "MODEL"


def _environment():
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: importlib.resources.files("poet.dataset_cards").joinpath(name).read_text(encoding="utf-8")
        ),
        autoescape=False,  # Markdown, not HTML: values are escaped by the filters below, explicitly
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(text=md_text, code=md_code, fenced=fenced, number=_number, pct=_pct,
                               py=json.dumps, sh=shlex.quote)  # a Python string literal; a shell word
    return environment


def render_card(document: dict, features, *, repo_id: str | None = None) -> str:
    """The full ``README.md`` for a prepared folder: YAML header and Markdown body.

    ``repo_id`` names the dataset in the title and in the loading/training snippets
    (the Hub repo it is published to, or its path); without it they show a placeholder.
    """
    run = RunDescription.from_json(document.get("run"))
    options = run.options
    poet = options.poet
    sizes = split_sizes(document)
    splits = list(document["splits"])
    columns = dict(document["splits"])
    if len(splits) > 1:
        columns["all splits"] = document["overall"]
    loadable = loadable_splits(document)
    train_split, eval_split = snippet_splits({split: sizes[split]["num_examples"] for split in loadable})
    model = _model_hint(run.tokenizer.name)
    reference = document.get("reference")
    context = {
        "header": yaml_header(card_metadata(document, features)),
        "title": md_text(repo_id) if repo_id else "POET preference pairs",
        "named": repo_id is not None and repo_id != "",
        "poet": poet,
        "paper_url": PAPER_URL,
        "conversational": run.conversational,
        "tokenizer_name": run.tokenizer.name,
        "max_length": options.max_length,
        "splits": splits,
        "undeclared_splits": [split for split in splits if split not in loadable],
        "sizes": sizes,
        "total_pairs": sum(s["num_examples"] for s in sizes.values()),
        "overall": document["overall"],
        "summary_table": _table(["", *[md_text(c) for c in columns]], _summary_rows(columns, poet)),
        "length_tables": {
            split: _table(["tokens", "count", "mean", "std", "min", *[f"p{p}" for p in PERCENTILES], "max"],
                          _length_rows(stats))
            for split, stats in document["splits"].items()
        },
        "plots": {split: plot_paths(split, reference=reference is not None) for split in splits},
        "columns": _columns(features, run),
        "c": contract,
        "name": repo_id if repo_id else "PATH_OR_REPO_ID",
        "train_split": train_split or "SPLIT",
        "eval_split": eval_split,
        "model": model,
        "model_is_placeholder": model == "MODEL",
        "provenance": _provenance(run, sizes),
        "reference": _reference(reference) if reference else None,
        "quality": _data_quality(document, run),
        "schema_version": document.get("schema_version"),
    }
    return _environment().get_template(TEMPLATE).render(**context)


def _reference(reference: dict) -> dict:
    """The reference model's table, for the card."""
    model = reference["model"]
    scored_with = ", ".join(f"{used} ({_number(pairs)} pairs)" for used, pairs in model.get("scored_with", {}).items())
    rows = [
        ["model", md_code(model.get("name"))],
        ["GGUF file", md_code(model.get("gguf_file")) if model.get("gguf_file") else "none"],
        ["revision (Hub commit, or sha256 of the weight files)", md_code(model.get("revision"))],
        ["requested dtype", md_code(model.get("dtype"))],
        ["scored with (device/dtype)", md_text(scored_with) if scored_with else "none"],
    ]
    return {"table": _table(["", ""], rows, align="l"), "name": model.get("name")}

