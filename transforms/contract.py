"""The dataset contract: what a prepared folder holds, what each of its columns is, and how its run is described.

This is the one module that spells a prepared folder's file and folder names, its column names, types and
descriptions, and the fields of ``stats.json``'s ``run`` block. The pipeline writes what it says, and the card,
``poet publish``, ``poet stats`` and the trainer read what it says, so a name changes here or nowhere.

Pure and light: ``datasets`` is imported only when :func:`features` builds the ``Features`` of the shards.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields

# --- folder layout ----------------------------------------------------------------------------------------------

CARD_FILE = "README.md"  # the dataset card: YAML header read by the Hub and `datasets`, Markdown body
STATS_FILE = "stats.json"  # exact length statistics and the run description (schema in transforms/stats_file.py)
DATA_DIR = "data"  # the Parquet shards
PLOTS_DIR = "plots"  # the card's PNG plots
DEAD_LETTER_DIR = "dead_letter"  # set-aside rows with their reasons; never published
MANIFEST_FILE = "manifest.json"  # size and sha256 of every file written, rows per shard (transforms/manifest.py)
PLOT_KINDS = ("lengths", "chosen_vs_rejected")
REFERENCE_PLOT = "reference_logps"  # the per-token reference log-probs, in folders scored with --ref-model

SHARD_PATTERN = re.compile(rf"{DATA_DIR}/(?P<split>[^/]+?)-(?P<index>\d{{5}})-of-(?P<count>\d{{5}})\.parquet")
"""A shard's path in the folder; split names are ``\\w+`` (see ``pipeline.commands.options``), so ``-`` ends them."""

PUBLISHED_FILES = (CARD_FILE, STATS_FILE, f"{PLOTS_DIR}/*", f"{DATA_DIR}/*.parquet")
"""What a prepared folder shares (fnmatch patterns relative to the folder); ``dead_letter/`` and the manifest stay
home."""

REPLACED_WITH_A_SPLIT = (f"{PLOTS_DIR}/",)
"""Prefixes of files that a new publication replaces as a whole (besides the shards of its splits)."""


SHARD_FILES_SHOWN = f"{DATA_DIR}/{{split}}-NNNNN-of-NNNNN.parquet"
"""The shard name pattern as the card shows it to people."""


def shard_file(split: str, index: int, count: int) -> str:
    """``data/{split}-{index:05d}-of-{count:05d}.parquet``, the name ``datasets``' ``push_to_hub`` gives shards."""
    return f"{DATA_DIR}/{split}-{index:05d}-of-{count:05d}.parquet"


def split_shards_prefix(split: str) -> str:
    """What every shard path of ``split`` starts with (``data/{split}-``); ``+ "*"`` is the card's glob."""
    return f"{DATA_DIR}/{split}-"


def dead_letter_file(split: str) -> str:
    return f"{DEAD_LETTER_DIR}/{split}.jsonl"


def plot_file(split: str, kind: str) -> str:
    """``plots/{split}_{kind}.png`` for ``kind`` in :data:`PLOT_KINDS` or :data:`REFERENCE_PLOT`."""
    return f"{PLOTS_DIR}/{split}_{kind}.png"


# --- columns ----------------------------------------------------------------------------------------------------

