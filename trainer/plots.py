"""The PNG of the training curves, drawn from the records of ``metrics.jsonl``."""

from __future__ import annotations

from pathlib import Path

PANELS = ("loss", "rewards/accuracies", "rewards/margins", "learning_rate")


def plot_curves(records: list[dict], path: Path, title: str) -> None:
    """One panel per metric of :data:`PANELS`: the training curve, and the eval points where there are any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    for ax, name in zip(axes.flat, PANELS):
        for prefix, style in (("", "-"), ("eval_", "o--")):
            points = [(r["step"], r[prefix + name]) for r in records if prefix + name in r]
            if points:
                ax.plot(*zip(*points), style, label="eval" if prefix else "train")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        if ax.lines and name != "learning_rate":
            ax.legend()
    for ax in axes[-1]:
        ax.set_xlabel("step")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
