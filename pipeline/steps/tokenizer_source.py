"""Get the same tokenizer onto every worker, local laptop or Dataflow VM.

A local tokenizer folder exists only on the launching machine, so for a remote
runner its files are carried inside the pipeline (they are a few MB); a local
runner's workers read the folder itself (carried files would be pickled and
compressed into every stage that uses them: a large part of a small run's
start-up). A ``gs://`` folder is copied through Beam's FileSystems on each
worker; anything else is a Hub id that transformers resolves itself. Each
process loads a given tokenizer once: the launcher checks it and, in the
default in-process run, the worker reuses it.
"""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass, field

from poet.transforms.tokenization import load_tokenizer

_TOKENIZER_FILES = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "merges.txt", "vocab.txt", "tokenizer.model", "spiece.model", "chat_template.jinja",
    "chat_template.json", "generation_config.json", "config.json",
}


@dataclass(frozen=True)
class TokenizerSource:
    name: str
    files: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def resolve(cls, name: str, carry: bool = True) -> "TokenizerSource":
        """``carry``: take a local folder's files along (for workers on other machines)."""
        if carry and os.path.isdir(name):
            files = {}
            for entry in sorted(os.listdir(name)):
                path = os.path.join(name, entry)
                if entry in _TOKENIZER_FILES and os.path.isfile(path):
                    with open(path, "rb") as handle:
                        files[entry] = handle.read()
            return cls(name, files)
        return cls(name)

    def describe(self) -> str:
        """What travels inside the job: the carried files, or the name workers load the tokenizer from."""
        if self.files:
            size = sum(len(data) for data in self.files.values())
            return f"tokenizer {self.name} ({len(self.files)} files, {size / 2**20:.2f} MiB, carried in the job)"
        return f"tokenizer {self.name} (a name: each worker loads it)"

    def load(self):
        """The tokenizer, loaded on the first call in this process for these files (then shared)."""
        return _load(self.name, tuple(self.files.items()), _folder_state(self.name) if not self.files else ())

    def _load(self):
        if self.files:
            return self._load_from(self.files.items())
        if "://" in self.name:
            from apache_beam.io.filesystems import FileSystems

            matches = FileSystems.match([self.name.rstrip("/") + "/*"])[0].metadata_list
            def read(path):
                with FileSystems.open(path) as handle:
                    return handle.read()
            return self._load_from((os.path.basename(m.path), read(m.path)) for m in matches)
        return load_tokenizer(self.name)

    def _load_from(self, files):
        """Load from a temporary folder holding ``files``, removed once loaded (the tokenizer lives in memory).

        The tokenizer keeps the name it was given (``name_or_path``), not the temporary folder's."""
        with tempfile.TemporaryDirectory(prefix="poet-tokenizer-") as folder:
            for name, data in files:
                with open(os.path.join(folder, name), "wb") as handle:
                    handle.write(data)
            tokenizer = load_tokenizer(folder)
        tokenizer.name_or_path = self.name
        return tokenizer


@functools.lru_cache(maxsize=4)
def _load(name: str, files: tuple[tuple[str, bytes], ...], state: tuple):
    return TokenizerSource(name, dict(files))._load()


def _folder_state(name: str) -> tuple:
    """Names, sizes and modification times of a local folder's files: a changed tokenizer is loaded again."""
    if not os.path.isdir(name):
        return ()
    return tuple((entry.name, entry.stat().st_size, entry.stat().st_mtime_ns)
                 for entry in sorted(os.scandir(name), key=lambda e: e.name) if entry.is_file())
