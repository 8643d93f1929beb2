"""The reference trainer (`poet train`): batching, completion log-probs, POET on the fly, learning, resuming,
reference log-probs, several processes, and the one-line errors for bad input.

A tiny randomly initialised Llama (64 hidden, 2 layers) with the bundled MiniMind tokenizer keeps every run
to a few seconds on a 2-core CPU; ``--dtype float64`` is used where results are compared to 1e-6 or better.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import without_timing

from poet.trainer.data import BatchPlan, Pairs, Ragged, collate
from poet.trainer.logps import completion_logps

REPO = Path(__file__).resolve().parent.parent
TRL_METRICS = (
    "loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
    "logps/rejected", "learning_rate", "tokens_per_second",
)  # fmt: skip


# -- fixtures -------------------------------------------------------------------------------------------------
def random_pairs(n: int, seed: int, poet: bool, prompt_len=(4, 20), completion_len=(2, 30), vocab=6400) -> pa.Table:
    """Pairs with the columns `poet prepare` writes; with ``poet`` the completions are cut to the shorter one."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        prompt = rng.integers(3, vocab, rng.integers(*prompt_len))
        chosen, rejected = (rng.integers(3, vocab, rng.integers(*completion_len)) for _ in range(2))
        shared = min(len(chosen), len(rejected))
        rows.append({
            "id": f"pair-{i}", "prompt_ids": prompt,
            "chosen_ids": chosen[:shared] if poet else chosen, "rejected_ids": rejected[:shared] if poet else rejected,
            "prompt_length": len(prompt), "chosen_length_orig": len(chosen), "rejected_length_orig": len(rejected),
            "poet_length": shared,
        })  # fmt: skip
    ids = pa.list_(pa.int32())
    schema = pa.schema([("id", pa.string()), ("prompt_ids", ids), ("chosen_ids", ids), ("rejected_ids", ids),
                        *((name, pa.int32()) for name in ("prompt_length", "chosen_length_orig",
                                                          "rejected_length_orig", "poet_length"))])  # fmt: skip
    return pa.Table.from_pylist(rows, schema=schema)


def write_shards(path: Path, **splits: pa.Table) -> Path:
    (path / "data").mkdir(parents=True)
    for split, table in splits.items():
        pq.write_table(table, path / "data" / f"{split}-00000-of-00001.parquet")
    return path


@pytest.fixture(scope="session")
def shards(tmp_path_factory) -> dict[str, Path]:
    """The same random pairs as POET shards and as untruncated (``--no-poet``) shards, train and test splits."""
    root = tmp_path_factory.mktemp("shards")
    return {
        kind: write_shards(root / kind, train=random_pairs(64, 0, poet), test=random_pairs(16, 1, poet))
        for kind, poet in (("poet", True), ("no-poet", False))
    }


def poet_train(*args, capsys=None) -> tuple[int, str]:
    """Run ``poet train`` in-process; returns the exit code and what it printed to stderr."""
    from poet.pipeline.commands.cli import main

    code = main(["train", *map(str, args)])
    return code, capsys.readouterr().err if capsys else ""


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def assert_same_metrics(a: list[dict], b: list[dict], tol: float, skip=("tokens_per_second",)) -> None:
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x.keys() - set(skip):
            assert math.isclose(x[key], y[key], rel_tol=tol, abs_tol=tol), (x["step"], key, x[key], y[key])


# -- batching and log-probs -------------------------------------------------------------------------------------
def pairs_of(table: pa.Table) -> Pairs:
    columns = [Ragged.from_arrow(table.column(c)) for c in ("prompt_ids", "chosen_ids", "rejected_ids")]
    return Pairs(table.column("id").to_pylist(), *columns)


def test_collate_puts_chosen_rows_first_right_padded_with_completion_masks():
    table = pa.table({
        "id": ["a", "b"], "prompt_ids": [[5, 6], [7]], "chosen_ids": [[8, 9, 10], [11]],
        "rejected_ids": [[12], [13, 14]],
    })  # fmt: skip
    pairs = pairs_of(table)
    batch = collate(pairs, np.array([0, 1]), poet=False, pad_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 8, 9, 10], [7, 11, 0, 0, 0], [5, 6, 12, 0, 0], [7, 13, 14, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0]]
    assert batch.completion_mask.int().tolist() == [[0, 0, 1, 1, 1], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 1, 1, 0, 0]]
    poet = collate(pairs, np.array([0, 1]), poet=True, pad_id=0)  # shared first min(len_c, len_r) tokens
    assert poet.completion_mask.int().tolist() == [[0, 0, 1, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 1, 0, 0, 0]]
    assert torch.equal(poet.input_ids, batch.input_ids)


