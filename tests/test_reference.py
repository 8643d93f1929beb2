"""Reference log-probs: ``poet prepare --ref-model`` and ``poet score`` write ``ref_chosen_logps``/``ref_rejected_logps``
equal to an independent transformers computation, byte-identical across runners, and DPO trains on them with no
reference model and the same losses as with a frozen reference.

The reference is the tiny random Llama of ``conftest.tiny_model`` (MiniMind vocabulary); the data are the first
200 pairs of the bundled HH-RLHF sample, prepared with ``--max-length 256`` (the tiny model's context).
"""

from __future__ import annotations

import gzip
import itertools
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import HH_SAMPLE, MINIMIND, prepare, without_timing

from poet.transforms.contract import REF_COLUMN_NAMES

PAIRS = 200


@pytest.fixture(scope="module")
def hh_subset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hh") / "hh-300.jsonl.gz"
    with gzip.open(HH_SAMPLE, "rt") as source, gzip.open(path, "wt") as target:
        target.writelines(itertools.islice(source, PAIRS))
    return path


def prepare_args(data: Path, *extra) -> list[str]:
    return ["--input", str(data), "--tokenizer", str(MINIMIND), "--max-length", "256", "--license", "mit", *map(str, extra)]


@pytest.fixture(scope="module")
def scored(hh_subset, tiny_model, tmp_path_factory) -> dict[str, Path]:
    """The subset prepared with and without the reference columns, POET and --no-poet, in float64."""
    root = tmp_path_factory.mktemp("scored")
    folders = {}
    for name, extra in {
        "poet": ["--ref-model", tiny_model, "--ref-dtype", "float64"],
        "poet-plain": [],
        "no-poet": ["--ref-model", tiny_model, "--ref-dtype", "float64", "--no-poet"],
        "no-poet-plain": ["--no-poet"],
    }.items():
        assert prepare(root / name, *prepare_args(hh_subset, *extra)) == 0
        folders[name] = root / name
    return folders


def read_rows(folder: Path, split: str = "train") -> list[dict]:
    files = sorted((folder / "data").glob(f"{split}-*.parquet"))
    return [row for path in files for row in pq.read_table(path).to_pylist()]