STRING, INT32, INT32_LIST, FLOAT32, TEXT = "string", "int32", "list<int32>", "float32", "text"
"""Column types: Arrow names; ``text`` is a string, or a list of ``{role, content}`` messages for conversational
data (the TRL forms)."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # one of STRING, INT32, INT32_LIST, FLOAT32, TEXT
    description: str  # one line of Markdown, for the card
    trainer_needs: bool = False  # `poet train` refuses a split without it


ID = Column("id", STRING, "content hash of the source pair (stable across runs)")
PROMPT_IDS = Column("prompt_ids", INT32_LIST, "prompt token ids", trainer_needs=True)
CHOSEN_IDS = Column("chosen_ids", INT32_LIST, "chosen completion token ids, EOS included", trainer_needs=True)
REJECTED_IDS = Column("rejected_ids", INT32_LIST, "rejected completion token ids, EOS included", trainer_needs=True)
PROMPT_LENGTH = Column("prompt_length", INT32, "`len(prompt_ids)`")
CHOSEN_LENGTH_ORIG = Column("chosen_length_orig", INT32, "chosen completion length before any truncation")
REJECTED_LENGTH_ORIG = Column("rejected_length_orig", INT32, "rejected completion length before any truncation")
POET_LENGTH = Column("poet_length", INT32, "`min` of the two completion lengths after the max-length cap")
PROMPT = Column("prompt", TEXT, "prompt text as read, untruncated")
CHOSEN = Column("chosen", TEXT, "chosen completion as read, untruncated")
REJECTED = Column("rejected", TEXT, "rejected completion as read, untruncated")
REF_CHOSEN_LOGPS = Column("ref_chosen_logps", FLOAT32,
                          "sum of the reference model's log-probs of the `chosen_ids` tokens given `prompt_ids`")
REF_REJECTED_LOGPS = Column("ref_rejected_logps", FLOAT32,
                            "sum of the reference model's log-probs of the `rejected_ids` tokens given `prompt_ids`")
"""DPO's reference term (``--ref-model``): summed over exactly the stored completion tokens, so training needs
no second model."""

TOKEN_COLUMNS = (PROMPT_IDS, CHOSEN_IDS, REJECTED_IDS)
TOKEN_COLUMN_NAMES = tuple(column.name for column in TOKEN_COLUMNS)  # prompt, chosen, rejected
LENGTH_COLUMNS = (PROMPT_LENGTH, CHOSEN_LENGTH_ORIG, REJECTED_LENGTH_ORIG, POET_LENGTH)
TEXT_COLUMNS = (PROMPT, CHOSEN, REJECTED)
REF_COLUMNS = (REF_CHOSEN_LOGPS, REF_REJECTED_LOGPS)
REF_COLUMN_NAMES = tuple(column.name for column in REF_COLUMNS)
PREPARED_COLUMNS = (ID, *TOKEN_COLUMNS, *LENGTH_COLUMNS, *TEXT_COLUMNS)
"""Every column ``poet prepare`` writes, in order (the text columns unless ``--drop-text``)."""
COLUMNS = {column.name: column for column in (*PREPARED_COLUMNS, *REF_COLUMNS)}
TRAINER_COLUMNS = tuple(column.name for column in COLUMNS.values() if column.trainer_needs)


def prepared_columns(include_text: bool) -> tuple[Column, ...]:
    return PREPARED_COLUMNS if include_text else tuple(c for c in PREPARED_COLUMNS if c not in TEXT_COLUMNS)


def features(columns, *, conversational: bool):
    """The ``datasets.Features`` of ``columns``: the shards' Arrow schema, with the features embedded in its
    metadata so ``load_dataset`` restores them exactly, and the card's ``dataset_info``."""
    from datasets import Features, List, Value

    messages = List({"role": Value("string"), "content": Value("string")})
    types = {STRING: Value("string"), INT32: Value("int32"), INT32_LIST: List(Value("int32")),
             FLOAT32: Value("float32"), TEXT: messages if conversational else Value("string")}
    return Features({column.name: types[column.type] for column in columns})


# --- the run description (``stats.json``'s ``run``) ------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    split: str
    file: str


@dataclass(frozen=True)
class SourceRepo:
    """A Hub dataset repo the run read (``--input hf://datasets/...``), and the one commit every worker read."""

    repo_id: str
    revision: str  # the commit sha
    requested: str  # the branch, tag or sha asked for


@dataclass(frozen=True)
class TokenizerInfo:
    name: str | None = None
    sha256: str | None = None  # of its files and chat template (transforms.tokenization.tokenizer_fingerprint)
    eos_token: str | None = None
    vocab_size: int | None = None
    chat_template: bool | None = None


@dataclass(frozen=True)
class RunOptions:
    """The ``poet prepare`` options that shape the data (the card lists them in this order)."""

    inputs: tuple[str, ...] = ()  # SPLIT=GLOB
    format: str | None = None
    max_length: int | None = None
    max_prompt_length: int | None = None
    poet: bool = True
    num_shards: int | None = None
    max_shard_bytes: int | None = None
    include_text: bool = True
    license: str | None = None


@dataclass(frozen=True)
class RunDescription:
    """What went into a prepared folder and with what (no date: a re-run gives the same bytes); ``stats.json``'s ``run``, read back by every reader
    through :meth:`from_json` (missing fields, as in a hand-made document, take the defaults below)."""

    sources: tuple[Source, ...] = ()  # Hub files by URL at the commit read, other files by name only
    source_repos: tuple[SourceRepo, ...] = ()
    conversational: bool | None = None
    tokenizer: TokenizerInfo = field(default_factory=TokenizerInfo)
    options: RunOptions = field(default_factory=RunOptions)
    versions: dict[str, str | None] = field(default_factory=dict)  # package -> version (None: not installed)

    def to_json(self) -> dict:
        document = asdict(self)
        document["sources"] = [asdict(source) for source in self.sources]
        document["source_repos"] = [asdict(repo) for repo in self.source_repos]
        document["options"]["inputs"] = list(self.options.inputs)
        return document

    @classmethod
    def from_json(cls, document: dict | None) -> RunDescription:
        document = document or {}
        return cls(
            sources=tuple(_build(Source, s) for s in document.get("sources", ())),
            source_repos=tuple(_build(SourceRepo, r) for r in document.get("source_repos", ())),
            conversational=document.get("conversational"),
            tokenizer=_build(TokenizerInfo, document.get("tokenizer")),
            options=_build(RunOptions, {**(document.get("options") or {}),
                                        "inputs": tuple((document.get("options") or {}).get("inputs", ()))}),
            versions=dict(document.get("versions") or {}),
        )


def _build(kind, values: dict | None):
    """``kind(**values)`` with the fields ``kind`` knows (a newer writer's extra fields are not this reader's)."""
    known = {f.name for f in fields(kind)}
    return kind(**{name: value for name, value in (values or {}).items() if name in known})
