"""The dataset contract: what a prepared folder holds, what each of its columns is, and how its run is described.

This is the one module that spells a prepared folder's file and folder names, its column names, types and
descriptions, the options of ``poet prepare`` and the fields of ``stats.json``'s ``run`` block. The pipeline writes what it says, and the card,
``poet publish``, ``poet stats`` and the trainer read what it says, so a name changes here or nowhere.

Pure and light: ``datasets`` is imported only when :func:`features` builds the ``Features`` of the shards.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING

from poet.transforms.errors import UserError

if TYPE_CHECKING:
    from poet.transforms.reference import ReferenceModel

# --- folder layout ----------------------------------------------------------------------------------------------

CARD_FILE = "README.md"  # the dataset card: YAML header read by the Hub and `datasets`, Markdown body
STATS_FILE = "stats.json"  # exact length statistics and the run description (schema in transforms/stats_file.py)
DATA_DIR = "data"  # the Parquet shards
PLOTS_DIR = "plots"  # the card's PNG plots
DEAD_LETTER_DIR = "dead_letter"  # set-aside rows with their reasons; never published
MANIFEST_FILE = "manifest.json"  # size and sha256 of every file written, rows per shard (transforms/manifest.py)
PLOT_KINDS = ("lengths", "chosen_vs_rejected")
REFERENCE_PLOT = "reference_logps"  # the per-token reference log-probs, in folders scored with --ref-model

SHARD_PATTERN = re.compile(rf"{DATA_DIR}/(?P<split>[^/]+?)-(?P<index>\d{{5,}})-of-(?P<count>\d{{5,}})\.parquet")
"""A shard's path in the folder; split names are ASCII letters, digits and ``_`` (see :class:`InputSpec`), so ``-``
ends them. Numbers have five digits or more (:func:`shard_file`, like ``datasets``, writes 100,000 shards with six)."""

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


def dead_letter_piece(split: str, file_index: int, line: int) -> str:
    """A piece of ``dead_letter_file(split)`` while the run writes it: the dead letters of one chunk of rows,
    from line ``line`` of input file ``file_index`` on."""
    return f"{DEAD_LETTER_DIR}/{split}.jsonl.{file_index}-{line}.piece"


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


DEFAULT_MAX_LENGTH = 2048
DEFAULT_BATCH_SIZE = 256
DEFAULT_MAX_ROW_BYTES = 16 * 10**6  # 16MB: a longer input row is set aside unread (transforms/readers.py)
DEFAULT_MAX_SHARD_BYTES = 500 * 10**6  # 500MB, like datasets' push_to_hub
TRAIN_SPLIT, TEST_SPLIT = "train", "test"  # a bare --input glob is train; --test-size carves test out of it
RESERVED_SPLITS = ("all",)  # datasets.Split.ALL: load_dataset(split="all") means every split
RECORDED = {"recorded": True}
"""Metadata of the :class:`PrepareOptions` fields that shape the data: they are ``stats.json``'s ``run.options``."""


@dataclass(frozen=True)
class InputSpec:
    split: str
    pattern: str

    @classmethod
    def parse(cls, value: str) -> InputSpec:
        """``[SPLIT=]GLOB``; a bare glob is the ``train`` split. ``gs://`` URLs keep their ``=``-free form."""
        split, sep, pattern = value.partition("=")
        if not sep or "/" in split or ":" in split:
            return cls(TRAIN_SPLIT, value)
        if not re.fullmatch(r"[A-Za-z0-9_]+", split):  # shards are data/{split}-*: a "-" would blur the split's glob
            raise UserError(f"invalid split name {split!r} in --input {value!r}; use ASCII letters, digits and _ "
                            "(a look-alike letter of another script would name another split)")
        if split.lower() in RESERVED_SPLITS:
            raise UserError(f"split name {split!r} in --input {value!r} is reserved by `datasets`; choose another")
        return cls(split, pattern)

    def __str__(self) -> str:
        return f"{self.split}={self.pattern}"