@pytest.fixture(scope="module")
def model64(tiny_model):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float64).eval()


def test_completion_logps_equal_unpadded_per_sequence_log_softmax(model64):
    pairs = pairs_of(random_pairs(6, 2, poet=False))
    batch = collate(pairs, np.arange(6), poet=False, pad_id=0)
    with torch.no_grad():
        sums, counts, _ = completion_logps(model64, batch)
        for row, completions in enumerate([pairs.chosen] * 6 + [pairs.rejected] * 6):
            prompt, completion = pairs.prompt[row % 6], completions[row % 6]
            ids = torch.from_numpy(np.concatenate([prompt, completion]))[None]
            logprobs = model64(input_ids=ids).logits[0, :-1].log_softmax(-1)
            targets = ids[0, 1:]
            expected = logprobs[torch.arange(len(targets)), targets][len(prompt) - 1 :].sum()
            assert counts[row] == len(completion)
            torch.testing.assert_close(sums[row], expected, rtol=1e-10, atol=1e-10)


def test_poet_mask_on_untruncated_pairs_equals_truncated_pairs(model64):
    full, cut = pairs_of(random_pairs(8, 3, poet=False)), pairs_of(random_pairs(8, 3, poet=True))
    with torch.no_grad():
        on_the_fly = completion_logps(model64, collate(full, np.arange(8), poet=True, pad_id=0))
        truncated = completion_logps(model64, collate(cut, np.arange(8), poet=False, pad_id=0))
        untruncated = completion_logps(model64, collate(full, np.arange(8), poet=False, pad_id=0))
    torch.testing.assert_close(on_the_fly[0], truncated[0], rtol=1e-12, atol=1e-12)
    assert torch.equal(on_the_fly[1], truncated[1])
    assert not torch.allclose(untruncated[0], truncated[0])


def padding_waste(lengths: np.ndarray, plan: np.ndarray) -> float:
    micro = lengths[plan]
    return 1 - micro.sum() / (micro.max(-1, keepdims=True) * np.ones_like(micro)).sum()


def test_batch_plan_covers_each_pair_once_per_epoch_and_group_by_length_cuts_padding():
    lengths = np.random.default_rng(0).integers(10, 500, 1000)
    plans = {g: BatchPlan(lengths, 4, 2, 3, seed=1, group_by_length=g) for g in (False, True)}
    for plan in plans.values():
        assert plan.global_batch == 24 and plan.steps_per_epoch == 1000 // 24
        epochs = [plan.epoch(e) for e in range(2)]
        for epoch in epochs:
            assert epoch.shape == (41, 2, 3, 4)  # steps, accumulation, ranks, pairs per micro-batch
            assert len(np.unique(epoch)) == epoch.size  # no pair twice, 1000 % 24 pairs left out
        assert not np.array_equal(*epochs)  # reshuffled every epoch
        assert np.array_equal(plan.epoch(1), epochs[1])  # ... deterministically (resume relies on it)
    assert padding_waste(lengths, plans[True].epoch(0)) < padding_waste(lengths, plans[False].epoch(0)) / 5


# -- training runs --------------------------------------------------------------------------------------------------
def run_args(data: Path, model: Path, out: Path, *extra) -> list:
    return ["--data", data, "--model", model, "--output-dir", out, "--batch-size", 4, "--learning-rate", 1e-3,
            "--logging-steps", 1, *extra]  # fmt: skip


