"""Shared fixtures: bundled data and tokenizers, and one prepared copy of the bundled sample."""

from __future__ import annotations

import hub_server  # tests/hub_server.py: a local Hugging Face Hub-compatible server

hub_server.configure_client_env()  # HF_ENDPOINT, fresh HF_HOME, HF_HUB_DISABLE_XET=1: read at import time
from hub_server import hub, running_hub  # noqa: E402, F401 - fixtures for every test module

import os  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "tests" / "assets"
HH_SAMPLE = REPO / "samples" / "hh-rlhf" / "harmless-base-test.jsonl.gz"
SHAREGPT_SAMPLE = ASSETS / "data" / "llamafactory-dpo" / "dpo_en_demo.json"
SMOLLM2 = REPO / "samples" / "tokenizers" / "smollm2-135m-instruct"
MINIMIND = ASSETS / "tokenizers" / "minimind-chatml"
PHI3 = ASSETS / "tokenizers" / "phi-3-mini"
GPT2 = ASSETS / "tokenizers" / "gpt2"


CONTEXT = 256  # the tiny model's context window


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A folder with a seeded random tiny Llama and the MiniMind tokenizer, loadable by ``from_pretrained``."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(MINIMIND)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=CONTEXT, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def prepare(output: Path, *args: str) -> int:
    """Run ``poet prepare`` in-process with the given arguments."""
    from poet.pipeline.commands.cli import main

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


def without_timing(records: list[dict]) -> list[dict]:
    """``poet train``'s metrics records without the one that depends on the machine's speed."""
    return [{k: v for k, v in r.items() if k != "tokens_per_second"} for r in records]


def trl_reference_ids(tokenizer, pairs) -> list[dict]:
    """Token ids from TRL 1.x's own ``DPOTrainer._prepare_dataset`` (the reference), no truncation.

    ``_prepare_dataset`` only needs ``self._tokenizer``, so no model is built.
    """
    import types

    from datasets import Dataset
    from trl import DPOConfig
    from trl.trainer.dpo_trainer import DPOTrainer

    dataset = Dataset.from_list([{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs])
    args = DPOConfig(output_dir="/tmp/poet-trl-reference", max_length=None, bf16=False, use_cpu=True,
                     report_to=[], dataset_num_proc=None)
    prepared = DPOTrainer._prepare_dataset(types.SimpleNamespace(_tokenizer=tokenizer), dataset, tokenizer, args, "ref")
    return [{k: row[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")} for row in prepared]


def read_pairs(path: Path, fmt: str | None = None, limit: int | None = None):
    """Normalised pairs of a bundled file (invalid rows skipped)."""
    import itertools

    from poet.transforms.formats import normalize
    from poet.transforms.readers import iter_rows
    from poet.transforms.reasons import RowRejected

    pairs = []
    with open(path, "rb") as stream:
        for source in iter_rows(str(path), stream):
            try:
                pairs.append(normalize(source.record, fmt))
            except RowRejected:
                continue
    return list(itertools.islice(pairs, limit))


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory) -> tuple[Path, Path]:
    """The hostile rows of ``hostile_corpus.PLAIN_ROWS`` prepared once per module with GPT-2: (source, output)."""
    from hostile_corpus import PLAIN_ROWS, write_rows

    root = tmp_path_factory.mktemp("hostile")
    source = write_rows(root / "plain.jsonl", PLAIN_ROWS)
    output = root / "out"
    assert prepare(output, "--input", str(source), "--tokenizer", str(GPT2), "--license", "mit") == 0
    return source, output
