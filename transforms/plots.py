"""The card's plots, drawn from ``stats.json`` alone (no shard is read again), as PNG bytes.

Per split (file names from :func:`transforms.contract.plot_file`):

* ``lengths``: completion lengths of chosen vs rejected before POET (overlaid)
  and the POET length after it, the prompt length, and prompt + longer completion
  with the max-length cut marked (the cap applies to that sum); each axis is clipped
  at the p99 and what lies beyond is counted;
* ``chosen_vs_rejected``: the joint histogram of chosen vs
  rejected length before POET with the diagonal (POET keeps the shorter one);
* ``reference_logps`` (folders scored with ``--ref-model`` only): the distribution of
  the reference model's per-token log-probs of the chosen and rejected completions.

Matplotlib's object API with the Agg canvas is used directly, never ``pyplot``, so
nothing global changes and the functions are safe in any process (Beam workers,
tests). Margins are fixed in inches instead of computed by a layout engine
(constrained layout measures every text twice); a test
checks that no text leaves the figure or runs into another panel. PNGs carry
no software version or date, so the same statistics give the same bytes with
the same matplotlib.
"""

from __future__ import annotations

import io
import math

import numpy as np

from poet.transforms.contract import PLOT_KINDS, REFERENCE_PLOT, RunDescription, plot_file
from poet.transforms.stats_table import format_pct

DPI = 100
_COLORS = {"chosen": "#1f77b4", "rejected": "#ff7f0e", "poet": "#2ca02c", "prompt": "#9467bd", "sequence": "#8c564b",
           "cut": "#d62728"}
_MAX_BINS = 60


def plot_paths(split: str, reference: bool = False) -> dict[str, str]:
    """Relative paths (from the folder's root) of one split's plots, by kind; ``reference``: of a scored folder."""
    return {kind: plot_file(split, kind) for kind in (*PLOT_KINDS, *((REFERENCE_PLOT,) if reference else ()))}


def render_plots(document: dict) -> dict[str, bytes]:
    """Every plot of a stats.json document: relative path -> PNG bytes."""
    options = RunDescription.from_json(document.get("run")).options
    max_length, poet = options.max_length, options.poet
    plots = {}
    for split, stats in document["splits"].items():
        paths = plot_paths(split)
        plots[paths["lengths"]] = lengths_png(split, stats, max_length=max_length, poet=poet)
        plots[paths["chosen_vs_rejected"]] = chosen_vs_rejected_png(split, stats, max_length=max_length)
    reference = document.get("reference")
    for split, ref_stats in (reference or {}).get("splits", {}).items():
        plots[plot_file(split, REFERENCE_PLOT)] = reference_logps_png(split, ref_stats, reference["bin_width"])
    return plots


def reference_logps_png(split: str, stats: dict, bin_width: float) -> bytes:
    """Step histograms of the per-token reference log-probs, chosen and rejected overlaid, means marked."""
    figure = _figure(7.5, 3.6, left=0.8, bottom=0.6, top=0.4)
    if not stats["chosen"]["pairs"]:
        return _no_pairs(figure, split, {})
    axes = figure.add_subplot()
    for side in ("chosen", "rejected"):
        bins = np.array([b for b, _ in stats[side]["histogram"]], dtype=float)
        counts = np.array([n for _, n in stats[side]["histogram"]], dtype=float)
        first = round(bins.min() / bin_width)
        dense = np.zeros(round(bins.max() / bin_width) - first + 1)
        dense[np.round(bins / bin_width).astype(int) - first] = counts
        edges = (first + np.arange(len(dense) + 1)) * bin_width
        axes.stairs(dense, edges, color=_COLORS[side], linewidth=1.5, label=f"{side} (mean {stats[side]['mean']:.2f})")
        axes.axvline(stats[side]["mean"], color=_COLORS[side], linestyle="--", linewidth=1)
    axes.set_xlabel("reference log-prob per completion token (nats)")
    axes.set_ylabel("pairs")
    axes.set_title(f"split '{split}': reference log-probs per token")
    axes.legend(frameon=False)
    return _png(figure)


def _figure(width: float, height: float, *, left: float, bottom: float, top: float, right: float = 0.2,
            wspace: float = 0.0, hspace: float = 0.0):
    """A ``width`` x ``height`` inch figure whose panels leave these margins (inches) for labels and titles;
    ``wspace``/``hspace``: the gaps (inches) of a grid of two by two panels."""
    from matplotlib.figure import Figure

    inner_width, inner_height = width - left - right, height - bottom - top
    figure = Figure(figsize=(width, height), dpi=DPI)
    figure.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                           wspace=2 * wspace / (inner_width - wspace), hspace=2 * hspace / (inner_height - hspace))
    return figure