@pytest.mark.parametrize("loss", ["dpo", "simpo", "alphapo"])
def test_poet_on_the_fly_equals_training_on_poet_shards(shards, tiny_model, tmp_path, loss):
    common = ["--loss", loss, "--dtype", "float64", "--max-steps", 4, "--eval-split", "test", "--max-samples", 16]
    runs = {
        "shards": run_args(shards["poet"], tiny_model, tmp_path / "a", *common),
        "on the fly": run_args(shards["no-poet"], tiny_model, tmp_path / "b", *common, "--poet"),
        "untruncated": run_args(shards["no-poet"], tiny_model, tmp_path / "c", *common),
    }
    for args in runs.values():
        assert poet_train(*args)[0] == 0
    poet_shards, on_the_fly = metrics(tmp_path / "a"), metrics(tmp_path / "b")
    # The untruncated rows are longer, so the tokens forwarded and the padding waste differ; all else matches.
    assert_same_metrics(poet_shards, on_the_fly, tol=1e-6, skip=("tokens_per_second", "padding_waste", "num_tokens"))
    assert not math.isclose(metrics(tmp_path / "c")[0]["logps/chosen"], poet_shards[0]["logps/chosen"], rel_tol=1e-3)


def test_tiny_model_learns_the_prepared_sample_in_50_steps(prepared_sample, tiny_model, tmp_path):
    out = tmp_path / "run"
    code, _ = poet_train(
        *run_args(prepared_sample, tiny_model, out, "--max-steps", 50, "--logging-steps", 10, "--learning-rate", 2e-3,
                  "--max-length", 128, "--max-samples", 32, "--save-steps", 25)
    )  # fmt: skip
    assert code == 0
    records = metrics(out)
    assert [r["step"] for r in records] == [10, 20, 30, 40, 50]
    assert all(set(TRL_METRICS) <= r.keys() for r in records)
    assert records[-1]["rewards/accuracies"] > 0.9
    assert records[-1]["loss"] < 0.5 * records[0]["loss"]
    assert (out / "training_curves.png").stat().st_size > 10_000
    for checkpoint in ("checkpoint-25", "checkpoint-50"):
        files = {p.name for p in (out / checkpoint).iterdir()}
        assert {"model.safetensors", "tokenizer.json", "optimizer.pt", "scheduler.pt", "rng_state_0.pt",
                "trainer_state.json"} <= files  # fmt: skip
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out)  # the final model is a normal transformers folder


def test_trains_on_a_hub_repo_id_like_on_the_local_folder(hub, prepared_sample, tiny_model, tmp_path):
    """``--data user/name`` reads the published shards through HF_ENDPOINT and trains on the same rows."""
    from hub_server import USERS

    from poet.pipeline.hub.publish import publish

    repo_id = "alice/hh-minimind-poet"
    publish(prepared_sample, repo_id, token=USERS["alice"])
    common = ["--max-steps", 2, "--max-length", 128, "--max-samples", 8, "--dtype", "float64"]
    assert poet_train(*run_args(repo_id, tiny_model, tmp_path / "hub", *common))[0] == 0
    assert poet_train(*run_args(prepared_sample, tiny_model, tmp_path / "local", *common))[0] == 0
    assert_same_metrics(metrics(tmp_path / "hub"), metrics(tmp_path / "local"), tol=1e-9)
    assert any(route == "resolve" and "/data/" in path for route, _, path, _ in hub.requests)


def test_resume_from_checkpoint_reproduces_the_uninterrupted_run(shards, tiny_model, tmp_path):
    # A checkpoint in the middle of a logging window, gradient accumulation and length grouping: all must resume.
    common = ["--max-steps", 8, "--logging-steps", 2, "--save-steps", 3, "--gradient-accumulation-steps", 2,
              "--group-by-length", "--eval-split", "test", "--eval-steps", 4]  # fmt: skip
    uninterrupted, resumed = tmp_path / "a", tmp_path / "b"
    assert poet_train(*run_args(shards["no-poet"], tiny_model, uninterrupted, *common))[0] == 0
    # Resume a copy of the run's folder from step 3: the records after step 3 are rewritten.
    import shutil

    shutil.copytree(uninterrupted, resumed)
    checkpoint = resumed / "checkpoint-3"
    args = run_args(shards["no-poet"], tiny_model, resumed, *common, "--resume-from-checkpoint", checkpoint)
    assert poet_train(*args)[0] == 0
    assert without_timing(metrics(resumed)) == without_timing(metrics(uninterrupted))  # bit-for-bit
    assert (resumed / "model.safetensors").read_bytes() == (uninterrupted / "model.safetensors").read_bytes()