def independent_logps(model_path: Path, rows: list[dict]) -> np.ndarray:
    """Float64, one pair at a time, no padding: a plain forward pass and log-softmax, summed over the completion."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float64).eval()
    out = np.zeros((len(rows), 2))
    with torch.no_grad():
        for i, row in enumerate(rows):
            for j, completion in enumerate((row["chosen_ids"], row["rejected_ids"])):
                ids = torch.tensor([row["prompt_ids"] + completion])
                logprobs = torch.log_softmax(model(input_ids=ids).logits[0, :-1], dim=-1)
                targets = ids[0, 1:]
                token_logps = logprobs[torch.arange(len(targets)), targets]
                out[i, j] = token_logps[len(row["prompt_ids"]) - 1 :].sum().item()
    return out


def stored_logps(rows: list[dict]) -> np.ndarray:
    return np.array([[row[c] for c in REF_COLUMN_NAMES] for row in rows])


@pytest.mark.parametrize("kind", ["poet", "no-poet"])
def test_columns_equal_an_independent_float64_forward_pass(scored, tiny_model, kind):
    rows = read_rows(scored[kind])
    assert len(rows) > 150
    expected = independent_logps(tiny_model, rows)
    # float64 compute, stored as float32: equal to float32 rounding (relative 6e-8, asked: 1e-6)
    np.testing.assert_allclose(stored_logps(rows), expected, rtol=1e-6, atol=0)
    # the other columns are those of the same run without --ref-model
    plain = read_rows(scored[f"{kind}-plain"])
    assert [{k: v for k, v in r.items() if k not in REF_COLUMN_NAMES} for r in rows] == plain


FLOAT32_OPTIONS = ("--ref-batch-tokens", 2048, "--batch-size", 64, "--max-shard-size", "200KB")


@pytest.fixture(scope="module")
def float32_run(hh_subset, tiny_model, tmp_path_factory) -> Path:
    """The default dtype on CPU (float32), small scoring batches, several chunks and shards, one in-process worker."""
    out = tmp_path_factory.mktemp("f32") / "out"
    assert prepare(out, *prepare_args(hh_subset, "--ref-model", tiny_model, *FLOAT32_OPTIONS)) == 0
    return out


def test_float32_columns_equal_the_float64_computation_to_float32_rounding(scored, float32_run, tiny_model):
    out = float32_run
    rows = read_rows(out)
    assert len(list((out / "data").glob("*.parquet"))) > 1
    # the float64 columns equal the independent computation (test above): compare with them
    np.testing.assert_allclose(stored_logps(rows), stored_logps(read_rows(scored["poet"])), rtol=2e-5, atol=0)
    document = json.loads((out / "stats.json").read_text())
    model = document["reference"]["model"]
    assert model["name"] == tiny_model.name and model["dtype"] == "auto"  # a local folder by its name only
    assert model["scored_with"] == {"cpu/float32": len(rows)}
    assert model["revision"].startswith("sha256:") and len(model["revision"]) == 7 + 64
    # The card names the model and its revision, shows the plot, trains DPO on the columns without a reference
    card = (out / "README.md").read_text()
    assert str(tiny_model.parent) not in card and str(tiny_model.parent) not in (out / "stats.json").read_text()
    assert model["revision"] in card and "cpu\\/float32" in card
    assert "plots/train_reference_logps.png" in card and (out / "plots" / "train_reference_logps.png").is_file()
    assert "--loss dpo" in card and "precompute_ref_log_probs=True" in card and '"ref_chosen_logps"' in card
    assert "ref_chosen_logps` | sum of the reference model's log-probs" in card


def test_shards_are_byte_identical_across_runners(hh_subset, tiny_model, float32_run, tmp_path):
    """A pair's value depends only on its input chunk, never on the runner's bundles: the same bytes from two
    worker processes (chunks spread over them, other bundles) as from one in-process worker."""
    args = prepare_args(hh_subset, "--ref-model", tiny_model, *FLOAT32_OPTIONS)
    multi = tmp_path / "multi-process"
    assert prepare(multi, *args, "--direct_num_workers", "2", "--direct_running_mode", "multi_processing") == 0
    shards = {run: {p.name: p.read_bytes() for p in (run / "data").glob("*.parquet")} for run in (float32_run, multi)}
    assert len(shards[multi]) > 1 and shards[float32_run] == shards[multi]


def test_poet_score_adds_the_columns_to_a_prepared_folder(scored, tiny_model, tmp_path):
    from poet.pipeline.commands.cli import main

    out = tmp_path / "rescored"
    assert main(["score", str(scored["poet-plain"]), "--ref-model", str(tiny_model), "--ref-dtype", "float64",
                 "--output", str(out)]) == 0  # fmt: skip
    source_files = sorted(p.name for p in (scored["poet-plain"] / "data").iterdir())
    assert sorted(p.name for p in (out / "data").iterdir()) == source_files
    rows, reference = read_rows(out), read_rows(scored["poet"])
    # the same rows and columns as `poet prepare --ref-model`, the sums to float32 rounding
    assert [{k: v for k, v in r.items() if k not in REF_COLUMN_NAMES} for r in rows] == read_rows(scored["poet-plain"])
    np.testing.assert_allclose(stored_logps(rows), stored_logps(reference), rtol=1e-6)
    assert pq.read_schema(out / "data" / source_files[0]).equals(
        pq.read_schema(scored["poet"] / "data" / source_files[0]), check_metadata=True
    )
    source_stats = json.loads((scored["poet-plain"] / "stats.json").read_text())
    stats = json.loads((out / "stats.json").read_text())
    assert stats["splits"] == source_stats["splits"] and stats["reference"]["model"]["name"] == tiny_model.name
    assert "## Reference log-probs" in (out / "README.md").read_text()


def test_reference_model_problems_are_one_line(hh_subset, tiny_model, tmp_path, capsys):
    cases = {
        "missing": (["--ref-model", tmp_path / "nowhere"], "reference model"),
        "context": (["--ref-model", tiny_model, "--max-length", "0"], "has a context of 256 tokens"),
        "gguf without model": (["--ref-gguf-file", "x.gguf"], "--ref-gguf-file needs --ref-model"),
    }
    for name, (extra, message) in cases.items():
        assert prepare(tmp_path / name, *prepare_args(hh_subset), *map(str, extra)) == 2, name
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (name, err)


def test_prepare_without_ref_model_loads_no_scoring_code_nor_torch(hh_subset, tmp_path):
    """torch, the scoring stage (Beam's RunInference imports torch) and the scoring code load only with --ref-model."""
    import subprocess

    code = (
        "import sys; from poet.pipeline.commands.cli import main; "
        f"assert main(['prepare'] + {prepare_args(hh_subset)!r} + ['--output', {str(tmp_path / 'out')!r}]) == 0; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('poet.trainer.reference', "
        "'poet.trainer.logps', 'poet.pipeline.steps.reference', 'apache_beam.ml'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


# -- training on the columns -----------------------------------------------------------------------------------
def train_metrics(data: Path, model: Path, out: Path, *extra) -> list[dict]:
    from poet.pipeline.commands.cli import main

    args = ["train", "--data", data, "--model", model, "--output-dir", out, "--dtype", "float64", "--batch-size", 4,
            "--learning-rate", 1e-3, "--logging-steps", 1, "--max-steps", 3, *extra]  # fmt: skip
    assert main(list(map(str, args))) == 0
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", ["poet", "no-poet"])
def test_dpo_on_the_columns_gives_the_losses_of_a_frozen_reference(scored, tiny_model, tmp_path, monkeypatch, capsys,
                                                                    kind):  # fmt: skip
    frozen = train_metrics(scored[f"{kind}-plain"], tiny_model, tmp_path / "frozen")

    def no_reference(*args, **kwargs):
        raise AssertionError("a reference model was loaded although the shards carry reference log-probs")

    monkeypatch.setattr("poet.trainer.train.load_reference", no_reference)
    capsys.readouterr()
    stored = train_metrics(scored[kind], tiny_model, tmp_path / "stored")
    assert "no reference model loaded" in capsys.readouterr().err
    assert [r["step"] for r in stored] == [r["step"] for r in frozen] == [1, 2, 3]
    # The columns are float32: a stored sum S is off by at most |S|·2⁻²⁴, a reward by β times that.
    reward_tol = 0.1 * np.abs(stored_logps(read_rows(scored[kind]))).max() * 2.0**-24
    for a, b in zip(stored, frozen):
        for key in ("loss", "logps/chosen", "logps/rejected"):
            assert math.isclose(a[key], b[key], rel_tol=1e-6, abs_tol=1e-6), (a["step"], key, a[key], b[key])
        for key in ("rewards/chosen", "rewards/rejected"):
            assert math.isclose(a[key], b[key], abs_tol=reward_tol), (a["step"], key, a[key], b[key])
        assert math.isclose(a["rewards/margins"], b["rewards/margins"], abs_tol=2 * reward_tol)


def test_poet_stats_shows_the_reference_section(scored, tiny_model, capsys):
    from poet.pipeline.commands.cli import main

    assert main(["stats", str(scored["poet"])]) == 0
    out = capsys.readouterr().out
    model = json.loads((scored["poet"] / "stats.json").read_text())["reference"]["model"]
    assert f"== reference log-probs: {tiny_model.name}, revision {model['revision']}" in out
    assert f"requested dtype float64; scored with cpu/float64 ({len(read_rows(scored['poet'])):,} pairs)" in out
    assert re.search(r"train +chosen +\d+ +-\d+\.\d\d", out) and re.search(r"train +rejected +\d+ +-\d+\.\d\d", out)
    assert main(["stats", str(scored["poet-plain"])]) == 0
    assert "reference log-probs" not in capsys.readouterr().out


# -- whose reference log-probs ------------------------------------------------------------------------------------
def test_train_checks_that_the_stored_columns_are_models(scored, tiny_model, tmp_path, capsys):
    """stats.json records the sha256 of the scoring weights: the same weights in a renamed folder pass; other
    weights get a warning, or with --strict-reference a one-line refusal."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    from poet.pipeline.commands.cli import main

    copy, other = tmp_path / "renamed-copy", tmp_path / "other"
    shutil.copytree(tiny_model, copy)
    shutil.copytree(tiny_model, other)
    model = AutoModelForCausalLM.from_pretrained(other)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(1.5)
    model.save_pretrained(other)

    def train(model: Path, *extra) -> tuple[int, str]:
        args = ["train", "--data", scored["poet"], "--model", model, "--output-dir", tmp_path / f"out-{len(extra)}",
                "--overwrite", "--batch-size", 4, "--max-steps", 1, *extra]  # fmt: skip
        code = main(list(map(str, args)))
        return code, capsys.readouterr().err

    for model_path in (tiny_model, copy):
        code, err = train(model_path)
        assert code == 0 and "warning" not in err and "no reference model loaded" in err
    code, err = train(other)
    warnings = [line for line in err.splitlines() if line.startswith("poet train: warning:")]
    assert code == 0 and len(warnings) == 1
    assert f"may not be --model's: they were computed by {tiny_model.name} (revision sha256:" in warnings[0]
    code, err = train(other, "--strict-reference")
    errors = [line for line in err.splitlines() if line.startswith("poet train: error:")]
    assert code == 2 and len(errors) == 1 and "may not be --model's" in errors[0] and "Traceback" not in err


def test_mismatch_compares_weights_or_hub_commits():
    from poet.transforms.reference import ReferenceModel

    local = {"name": "sft", "revision": "sha256:" + "a" * 64}
    hub = {"name": "org/model", "revision": "c0ffee"}
    assert ReferenceModel("/any/folder", revision="sha256:" + "a" * 64).mismatch(local) is None
    assert "not /any/folder" in ReferenceModel("/any/folder", revision="sha256:" + "b" * 64).mismatch(local)
    assert ReferenceModel("org/model", revision="c0ffee").mismatch(hub) is None
    assert "not org/model (revision 123)" in ReferenceModel("org/model", revision="123").mismatch(hub)
    assert "not org/other" in ReferenceModel("org/other", revision="c0ffee").mismatch(hub)
    assert "cannot be compared" in ReferenceModel("org/model").mismatch(hub)  # revision unknown (offline)
    assert "cannot be compared" in ReferenceModel("/folder", revision="sha256:" + "a" * 64).mismatch(hub)
    assert "nothing records" in ReferenceModel("org/model", revision="c0ffee").mismatch(None)


@pytest.mark.parametrize("kind", ["poet", "no-poet"])
def test_poet_flag_is_a_no_op_on_poet_shards_with_columns(scored, tiny_model, tmp_path, capsys, kind):
    """On POET shards --poet masks nothing the columns did not score: allowed, the same run; on --no-poet shards
    it would, and is refused."""
    from poet.pipeline.commands.cli import main

    if kind == "poet":
        with_flag = train_metrics(scored[kind], tiny_model, tmp_path / "flag", "--poet")
        assert without_timing(with_flag) == without_timing(train_metrics(scored[kind], tiny_model, tmp_path / "plain"))
    else:
        args = ["train", "--data", scored[kind], "--model", tiny_model, "--output-dir", tmp_path / "x", "--poet"]
        assert main(list(map(str, args))) == 2
        assert "which --poet would mask differently" in capsys.readouterr().err
