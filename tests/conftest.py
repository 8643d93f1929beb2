"""Shared fixtures: bundled data and tokenizers, and one prepared copy of the bundled sample."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "tests" / "assets"
HH_SAMPLE = REPO / "samples" / "hh-rlhf" / "harmless-base-test.jsonl.gz"
SHAREGPT_SAMPLE = ASSETS / "data" / "llamafactory-dpo" / "dpo_en_demo.json"
SMOLLM2 = REPO / "samples" / "tokenizers" / "smollm2-135m-instruct"
MINIMIND = ASSETS / "tokenizers" / "minimind-chatml"
PHI3 = ASSETS / "tokenizers" / "phi-3-mini"
GPT2 = ASSETS / "tokenizers" / "gpt2"


def prepare(output: Path, *args: str) -> int:
    """Run ``poet prepare`` in-process with the given arguments."""
    from pipeline.cli import main

    return main(["prepare", "--output", str(output), *args])


@pytest.fixture(scope="session")
def prepared_sample(tmp_path_factory) -> Path:
    """The bundled HH-RLHF sample prepared with the MiniMind tokenizer (fast, 6.4k vocab), POET on."""
    output = tmp_path_factory.mktemp("prepared") / "hh-minimind"
    assert prepare(output, "--input", str(HH_SAMPLE), "--tokenizer", str(MINIMIND), "--license", "mit",
                   "--max-length", "512") == 0
    return output


@pytest.fixture(scope="session")
def prepared_sample_no_poet(tmp_path_factory) -> Path:
    """The same data and options as ``prepared_sample`` with ``--no-poet``."""
    output = tmp_path_factory.mktemp("prepared") / "hh-minimind-no-poet"
    assert prepare(output, "--input", str(HH_SAMPLE), "--tokenizer", str(MINIMIND), "--license", "mit",
                   "--max-length", "512", "--no-poet") == 0
    return output