def test_precomputed_reference_matches_frozen_reference(shards, tiny_model, tmp_path):
    common = ["--dtype", "float64", "--max-steps", 3, "--eval-split", "test", "--max-samples", 12]
    assert poet_train(*run_args(shards["poet"], tiny_model, tmp_path / "frozen", *common))[0] == 0
    assert poet_train(*run_args(shards["poet"], tiny_model, tmp_path / "pre", *common, "--precompute-ref"))[0] == 0
    assert_same_metrics(metrics(tmp_path / "frozen"), metrics(tmp_path / "pre"), tol=1e-9)


def test_precompute_ref_scores_only_the_pairs_the_run_uses_with_progress(shards, tiny_model, tmp_path, capsys):
    common = ["--dtype", "float64", "--max-steps", 2, "--eval-split", "test"]
    assert poet_train(*run_args(shards["poet"], tiny_model, tmp_path / "frozen", *common))[0] == 0
    code, err = poet_train(*run_args(shards["poet"], tiny_model, tmp_path / "pre", *common, "--precompute-ref"),
                           capsys=capsys)  # fmt: skip
    assert code == 0
    assert "reference log-probs of the 8 training pairs this run uses" in err  # 2 steps × 4 pairs, not all 64
    assert "reference log-probs (train)" in err and "reference log-probs (test)" in err  # progress bars
    assert "evaluating" in err
    assert_same_metrics(metrics(tmp_path / "frozen"), metrics(tmp_path / "pre"), tol=1e-9)


