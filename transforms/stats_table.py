"""Render a stats.json document as a terminal table (``poet stats`` and the end of ``poet prepare``)."""

from __future__ import annotations

from poet.transforms.contract import RunDescription
from poet.transforms.stats import PERCENTILES, QUANTITIES
from poet.transforms.terminal import printable


def format_number(value, missing: str = "-") -> str:
    """Thousands separators; floats with one decimal; ``missing`` for undefined (null) values."""
    if value is None:
        return missing
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}"


def format_pct(value, missing: str = "-") -> str:
    return missing if value is None else f"{value:.1f}%"


def _grid(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def render_split(name: str, stats: dict, *, poet: bool = True) -> str:
    parts = [f"== {printable(name)}: {stats['read']:,} read, {stats['pairs']:,} kept, {stats['dead_lettered']:,} dead-lettered"]
    columns = ["count", "mean", "std", "min", *[f"p{p}" for p in PERCENTILES], "max"]
    parts.append(_grid(["tokens", *columns],
                       [[q, *[format_number(stats["lengths"][q][c]) for c in columns]] for q in QUANTITIES]))
    tokens = stats["completion_tokens"]
    if poet:
        parts.append(
            f"completion tokens: {tokens['before_poet']:,} before POET, {tokens['after_poet']:,} after "
            f"({tokens['removed']:,} removed, {format_pct(tokens['removed_pct'])})"
        )
        cut = f"POET cut {format_pct(stats['poet_cut']['pct'])} of pairs"
    else:
        parts.append(f"completion tokens: {tokens['after_poet']:,} (not truncated to equal length: --no-poet)")
        cut = f"POET would cut {format_pct(stats.get('poet_would_cut', {}).get('pct'))} of pairs"
    parts.append(
        f"chosen longer {format_pct(stats['chosen_longer']['pct'])}, rejected longer {format_pct(stats['rejected_longer']['pct'])}, "
        f"equal {format_pct(stats['equal_length']['pct'])}; {cut}; "
        f"EOS lost: {stats['chosen_lost_eos']:,} chosen, {stats['rejected_lost_eos']:,} rejected"
    )
    if stats["dead_letter_reasons"]:
        parts.append(_grid(["dead-letter reason", "rows"],
                           [[printable(reason), f"{count:,}"] for reason, count in stats["dead_letter_reasons"].items()]))
    return "\n".join(parts)


def render_reference(reference: dict) -> str:
    """The model that computed the reference log-prob columns, and their per-token means per split."""
    model = reference["model"]
    used = ", ".join(f"{what} ({pairs:,} pairs)" for what, pairs in model.get("scored_with", {}).items()) or "none"
    gguf = f", GGUF file {printable(model['gguf_file'])}" if model.get("gguf_file") else ""
    rows = [[printable(split), side, format_number(stats[side]["pairs"]),
             "-" if stats[side]["mean"] is None else f"{stats[side]['mean']:.2f}"]
            for split, stats in reference["splits"].items() for side in ("chosen", "rejected")]  # fmt: skip
    return "\n".join([
        f"== reference log-probs: {printable(model['name'])}{gguf}, revision {printable(str(model.get('revision')))}",
        printable(f"requested dtype {model.get('dtype')}; scored with {used}"),
        _grid(["split", "completion", "pairs", "mean log-prob per token (binned)"], rows),
    ])  # fmt: skip


def render(document: dict) -> str:
    """The tables of every split; a string the document holds (a split's name, a reason) has its control
    characters escaped (:mod:`transforms.terminal`)."""
    poet = RunDescription.from_json(document.get("run")).options.poet
    sections = [render_split(name, stats, poet=poet) for name, stats in document["splits"].items()]
    if len(document["splits"]) > 1:
        sections.append(render_split("all splits", document["overall"], poet=poet))
    if document.get("reference"):
        sections.append(render_reference(document["reference"]))
    return "\n\n".join(sections)
