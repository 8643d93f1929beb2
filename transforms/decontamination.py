"""Benchmark decontamination (``--decontaminate``): does a pair's prompt share a 13-word n-gram with an eval prompt?

The rule of the GPT-3 paper and of Tulu 3's decontamination: both texts are
normalised (lowercased, punctuation removed, whitespace collapsed) and cut into
words; a pair is contaminated when any run of :data:`NGRAM` consecutive words of
its prompt (the text of all its turns) is also a run of an eval prompt. An
eval prompt shorter than :data:`NGRAM` words has no n-gram and cannot match;
:class:`EvalSource` counts them so the card can say so.

The n-grams are kept as tuples of words in a dict (exact: no hash can make two
different n-grams match), and a prompt is checked with one ``isdisjoint`` call
over ``zip`` of shifted word lists, which runs in C: the common case, no match,
never loops in Python. Each worker builds the index in its DoFn's ``setup``
from the eval files (no side input: the Dask runner's rule).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO

from poet.transforms.errors import UserError
from poet.transforms.formats import Text
from poet.transforms.readers import iter_rows

NGRAM = 13
EVAL_FIELDS = ("prompt", "instruction", "question", "messages")
"""Where an eval row's prompt is looked for, in this order (``--decontaminate-field`` names another)."""
EVAL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".txt")
_NOT_WORD = re.compile(r"[^\w\s]|_")  # punctuation and symbols; \w keeps the letters and digits of every script


def words(text: str) -> list[str]:
    """Lowercased, punctuation removed, split on any whitespace (so runs of it count once)."""
    return _NOT_WORD.sub("", text.lower()).split()


def prompt_text(prompt: Text) -> str:
    """A pair's prompt as one text: the string, or the contents of all its turns, one per line."""
    return prompt if isinstance(prompt, str) else "\n".join(message["content"] for message in prompt)


def _ngrams(tokens: list[str]) -> Iterator[tuple[str, ...]]:
    return zip(*(tokens[k:] for k in range(NGRAM)))


@dataclass(frozen=True)
class EvalSource:
    """One eval file: its name (as the card shows it), how many prompts it gave, how many were too short to match."""

    name: str
    prompts: int
    short: int  # fewer than NGRAM words: no n-gram

    def to_json(self) -> dict:
        return {"file": self.name, "prompts": self.prompts, "shorter_than_ngram": self.short}


@dataclass(frozen=True)
class Match:
    source: str  # the eval file's name
    ngram: str  # the shared n-gram, normalised words joined by spaces


class NgramIndex:
    """Every n-gram of the eval prompts, each with the first eval source (in the order added) that has it."""

    def __init__(self):
        self._source_of: dict[tuple[str, ...], int] = {}
        self.sources: list[EvalSource] = []
        self._words: dict[str, str] = {}  # one string object per distinct word, shared by the n-gram tuples

    def add(self, name: str, prompts: Iterable[str]) -> EvalSource:
        index = len(self.sources)
        count = short = 0
        for text in prompts:
            count += 1
            tokens = [self._words.setdefault(word, word) for word in words(text)]
            short += len(tokens) < NGRAM
            for gram in _ngrams(tokens):
                self._source_of.setdefault(gram, index)
        source = EvalSource(name, count, short)
        self.sources.append(source)
        return source

    def __len__(self) -> int:
        return len(self._source_of)

    def match(self, text: str) -> Match | None:
        """The first n-gram of ``text`` (in reading order) that an eval prompt has, or None."""
        tokens = words(text)
        if len(tokens) < NGRAM or self._source_of.keys().isdisjoint(_ngrams(tokens)):
            return None
        for gram in _ngrams(tokens):
            index = self._source_of.get(gram)
            if index is not None:
                return Match(self.sources[index].name, " ".join(gram))
        return None  # unreachable: isdisjoint said one n-gram is shared


def decontamination_section(sources: Iterable[EvalSource], ngrams: int, contaminated: Mapping[str, int]) -> dict:
    """``stats.json``'s ``decontamination`` block: the n-gram size, the distinct n-grams of the eval prompts, and
    per eval file its prompts, those too short to match, and the pairs it set aside as ``contaminated``."""
    return {"ngram": NGRAM, "eval_ngrams": ngrams,
            "eval_sources": [{**source.to_json(), "contaminated": contaminated.get(source.name, 0)}
                             for source in sources]}


def _text_of(value, where: str) -> str:
    """An eval prompt's text: a string, a list of strings (turns), or messages (their non-assistant turns)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "\n".join(value)
    if isinstance(value, list) and all(isinstance(m, Mapping) and isinstance(m.get("content"), str) for m in value):
        return "\n".join(m["content"] for m in value if m.get("role") != "assistant")
    raise UserError(f"{where}: the prompt is a {type(value).__name__}, not text, a list of texts or messages")


def eval_prompts(path: str, stream: BinaryIO, name: str, field: str | None = None) -> Iterator[str]:
    """The prompts of one eval file: ``.txt`` one per non-blank line, otherwise the ``field`` (default: the first
    of :data:`EVAL_FIELDS` present) of every row. A row without one is a :class:`UserError` naming the file and
    row: a benchmark read in part would leave its other prompts undetected."""
    if path.lower().endswith(".txt"):
        for line in stream:
            text = line.decode("utf-8").strip()
            if text:
                yield text
        return
    fields = (field,) if field else EVAL_FIELDS
    for source in iter_rows(path, stream):
        where = f"--decontaminate {name} row {source.line}"
        if source.reason is not None:
            raise UserError(f"{where}: {source.error}")
        record = source.record
        found = next((key for key in fields if isinstance(record, Mapping) and record.get(key) is not None), None)
        if found is None:
            raise UserError(f"{where}: no {' or '.join(repr(f) for f in fields)} field; "
                            "name the prompt's field with --decontaminate-field")
        yield _text_of(record[found], where)
