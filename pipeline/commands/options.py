"""Options of ``poet prepare``: parsed once on the launcher into the contract's :class:`PrepareOptions`.

Beam's own options (``--runner``, ``--direct_num_workers``, ``--temp_location``,
``--project``…) are not declared here: they pass through untouched to
``PipelineOptions``.
"""

from __future__ import annotations

import argparse
import math

from poet.transforms.contract import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_LENGTH,
    DEFAULT_MAX_ROW_BYTES,
    REF_COLUMN_NAMES,
    TEST_SPLIT,
    TRAIN_SPLIT,
    InputSpec,
    PrepareOptions,
)
from poet.transforms.errors import UserError
from poet.transforms.formats import FORMATS
from poet.transforms.hub_ids import is_repo_id
from poet.transforms.hub_licenses import check_license
from poet.transforms.quality import TestSize
from poet.transforms.reference import DEFAULT_BATCH_TOKENS, REF_DTYPES, ReferenceModel

_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
DEFAULT_MAX_SHARD_SIZE = "500MB"  # as --max-shard-size shows DEFAULT_MAX_SHARD_BYTES


def parse_size(value: str) -> int:
    """``500MB``, ``1.5GiB``, ``1000000``: a positive number of bytes."""
    text = value.strip().upper().replace(" ", "")
    size = None
    for unit in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            size = int(float(text[: -len(unit)]) * _UNITS[unit])
            break
    else:
        if text.isdigit():
            size = int(text)
    if size is None:
        raise argparse.ArgumentTypeError(f"invalid size {value!r}; use e.g. 500MB, 1GB or a number of bytes")
    if size < 1:
        raise argparse.ArgumentTypeError(f"size {value!r} must be at least one byte; use e.g. 500MB")
    return size


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number


def _seconds(value: str) -> float:
    number = float(value)
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {value}")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    io = parser.add_argument_group("input and output")
    io.add_argument("--input", action="append", required=True, metavar="[SPLIT=]GLOB",
                    help="preference files (.jsonl, .jsonl.gz, .json, .parquet; local or gs://). Repeatable; "
                         "a bare glob goes to split 'train', 'test=raw/test*.jsonl' names the split")
    io.add_argument("--output", required=True, metavar="DIR",
                    help="output folder in Hugging Face Hub dataset layout (local or gs://)")
    io.add_argument("--format", choices=sorted(FORMATS), default=None,
                    help="force one input format instead of detecting it per row")
    io.add_argument("--overwrite", action="store_true",
                    help="replace an existing output folder that poet wrote (one with a manifest.json)")
    io.add_argument("--drop-text", action="store_true",
                    help="omit the prompt/chosen/rejected text columns (token ids only)")
    io.add_argument("--progress-every", type=_seconds, default=5.0, metavar="SECONDS",
                    help="show rows read, kept and dead-lettered this often on this machine (a line redrawn on "
                         "a terminal, else a log line); 0: never")
    io.add_argument("--max-row-bytes", type=parse_size, default=DEFAULT_MAX_ROW_BYTES, metavar="SIZE",
                    help="a longer input row is never read whole: it is dead-lettered as row_too_large with its "
                         "first bytes (default 16MB; a .json file, parsed whole, may hold 64 times this)")
    tok = parser.add_argument_group("tokenization and truncation")
    tok.add_argument("--tokenizer", required=True, metavar="PATH_OR_ID",
                     help="transformers tokenizer: local folder, gs:// folder or Hub id")
    tok.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH,
                     help="max prompt+completion tokens per sequence (completion cut at its end); 0 = no limit")
    tok.add_argument("--max-prompt-length", type=positive_int, default=None,
                     help="keep only the prompt's last N tokens")
    tok.add_argument("--no-poet", dest="poet", action="store_false",
                     help="do not cut completions to equal length (publish an untruncated baseline)")
    tok.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, help="pairs per tokenizer call")
    quality = parser.add_argument_group(
        "data quality (applied in this order, after parsing and before tokenization)")
    quality.add_argument("--dedup", action="store_true",
                         help="keep the first of pairs with the same content (prompt, chosen, rejected after format "
                              "normalisation, the id column); later copies become dead letters 'duplicate'")
    quality.add_argument("--min-score-margin", type=float, default=None, metavar="X",
                         help="set aside pairs with score_chosen - score_rejected < X ('low_margin') or without "
                              "both scores ('missing_score')")
    quality.add_argument("--decontaminate", action="append", default=[], metavar="PATH_OR_GLOB",
                         help="eval prompts (.jsonl, .json, .parquet, .txt one per line; local, gs:// or hf://); "
                              "a pair whose prompt shares a 13-word n-gram with one is set aside ('contaminated'). "
                              "Repeatable")
    quality.add_argument("--decontaminate-field", default=None, metavar="NAME",
                         help="the eval rows' prompt field (default: the first of prompt, instruction, question, "
                              "messages)")
    quality.add_argument("--test-size", type=TestSize.parse, default=None, metavar="F_OR_N",
                         help="carve a 'test' split out of 'train': a fraction 0 < F < 1 or a count N of pairs, "
                              "by a hash of the prompt (a prompt is never in both)")
    add_reference_arguments(parser)
    shards = parser.add_argument_group("sharding and publishing")
    shards.add_argument("--num-shards", type=positive_int, default=None,
                        help="shards per split (default: from --max-shard-size)")
    shards.add_argument("--max-shard-size", type=parse_size, default=DEFAULT_MAX_SHARD_SIZE,
                        help="target Arrow size of one shard, like datasets' push_to_hub")
    shards.add_argument("--license", default=None, help="the Hub's license id for the dataset card (e.g. mit, apache-2.0, cc-by-4.0, other)")
    shards.add_argument("--push-to-hub", metavar="REPO_ID", default=None,
                        help="publish the folder to this Hub dataset repo after the run")


