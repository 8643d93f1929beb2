"""Loading the policy, the reference model and the tokenizer, and checking that the data fits the model."""

from __future__ import annotations

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig, PreTrainedModel, PreTrainedTokenizerBase

from poet.trainer.data import Pairs
from poet.transforms.errors import UserError
from poet.transforms.hub_ids import missing_local_path


def load_model(name_or_path: str, dtype: str, gguf_file: str | None = None) -> PreTrainedModel:
    """Any transformers causal LM, from a folder, a Hub id, or a GGUF file inside a folder.

    A GGUF model is unpacked into plain dense weights at load time (``GgufConfig(dequantize=True)``): training
    needs them, and the model then saves as an ordinary ``save_pretrained`` folder, which a model left in GGUF
    blocks cannot.
    """
    if missing_local_path(name_or_path):
        raise UserError(f"no such model folder: {name_or_path}; pass a local model folder or a Hub id like user/name")
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    gguf = {"gguf_file": gguf_file, "quantization_config": GgufConfig(dequantize=True)} if gguf_file else {}
    try:
        return AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch_dtype, **gguf)
    except (OSError, ValueError) as err:
        what = f"{name_or_path} (GGUF file {gguf_file})" if gguf_file else name_or_path
        raise UserError(f"cannot load model {what}: {err}") from None


def load_reference(name_or_path: str, dtype: str, gguf_file: str | None, device: torch.device) -> PreTrainedModel:
    """A frozen copy of the initial policy, in eval mode."""
    model = load_model(name_or_path, dtype, gguf_file).to(device).eval()
    return model.requires_grad_(False)


def disable_dropout(model: torch.nn.Module) -> None:
    """Switch dropout off for training, as TRL's ``DPOConfig(disable_dropout=True)`` does (``nn.Dropout.p = 0``).

    With dropout on, the policy's log-probs are noisy and differ from the reference's even at step 0 (the first
    DPO loss is not ln 2). Attention dropout that models keep as a float (Llama's ``attention_dropout``, passed to
    the attention kernel while training) is zeroed too, which TRL's helper misses.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0


def load_tokenizer(name_or_path: str, gguf_file: str | None = None) -> PreTrainedTokenizerBase:
    if missing_local_path(name_or_path):
        raise UserError(f"no such folder: {name_or_path} (the tokenizer's, from --tokenizer, else --model); pass a "
                        "local folder or a Hub id like user/name")
    try:
        return AutoTokenizer.from_pretrained(name_or_path, gguf_file=gguf_file)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load a tokenizer from {name_or_path}: {err}; pass --tokenizer PATH") from None


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id written into padding positions; any id works since they are masked out, but keep the tokenizer's."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return token_id
    return 0


def check_fits(pairs: Pairs, split: str, model: PreTrainedModel) -> None:
    """Token ids must be in the model's vocabulary and sequences within its context window."""
    vocab_size = model.get_input_embeddings().num_embeddings
    largest = max(int(ragged.values.max(initial=0)) for ragged in (pairs.prompt, pairs.chosen, pairs.rejected))
    if largest >= vocab_size:
        raise UserError(
            f"split {split!r} has token id {largest} but the model's vocabulary has {vocab_size} entries: "
            "prepare the data with the model's own tokenizer"
        )
    context = getattr(model.config, "max_position_embeddings", None)
    lengths = pairs.sequence_lengths()
    longest = int(np.argmax(lengths))
    if context is not None and lengths[longest] > context:
        raise UserError(
            f"split {split!r}: pair {pairs.ids[longest]!r} is {lengths[longest]} tokens long (prompt + completion) "
            f"but the model's context is {context}: prepare with a smaller max length, or pass --max-length {context} "
            "to skip longer pairs"
        )