def test_pairs_used_are_those_of_the_remaining_steps_across_epochs():
    plan = BatchPlan(np.arange(50), batch_size=4, accumulation=1, world_size=1, seed=0, group_by_length=False)
    assert plan.steps_per_epoch == 12
    assert plan.pairs_used(0, 3).tolist() == sorted(plan.epoch(0)[:3].ravel())
    assert set(plan.pairs_used(10, 14)) == set(plan.epoch(0)[10:].ravel()) | set(plan.epoch(1)[:2].ravel())
    assert len(plan.pairs_used(0, 40)) == 50  # several epochs: every pair, each once


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
def test_dropout_is_off_so_the_first_dpo_loss_is_ln2(shards, tiny_model, tmp_path, architecture):
    """Policy = reference at step 1: with dropout on (0.1 everywhere) the policy's log-probs would be noisy and the
    first loss not ln 2. GPT-2 keeps dropout in nn.Dropout modules, Llama its attention dropout as a float."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    if architecture == "gpt2":
        config = GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=2, n_head=4, n_positions=256,
                            resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1)  # fmt: skip
        model_class = GPT2LMHeadModel
    else:
        config = LlamaConfig.from_pretrained(tiny_model, attention_dropout=0.1)
        model_class = LlamaForCausalLM
    torch.manual_seed(0)
    path = tmp_path / architecture
    model_class(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    args = run_args(shards["poet"], path, tmp_path / "out", "--dtype", "float64", "--max-steps", 1, "--batch-size", 8)
    assert poet_train(*args)[0] == 0
    assert math.isclose(metrics(tmp_path / "out")[0]["loss"], math.log(2), abs_tol=1e-12)


def test_reference_columns_in_the_shards_are_used_without_loading_a_reference(tiny_model, tmp_path, monkeypatch):
    table = random_pairs(16, 4, poet=True)
    table = table.append_column("ref_chosen_logps", pa.array(np.full(16, -50.0)))
    table = table.append_column("ref_rejected_logps", pa.array(np.full(16, -60.0)))
    data = write_shards(tmp_path / "data", train=table)

    def no_reference(*args, **kwargs):
        raise AssertionError("a reference model was loaded although the shards carry reference log-probs")

    monkeypatch.setattr("poet.trainer.train.load_reference", no_reference)
    assert poet_train(*run_args(data, tiny_model, tmp_path / "out", "--max-steps", 1))[0] == 0
    first = metrics(tmp_path / "out")[0]
    assert math.isclose(first["rewards/chosen"], 0.1 * (first["logps/chosen"] + 50.0), rel_tol=1e-6)
    assert math.isclose(first["rewards/rejected"], 0.1 * (first["logps/rejected"] + 60.0), rel_tol=1e-6)


@pytest.mark.distributed
def test_accelerate_launch_two_cpu_processes_match_one_process(shards, tiny_model, tmp_path):
    """2 ranks × 2 pairs per step equal 1 rank × 4 pairs: data sharded over ranks, gradients and metrics reduced."""
    common = ["--dtype", "float64", "--max-steps", 3, "--eval-split", "test", "--max-samples", 16, "--loss", "simpo"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert poet_train(*run_args(shards["poet"], tiny_model, one, *common))[0] == 0
    args = run_args(shards["poet"], tiny_model, two, *common)
    args[args.index("--batch-size") + 1] = 2
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "-m", "poet.pipeline.commands.cli", "train", *map(str, args)]  # fmt: skip
    # No GPU visible: the trainer then runs each rank on CPU (gloo), even on a machine that has one.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "HF_HOME": str(tmp_path / "hf-home")}  # fmt: skip
    result = subprocess.run(launch, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on 2 process(es)" in result.stderr
    assert_same_metrics(metrics(one), metrics(two), tol=1e-9, skip=("tokens_per_second", "padding_waste"))


@pytest.mark.parametrize(
    "args,beta,gamma",
    [(["--loss", "simpo"], 2.0, 0.5), (["--loss", "simpo", "--beta", "10", "--gamma-beta-ratio", "0.3"], 10.0, 3.0),
     (["--loss", "alphapo", "--gamma-beta-ratio", "0.4"], 2.5, 1.0), (["--loss", "dpo"], 0.1, None)],
)  # fmt: skip
def test_cli_resolves_per_loss_defaults_and_gamma_beta_ratio(args, beta, gamma):
    import argparse

    from poet.trainer.cli import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args(["--data", "d", "--model", "m", "--output-dir", "o", *args]))
    assert config.beta == beta and config.gamma == pytest.approx(gamma)


# -- bad input: one line, exit code 2 ----------------------------------------------------------------------------------
def shards_without_rejected(tmp_path):
    return write_shards(tmp_path / "bad", train=random_pairs(8, 0, True).drop_columns(["rejected_ids"]))


def shards_with_empty_split(tmp_path):
    data = write_shards(tmp_path / "bad", train=random_pairs(8, 0, True))
    pq.ParquetWriter(data / "data" / "test-00000-of-00001.parquet", random_pairs(1, 0, True).schema).close()
    return data


def shards_too_long(tmp_path):
    long_pairs = random_pairs(8, 0, False, prompt_len=(200, 240), completion_len=(40, 60))
    return write_shards(tmp_path / "bad", train=long_pairs)


def shards_out_of_vocabulary(tmp_path):
    return write_shards(tmp_path / "bad", train=random_pairs(8, 0, True, vocab=9000))


@pytest.mark.parametrize(
    "make_data,extra,message",
    [
        (shards_without_rejected, [], "lacks column(s) rejected_ids"),
        (shards_with_empty_split, ["--split", "test"], "is empty"),
        (None, ["--split", "validation"], "Unknown split"),
        (shards_too_long, [], "the model's context is 256"),
        (shards_out_of_vocabulary, [], "vocabulary has 6400 entries"),
        (None, ["--beta", "0"], "--beta must be > 0"),
        (None, ["--loss", "simpo", "--beta", "-2"], "--beta must be > 0"),
        (None, ["--loss", "alphapo", "--alpha", "nan"], "--alpha must be a finite number"),
        (None, ["--loss", "alphapo", "--alpha", "inf"], "--alpha must be a finite number"),
        (None, ["--gamma", "1"], "--gamma does not apply to --loss dpo"),
        (None, ["--gamma-beta-ratio", "0.5"], "--gamma-beta-ratio does not apply to --loss dpo"),
        (None, ["--batch-size", "100"], "fewer than one global batch"),
    ],
)  # fmt: skip
def test_bad_input_gives_one_clear_line(shards, tiny_model, tmp_path, capsys, make_data, extra, message):
    data = make_data(tmp_path) if make_data else shards["poet"]
    code, err = poet_train(*run_args(data, tiny_model, tmp_path / "out", "--max-steps", 2, *extra), capsys=capsys)
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("poet train: error:")]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err


def test_non_empty_output_dir_needs_overwrite(shards, tiny_model, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, err = poet_train(*run_args(shards["poet"], tiny_model, out, "--max-steps", 1), capsys=capsys)
    assert code == 2 and "is not empty: pass --overwrite" in err
    assert poet_train(*run_args(shards["poet"], tiny_model, out, "--max-steps", 1, "--overwrite"))[0] == 0


def test_non_finite_loss_stops_at_that_step_keeping_the_last_good_checkpoint(shards, tiny_model, tmp_path, capsys):
    out = tmp_path / "out"
    # A learning rate of 1e30 blows the weights up in the first update: step 2's gradients are NaN.
    code, err = poet_train(
        *run_args(shards["poet"], tiny_model, out, "--max-steps", 5, "--save-steps", 1, "--learning-rate", 1e30,
                  "--warmup-ratio", 0),
        capsys=capsys,
    )  # fmt: skip
    assert code == 2
    assert f"at step 2: stopped before applying that update; the last good checkpoint is {out / 'checkpoint-1'}" in err
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    assert not (out / "model.safetensors").exists()


def test_resume_refuses_changed_hyperparameters(shards, tiny_model, tmp_path, capsys):
    out = tmp_path / "out"
    assert poet_train(*run_args(shards["poet"], tiny_model, out, "--max-steps", 2, "--save-steps", 1))[0] == 0
    args = run_args(shards["poet"], tiny_model, out, "--max-steps", 2, "--beta", 0.2)
    code, err = poet_train(*args, "--resume-from-checkpoint", out / "checkpoint-1", capsys=capsys)
    assert code == 2 and "cannot resume" in err and "changed beta" in err


def test_training_curves_show_plain_loss_values():
    """A loss that barely moves (ln 2 ± 1e-7, where matplotlib's default writes "1e-7+6.9314e-1" above the axis and
    68.75 on it) is labelled with its values."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from poet.trainer.plots import curves_figure

    records = [{"step": s, "loss": 0.6931471 - 1e-7 * s, "rewards/accuracies": 0.5, "rewards/margins": 1e-4 * s,
                "learning_rate": 1e-6} for s in range(1, 4)]
    figure = curves_figure(records, "t")
    FigureCanvasAgg(figure).draw()
    loss_axes = figure.axes[0]
    assert loss_axes.get_title() == "loss" and loss_axes.yaxis.get_major_formatter().get_offset() == ""
    assert any(label.get_text().startswith("0.693") for label in loss_axes.get_yticklabels())