def add_reference_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """``--ref-model`` and its settings, shared by ``poet prepare`` and ``poet score``."""
    ref = parser.add_argument_group("reference log-probs (DPO without a reference model at training time)")
    ref.add_argument("--ref-model", metavar="PATH_OR_ID", default=None, required=required,
                     help="causal LM whose summed log-probs of each stored completion go into the columns "
                          f"{'/'.join(REF_COLUMN_NAMES)} (local folder, or Hub id)")
    ref.add_argument("--ref-gguf-file", default=None, help="GGUF file in the --ref-model folder to load (dequantised)")
    ref.add_argument("--ref-dtype", choices=REF_DTYPES, default="auto",
                     help="dtype of the reference weights; auto: float32 on CPU, bfloat16 on a GPU")
    ref.add_argument("--ref-batch-tokens", type=positive_int, default=DEFAULT_BATCH_TOKENS,
                     help="padded tokens per forward pass (pairs are grouped by length first)")
    ref.add_argument("--ref-model-copies", type=positive_int, default=None,
                     help="load this many copies per worker machine, shared by its processes (Beam's "
                          "model_copies); unset: one per worker process")


def reference_from_args(args: argparse.Namespace) -> ReferenceModel | None:
    if args.ref_model is None:
        for name in ("ref_gguf_file", "ref_model_copies"):
            if getattr(args, name) is not None:
                raise UserError(f"--{name.replace('_', '-')} needs --ref-model")
        return None
    return ReferenceModel(args.ref_model, args.ref_gguf_file, args.ref_dtype, args.ref_batch_tokens)


def _check_split_names(splits: set[str]) -> None:
    """Split names that differ only by case name one split on a case-insensitive file system (and to a reader)."""
    by_folded = {}
    for split in sorted(splits):
        other = by_folded.setdefault(split.lower(), split)
        if other != split:
            raise UserError(f"split names {other!r} and {split!r} differ only by case; give them one name")


def options_from_args(args: argparse.Namespace) -> PrepareOptions:
    """The run's options, checked: every option problem is one line here, before anything starts."""
    if args.max_length < 0:
        raise UserError("--max-length must be 0 (no limit) or positive")
    if args.push_to_hub and not is_repo_id(args.push_to_hub):
        raise UserError(f"--push-to-hub must look like user/name or org/name, got {args.push_to_hub!r}")
    if args.push_to_hub and not args.license:
        raise UserError("--push-to-hub needs --license ID (e.g. mit, apache-2.0): the Hub card must declare one")
    specs = tuple(InputSpec.parse(value) for value in args.input)
    _check_split_names({spec.split for spec in specs})
    check_quality_args(args, {spec.split for spec in specs})
    return PrepareOptions(
        inputs=tuple(str(spec) for spec in specs),
        tokenizer=args.tokenizer,
        output=args.output.rstrip("/") or "/",
        format=args.format,
        max_length=args.max_length or None,
        max_prompt_length=args.max_prompt_length,
        poet=args.poet,
        num_shards=args.num_shards,
        max_shard_bytes=args.max_shard_size if isinstance(args.max_shard_size, int) else parse_size(args.max_shard_size),
        include_text=not args.drop_text,
        overwrite=args.overwrite,
        license=check_license(args.license) if args.license is not None else None,
        batch_size=args.batch_size,
        progress_every_s=args.progress_every,
        push_to_hub=args.push_to_hub,
        reference=reference_from_args(args),
        ref_model_copies=args.ref_model_copies,
        max_row_bytes=args.max_row_bytes,
        dedup=args.dedup,
        min_score_margin=args.min_score_margin,
        decontaminate=tuple(args.decontaminate),
        decontaminate_field=args.decontaminate_field,
        test_size=str(args.test_size) if args.test_size is not None else None,
    )


def check_quality_args(args: argparse.Namespace, splits: set[str]) -> None:
    if args.min_score_margin is not None and not math.isfinite(args.min_score_margin):
        raise UserError(f"--min-score-margin must be a finite number, got {args.min_score_margin}")
    if args.decontaminate_field is not None and not args.decontaminate:
        raise UserError("--decontaminate-field needs --decontaminate PATH_OR_GLOB")
    if args.test_size is not None and TEST_SPLIT in splits:
        raise UserError(f"--test-size carves a {TEST_SPLIT!r} split out of {TRAIN_SPLIT!r}, but --input already "
                        f"gives a {TEST_SPLIT!r} split; drop one of them")
    if args.test_size is not None and TRAIN_SPLIT not in splits:
        raise UserError(f"--test-size carves a {TEST_SPLIT!r} split out of {TRAIN_SPLIT!r}, and no --input is "
                        f"split {TRAIN_SPLIT!r}")
