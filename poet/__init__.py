"""poet as a library: the commands as functions, and the preparation of rows as a Beam transform.

    import poet
    poet.prepare("raw/*.jsonl.gz", "HuggingFaceTB/SmolLM2-135M-Instruct", "out/my-dataset", license="mit")

Each name is imported when first used, so ``import poet`` imports neither Beam
nor transformers (``poet --help`` and ``poet stats`` stay quick).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "prepare": "poet.pipeline.commands.api",
    "score": "poet.pipeline.commands.api",
    "publish": "poet.pipeline.commands.api",
    "train": "poet.pipeline.commands.api",
    "PreparePreferencePairs": "poet.pipeline.steps.preference_pairs",
    "PreparedPairs": "poet.pipeline.steps.preference_pairs",
    "PrepareOptions": "poet.transforms.contract",
    "UserError": "poet.transforms.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'poet' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