# -- TRL's defaults and metrics ------------------------------------------------------------------------------------
def test_default_schedule_is_trls_and_cosine_with_warmup_on_request(shards, tiny_model, tmp_path, monkeypatch):
    """TRL's DPOConfig and CPOConfig decay linearly from the first step; the paper recipes ask for cosine after a
    10% warmup. The logged learning rates are those of transformers' schedulers built the way TRL builds them."""
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    from transformers import get_scheduler
    from trl import DPOConfig
    from trl.experimental.cpo import CPOConfig

    from poet.trainer.config import TrainConfig

    steps = 5
    for trl_config in (DPOConfig(output_dir=str(tmp_path), use_cpu=True), CPOConfig(output_dir=str(tmp_path), use_cpu=True)):
        default = TrainConfig(data="d", model="m", output_dir=tmp_path)
        assert (trl_config.lr_scheduler_type, trl_config.get_warmup_steps(steps), trl_config.learning_rate) == \
               (default.lr_scheduler, 0, default.learning_rate)  # fmt: skip

    def expected(name: str, warmup_steps: int) -> list[float]:
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        scheduler = get_scheduler(name, optimizer, warmup_steps, steps)
        rates = []
        for _ in range(steps):
            rates.append(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
        return rates

    runs = {"linear": [], "cosine": ["--lr-scheduler", "cosine", "--warmup-ratio", 0.1]}
    for name, extra in runs.items():
        args = run_args(shards["poet"], tiny_model, tmp_path / name, "--max-steps", steps, "--max-samples", 20, *extra)
        assert poet_train(*args)[0] == 0
        rates = [r["learning_rate"] for r in metrics(tmp_path / name)]
        assert rates == pytest.approx(expected(name, 1 if extra else 0), rel=1e-12)
    assert rates[0] == 0 and metrics(tmp_path / "linear")[0]["learning_rate"] == 1e-3


def test_dpo_steps_and_metrics_match_trls_dpo_trainer(shards, tiny_model, tmp_path):
    """Two steps of TRL 1.16's DPOTrainer and of `poet train` on the same 4 pairs (one batch, two epochs, so the
    order of the pairs cannot differ): the same losses, rewards, log-probs, logits/*, num_tokens and learning rates."""
    import pyarrow.parquet as pq
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    data = shards["poet"]
    assert poet_train(*run_args(data, tiny_model, tmp_path / "poet", "--max-samples", 4, "--num-epochs", 2))[0] == 0
    ours = metrics(tmp_path / "poet")

    class PretokenizedDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset, *args, **kwargs):
            return dataset

    rows = pq.read_table(next((data / "data").glob("train-*.parquet"))).slice(0, 4)
    dataset = Dataset.from_list(rows.select(["prompt_ids", "chosen_ids", "rejected_ids"]).to_pylist())
    config = DPOConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=4, num_train_epochs=2,
                       learning_rate=1e-3, logging_steps=1, max_length=None, bf16=False, use_cpu=True, report_to=[],
                       save_strategy="no", disable_tqdm=True, gradient_checkpointing=False)  # fmt: skip
    trainer = PretokenizedDPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), args=config,
                                     train_dataset=dataset, processing_class=AutoTokenizer.from_pretrained(tiny_model))
    trainer.train()
    theirs = [r for r in trainer.state.log_history if "loss" in r]

    assert [r["step"] for r in ours] == [r["step"] for r in theirs] == [1, 2]
    assert ours[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    for mine, trl in zip(ours, theirs):
        assert mine["num_tokens"] == trl["num_tokens"]
        assert mine["learning_rate"] == pytest.approx(trl["learning_rate"], rel=1e-12)
        for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected",
                    "logits/chosen", "logits/rejected", "grad_norm"):  # fmt: skip
            assert mine[key] == pytest.approx(trl[key], rel=1e-4, abs=1e-6), (mine["step"], key)