@dataclass(frozen=True)
class PrepareOptions:
    """The options of one ``poet prepare`` run, built once (``pipeline.commands.options.options_from_args``, from
    the command's arguments or ``poet.prepare``'s keywords) and read as they are by the launcher, the
    transforms and their DoFns.

    The fields marked :data:`RECORDED` shape the data: they are ``stats.json``'s ``run.options`` (the card lists
    them in this order), with the inputs named as ``sources`` names them. The others say where and how the job
    runs; the tokenizer and the reference model are described in their own blocks. A field a reader does not
    find in a ``stats.json`` takes the default below, as the command would.
    """

    inputs: tuple[str, ...] = field(default=(), metadata=RECORDED)  # SPLIT=GLOB (str of an InputSpec)
    format: str | None = field(default=None, metadata=RECORDED)  # None: detected per row
    max_length: int | None = field(default=DEFAULT_MAX_LENGTH, metadata=RECORDED)  # None: no limit
    max_prompt_length: int | None = field(default=None, metadata=RECORDED)
    poet: bool = field(default=True, metadata=RECORDED)
    num_shards: int | None = field(default=None, metadata=RECORDED)  # None: from max_shard_bytes
    max_shard_bytes: int = field(default=DEFAULT_MAX_SHARD_BYTES, metadata=RECORDED)
    include_text: bool = field(default=True, metadata=RECORDED)
    license: str | None = field(default=None, metadata=RECORDED)
    dedup: bool = field(default=False, metadata=RECORDED)  # the data-quality rules (transforms/quality.py)
    min_score_margin: float | None = field(default=None, metadata=RECORDED)
    decontaminate: tuple[str, ...] = field(default=(), metadata=RECORDED)  # eval files or globs, named like inputs
    decontaminate_field: str | None = field(default=None, metadata=RECORDED)  # None: the first of EVAL_FIELDS
    test_size: str | None = field(default=None, metadata=RECORDED)  # a fraction 0 < F < 1 or a count N, as given
    tokenizer: str = ""  # path or Hub id (stats.json's run.tokenizer describes it)
    output: str = ""
    overwrite: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE  # pairs per tokenizer call
    progress_every_s: float = 5.0  # seconds between two progress reports on this machine; 0: none
    push_to_hub: str | None = None
    reference: ReferenceModel | None = None  # stats.json's reference block describes it
    ref_model_copies: int | None = None
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES  # longer rows are dead letters: not recorded, a bound, not a choice

    @property
    def input_specs(self) -> tuple[InputSpec, ...]:
        return tuple(InputSpec.parse(value) for value in self.inputs)

    @property
    def splits(self) -> list[str]:
        return sorted({spec.split for spec in self.input_specs} | ({TEST_SPLIT} if self.test_size else set()))

    @property
    def quality(self) -> bool:
        """Whether any data-quality rule is on (:mod:`transforms.quality`)."""
        return bool(self.dedup or self.min_score_margin is not None or self.decontaminate or self.test_size)

    def recorded(self) -> dict:
        """``stats.json``'s ``run.options``: the fields that shape the data, JSON-ready."""
        return {f.name: list(value) if isinstance(value := getattr(self, f.name), tuple) else value
                for f in fields(self) if f.metadata == RECORDED}


@dataclass(frozen=True)
class RunDescription:
    """What went into a prepared folder and with what (no date: a re-run gives the same bytes); ``stats.json``'s ``run``, read back by every reader
    through :meth:`from_json` (missing fields, as in a hand-made document, take the defaults below)."""

    sources: tuple[Source, ...] = ()  # Hub files by URL at the commit read, other files by name only
    source_repos: tuple[SourceRepo, ...] = ()
    conversational: bool | None = None
    tokenizer: TokenizerInfo = field(default_factory=TokenizerInfo)
    options: PrepareOptions = field(default_factory=PrepareOptions)  # as recorded(): inputs named
    versions: dict[str, str | None] = field(default_factory=dict)  # package -> version (None: not installed)

    def to_json(self) -> dict:
        return {
            "sources": [asdict(source) for source in self.sources],
            "source_repos": [asdict(repo) for repo in self.source_repos],
            "conversational": self.conversational,
            "tokenizer": asdict(self.tokenizer),
            "options": self.options.recorded(),
            "versions": dict(self.versions),
        }

    @classmethod
    def from_json(cls, document: dict | None) -> RunDescription:
        document = document or {}
        return cls(
            sources=tuple(_build(Source, s) for s in document.get("sources", ())),
            source_repos=tuple(_build(SourceRepo, r) for r in document.get("source_repos", ())),
            conversational=document.get("conversational"),
            tokenizer=_build(TokenizerInfo, document.get("tokenizer")),
            options=_build(PrepareOptions, {name: tuple(value) if isinstance(value, list) else value
                                            for name, value in (document.get("options") or {}).items()
                                            if name in _RECORDED_OPTIONS}),
            versions=dict(document.get("versions") or {}),
        )


_RECORDED_OPTIONS = {f.name for f in fields(PrepareOptions) if f.metadata == RECORDED}


def _build(kind, values: dict | None):
    """``kind(**values)`` with the fields ``kind`` knows (a newer writer's extra fields are not this reader's)."""
    known = {f.name for f in fields(kind)}
    return kind(**{name: value for name, value in (values or {}).items() if name in known})
