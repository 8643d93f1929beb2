"""Get the same tokenizer onto every worker, local laptop or Dataflow VM.

A local tokenizer folder exists only on the launching machine, so its files are
carried inside the pipeline (they are a few MB); a ``gs://`` folder is copied
through Beam's FileSystems on each worker; anything else is a Hub id that
transformers resolves itself.
"""

from __future__ import annotations

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
    def resolve(cls, name: str) -> "TokenizerSource":
        if os.path.isdir(name):
            files = {}
            for entry in sorted(os.listdir(name)):
                path = os.path.join(name, entry)
                if entry in _TOKENIZER_FILES and os.path.isfile(path):
                    with open(path, "rb") as handle:
                        files[entry] = handle.read()
            return cls(name, files)
        return cls(name)

    def load(self):
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