def _rect(figure, left: float, bottom: float, width: float, height: float) -> list[float]:
    """A panel's place in inches from the figure's lower left corner, as ``add_axes`` takes it (fractions)."""
    figure_width, figure_height = figure.get_size_inches()
    return [left / figure_width, bottom / figure_height, width / figure_width, height / figure_height]


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _no_pairs(figure, split: str, stats: dict) -> bytes:
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.text(0.5, 0.55, f"split '{split}': no pairs", ha="center", va="center", fontsize=18)
    axes.text(0.5, 0.4, f"{stats.get('read', 0):,} rows read, {stats.get('dead_lettered', 0):,} dead-lettered",
              ha="center", va="center", fontsize=12, color="0.35")
    return _png(figure)


def _expand(pairs: list) -> tuple[np.ndarray, np.ndarray]:
    """``[[length, count], ...]`` -> (lengths, counts) arrays."""
    if not pairs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    array = np.asarray(pairs, dtype=np.int64)
    return array[:, 0], array[:, 1]


def _clipped_edges(upper: float, max_length: int | None = None) -> np.ndarray:
    """Integer-wide bins from 0 to ``upper`` (a p99: the axis is clipped there and longer values are counted,
    not drawn), widened to show ``max_length`` when it lies just beyond."""
    upper = max(1, math.ceil(upper))
    if max_length is not None and upper < max_length <= 2 * upper:
        upper = max_length + max(1, max_length // 20)
    width = max(1, math.ceil((upper + 1) / _MAX_BINS))
    return np.arange(0, upper + width + 1, width)


def _histogram(pairs: list, edges: np.ndarray) -> tuple[np.ndarray, int]:
    """Counts per bin of the lengths below the last edge, and how many lengths lie beyond it (off the axis)."""
    lengths, counts = _expand(pairs)
    shown = lengths < edges[-1]
    values, _ = np.histogram(lengths[shown], bins=edges, weights=counts[shown])
    return values, int(counts[~shown].sum())


def _draw(axes, stats: dict, quantity: str, edges: np.ndarray, label: str) -> int:
    """One quantity's histogram as a filled step line; returns the values off the axis."""
    values, overflow = _histogram(stats["histograms"][quantity], edges)
    summary = stats["lengths"][quantity]
    axes.stairs(values, edges, fill=True, alpha=0.35, color=_COLORS[quantity])
    axes.stairs(values, edges, color=_COLORS[quantity], linewidth=1.5,
                label=f"{label} (median {summary['p50']:,.0f}, mean {summary['mean']:,.1f} tokens)")
    return overflow


def _finish(axes, edges: np.ndarray, xlabel: str, overflow: int, what: str) -> None:
    axes.set_xlim(0, int(edges[-1]))
    axes.set_ylabel("pairs")
    axes.set_xlabel(xlabel)
    axes.grid(axis="y", alpha=0.3)
    if overflow:
        axes.plot([], [], " ", label=f"+ {overflow:,} {what} longer than {int(edges[-1]):,} (past the p99), not shown")
    axes.legend(loc="upper right", fontsize=8)


def lengths_png(split: str, stats: dict, *, max_length: int | None, poet: bool = True) -> bytes:
    """Four histograms of one split: completion lengths before POET and the POET length after it (left,
    one axis clipped at the completions' p99), the prompt length, and prompt + longer completion, which is
    what ``--max-length`` caps (right, with the mark)."""
    figure = _figure(13, 8, left=0.75, bottom=0.55, top=0.75, wspace=0.9, hspace=0.95)
    if not stats["pairs"]:
        return _no_pairs(figure, split, stats)
    lengths = stats["lengths"]
    (before, prompt), (after, sequence) = figure.subplots(2, 2, width_ratios=(3, 2))
    figure.suptitle(f"split '{split}': token lengths of {stats['pairs']:,} pairs")
    edges = _clipped_edges(max(lengths[q]["p99"] for q in ("chosen", "rejected")))
    overflow = sum(_draw(before, stats, q, edges, q) for q in ("chosen", "rejected"))
    before.set_title("completion length before POET")
    _finish(before, edges, "completion length (tokens, EOS included)", overflow, "completions")
    overflow = _draw(after, stats, "poet", edges, "POET length = min(chosen, rejected)")
    removed = stats.get("poet_removed_tokens") or {}
    after.set_title(f"after POET: both cut to this length ({format_pct(removed.get('pct'))} of completion "
                    "tokens removed)" if poet else
                    f"not applied (--no-poet): POET would remove {format_pct(removed.get('pct'))} of completion "
                    "tokens")
    _finish(after, edges, "completion length (tokens, EOS included)", overflow, "pairs")

    edges = _clipped_edges(lengths["prompt"]["p99"])
    overflow = _draw(prompt, stats, "prompt", edges, "prompt")
    prompt.set_title("prompt length")
    _finish(prompt, edges, "prompt length (tokens)", overflow, "prompts")

    edges = _clipped_edges(lengths["sequence"]["p99"], max_length)
    overflow = _draw(sequence, stats, "sequence", edges, "prompt + longer completion")
    sequence.set_title("prompt + longer completion, before truncation")
    if max_length is not None:
        cut = sum(count for length, count in stats["histograms"]["sequence"] if length > max_length)
        label = f"max length = {max_length:,}: {cut:,} pairs cut at the end ({format_pct(100 * cut / stats['pairs'])})"
        if max_length <= edges[-1]:
            sequence.axvline(max_length, color=_COLORS["cut"], linestyle="--", linewidth=1.5, label=label)
        else:
            sequence.plot([], [], " ", label=label + ", off the axis")
    _finish(sequence, edges, "prompt + longer completion (tokens)", overflow, "pairs")
    return _png(figure)


def _display_factor(used_bins: int, pairs: int) -> int:
    """How many fine grid bins to merge per displayed bin: about sqrt(pairs / 2) bins per axis at most."""
    wanted = max(12.0, math.sqrt(pairs / 2))
    factor = 1
    while used_bins / factor > wanted and factor < 16:
        factor *= 2
    return factor


def _log_ticks(low: float, high: float) -> list[float]:
    ticks = [m * 10**e for e in range(0, 9) for m in (1, 2, 5)]
    return [t for t in ticks if low <= t <= high]


def chosen_vs_rejected_png(split: str, stats: dict, *, max_length: int | None) -> bytes:
    """2-D histogram of (chosen, rejected) completion lengths before POET, log-log, with the diagonal."""
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    height, left, bottom, top = 7.2, 0.85, 0.95, 0.75  # inches: the legend below, the title above; the colour
    # bar's labels take the room right of the square panel
    figure = _figure(8, height, left=left, bottom=bottom, top=top)
    joint = stats.get("chosen_rejected") or {}
    cells = [cell for cell in joint.get("counts", []) if cell[0] > 0 and cell[1] > 0]  # length 0: not on a log axis
    if not stats["pairs"] or not cells:
        return _no_pairs(figure, split, stats)
    edges = list(joint["edges"])
    edges.append(edges[-1] * 2)  # close the open last bin
    index = {edge: i for i, edge in enumerate(edges)}
    used = sorted({index[c[0]] for c in cells} | {index[c[1]] for c in cells})
    low, high = used[0], used[-1] + 1
    factor = _display_factor(high - low, stats["pairs"])
    high = low + math.ceil((high - low) / factor) * factor
    while high >= len(edges):  # past the grid's end: extend it geometrically
        edges.append(edges[-1] * 2)
    grid = np.array(edges[low : high + 1 : factor], dtype=float)
    size = len(grid) - 1
    counts = np.zeros((size, size))
    for chosen_bin, rejected_bin, count in cells:
        counts[(index[rejected_bin] - low) // factor, (index[chosen_bin] - low) // factor] += count
    counts[counts == 0] = np.nan
    side = height - bottom - top  # a square panel, its colour bar to the right
    axes = figure.add_axes(_rect(figure, left, bottom, side, side))
    most = max(2.0, float(np.nanmax(counts)))
    mesh = axes.pcolormesh(grid, grid, counts, cmap="viridis", norm=LogNorm(vmin=1, vmax=most))
    bar = figure.add_axes(_rect(figure, left + side + 0.2, bottom + 0.1 * side, 0.22, 0.8 * side))
    colorbar = figure.colorbar(mesh, cax=bar, label="pairs per cell")
    colorbar.set_ticks(_log_ticks(1, most))
    colorbar.ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    colorbar.ax.yaxis.set_minor_formatter(NullFormatter())
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.plot([grid[0], grid[-1]], [grid[0], grid[-1]], color="black", linewidth=1,
              label="chosen = rejected: POET cuts both to the shorter one")
    axes.set_xlim(grid[0], grid[-1])
    axes.set_ylim(grid[0], grid[-1])
    axes.set_aspect("equal")
    ticks = _log_ticks(grid[0], grid[-1])
    for axis in (axes.xaxis, axes.yaxis):
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        axis.set_minor_formatter(NullFormatter())
    axes.grid(which="major", alpha=0.2)
    axes.set_xlabel("chosen completion length before POET (tokens, log scale)")
    axes.set_ylabel("rejected completion length before POET (tokens, log scale)")
    axes.set_title(f"split '{split}': chosen vs rejected length ({stats['pairs']:,} pairs)"
                   + ("" if max_length is None else f"\nbefore the max-length cap of {max_length:,} tokens "
                                                     "(prompt + completion)"))
    box = {"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "0.6"}
    axes.text(0.03, 0.97, f"rejected longer: {format_pct(stats['rejected_longer']['pct'])} of pairs",
              transform=axes.transAxes, ha="left", va="top", fontsize=10, bbox=box, zorder=5)
    axes.text(0.97, 0.03, f"chosen longer: {format_pct(stats['chosen_longer']['pct'])} of pairs",
              transform=axes.transAxes, ha="right", va="bottom", fontsize=10, bbox=box, zorder=5)
    figure.legend(loc="lower center", fontsize=9, ncols=1, frameon=False)
    return _png(figure)
