"""The PNG of the training curves, drawn from the records of ``metrics.jsonl``.

Matplotlib's object API on the Agg canvas, never ``pyplot``: no global state, as in ``transforms.plots``.
"""

from __future__ import annotations

from pathlib import Path

PANELS = ("loss", "rewards/accuracies", "rewards/margins", "learning_rate")


def curves_figure(records: list[dict], title: str):
    """One panel per metric of :data:`PANELS`: the training curve, and the eval points where there are any.
    The metric axes show plain numbers: no offset notation (a loss near 0.6931 reads 0.69310, not "+6.931e-1"
    above the axis); the learning rate keeps its ×10ⁿ factor, where it reads better."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 7), dpi=100, layout="constrained")
    axes = figure.subplots(2, 2, sharex=True)
    for ax, name in zip(axes.flat, PANELS):
        for prefix, style in (("", "-"), ("eval_", "o--")):
            points = [(r["step"], r[prefix + name]) for r in records if prefix + name in r]
            if points:
                ax.plot(*zip(*points), style, label="eval" if prefix else "train")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
        if ax.lines and name != "learning_rate":
            ax.legend()
    axes[1, 1].ticklabel_format(axis="y", style="sci", scilimits=(0, 0), useOffset=False)  # 1e-6 reads as 1e-6
    for ax in axes[-1]:
        ax.set_xlabel("step")
    figure.suptitle(title)
    return figure


def plot_curves(records: list[dict], path: Path, title: str) -> None:
    curves_figure(records, title).savefig(path, dpi=100)