def test_precompute_ref_frees_the_reference_model_before_the_first_step(shards, tiny_model, tmp_path, monkeypatch,
                                                                          capsys):  # fmt: skip
    """With --precompute-ref the frozen reference is gone (no object left) before training starts; without it,
    it stays beside the policy. The log says which reference the run uses."""
    import weakref

    from poet.trainer import train as train_module

    loaded, alive_at_first_step = [], []
    load_reference = train_module.load_reference

    def tracked(*args, **kwargs):
        model = load_reference(*args, **kwargs)
        loaded.append(weakref.ref(model))
        return model

    train_step = train_module.PreferenceTrainer._train_step

    def first_step_checked(self, *args):
        if self.step == 0:
            alive_at_first_step.append(loaded[-1]() is not None)
        return train_step(self, *args)

    monkeypatch.setattr(train_module, "load_reference", tracked)
    monkeypatch.setattr(train_module.PreferenceTrainer, "_train_step", first_step_checked)
    common = ["--max-steps", 1, "--eval-split", "test"]
    for name, extra in (("frozen", []), ("precomputed", ["--precompute-ref"])):
        capsys.readouterr()
        assert poet_train(*run_args(shards["poet"], tiny_model, tmp_path / name, *common, *extra))[0] == 0
        err = capsys.readouterr().err
        if extra:
            assert "dpo reference of train, test: log-probs precomputed by a frozen copy of --model" in err
        else:
            assert "dpo reference of train, test: a frozen copy of --model, in memory beside the policy" in err
    assert alive_at_first_step == [True, False]
    assert loaded[-1]() is None


def test_help_and_readme_say_where_poet_train_differs_from_trl(capsys):
    from poet.pipeline.commands.cli import main
    from poet.trainer.cli import TRL_DIFFERENCES

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "where poet train differs from TRL 1.x:" in help_text
    assert all(" ".join(difference.split()) in help_text for difference in TRL_DIFFERENCES)
    readme = " ".join((REPO / "README.md").read_text().split())
    for said in ("`--max-length N` skips the pairs longer than N tokens, where TRL's `max_length` truncates them",
                 "`CPOTrainer` (now `trl.experimental.cpo`) with `loss_type=\"simpo\"` and `cpo_alpha=0`",
                 "`--lr-scheduler cosine --warmup-ratio 0.1`", "decaying linearly to 0 from the first step"):
        assert said in readme
