"""The card's plots: valid, readable PNGs drawn from stats.json alone, deterministic, and no crash on odd data."""

from __future__ import annotations

import gzip
import io
import json

import numpy as np
import pytest

from poet.transforms.plots import chosen_vs_rejected_png, lengths_png, plot_paths, render_plots
from poet.transforms.stats import LengthStats, PairLengths
from poet.transforms.contract import PrepareOptions, RunDescription
from poet.transforms.stats_file import build_stats_document

PNG = b"\x89PNG\r\n\x1a\n"


def decode(png: bytes) -> np.ndarray:
    from matplotlib.image import imread

    assert png.startswith(PNG)
    return imread(io.BytesIO(png), format="png")


def colours(image: np.ndarray) -> int:
    rgb = (image[..., :3] * 255).astype(np.uint32)
    return len(np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]))


def document_of(pairs: list[PairLengths], *, max_length: int | None = 512, poet: bool = True, dead: int = 0) -> dict:
    stats = LengthStats()
    for pair in pairs:
        stats.add(pair)
    for _ in range(dead):
        stats.add_dead_letter("identical_responses")
    return build_stats_document({"train": stats}, [], RunDescription(options=PrepareOptions(max_length=max_length, poet=poet)))


def pair(chosen: int, rejected: int, prompt: int = 20, room: int = 10**9) -> PairLengths:
    c, r = min(chosen, room), min(rejected, room)
    return PairLengths(prompt, chosen, rejected, c, r, min(c, r), min(c, r), min(c, r), False, False)


def test_plots_of_the_sample_are_the_files_written_and_come_from_stats_json(prepared_sample):
    document = json.loads((prepared_sample / "stats.json").read_text())
    plots = render_plots(document)
    assert set(plots) == set(plot_paths("train").values())
    assert sorted(p.relative_to(prepared_sample).as_posix() for p in (prepared_sample / "plots").iterdir()) == \
        sorted(plots)
    for path, png in plots.items():
        assert (prepared_sample / path).read_bytes() == png  # same bytes: deterministic, from stats.json only
        image = decode(png)
        assert image.shape[1] >= 700 and image.shape[0] >= 550  # readable at 100% zoom
        assert len(png) > 20_000 and colours(image) > 50  # a real chart, not an empty canvas
        assert b"matplotlib" not in png.lower() and b"Software" not in png  # no version stamp in the bytes


def test_no_poet_plots(prepared_sample_no_poet):
    document = json.loads((prepared_sample_no_poet / "stats.json").read_text())
    for path, png in render_plots(document).items():
        assert (prepared_sample_no_poet / path).read_bytes() == png and decode(png).shape[1] >= 700


def test_zero_pairs_gives_a_no_pairs_png():
    document = document_of([], dead=3)
    empty = render_plots(document)
    assert set(empty) == set(plot_paths("train").values())
    full = render_plots(document_of([pair(10, 20), pair(30, 5)]))
    for path, png in empty.items():
        image = decode(png)
        assert image.shape[1] >= 700 and len(png) > 5_000
        assert 2 <= colours(image) < colours(decode(full[path]))  # text on white, not a chart
    stats = document["splits"]["train"]
    assert stats["lengths"]["chosen"]["mean"] is None and stats["chosen_rejected"]["counts"] == []
    for png in (lengths_png("x", stats, max_length=None, poet=False), chosen_vs_rejected_png("x", stats, max_length=None)):
        assert decode(png).shape[1] >= 700


@pytest.mark.parametrize("pairs, max_length", [
    ([pair(1, 1)], 512),  # one pair, equal lengths: std undefined
    ([pair(5, 9)] * 50, None),  # no max length, one cell
    ([pair(3, 100_000), pair(40, 50), pair(45, 60)] * 10, 2048),  # a huge tail, folded into the last bin
    ([pair(2**25, 7), pair(9, 2**25 + 5)], 4096),  # beyond the joint grid's last edge (open bin)
    ([pair(c, r, room=100) for c in range(1, 300, 7) for r in range(1, 300, 11)], 128),  # many capped
])
def test_odd_distributions_do_not_crash(pairs, max_length):
    document = document_of(pairs, max_length=max_length)
    stats = document["splits"]["train"]
    for png in (lengths_png("train", stats, max_length=max_length),
                chosen_vs_rejected_png("train", stats, max_length=max_length),
                lengths_png("train", stats, max_length=max_length, poet=False)):
        image = decode(png)
        assert image.shape[1] >= 700 and colours(image) > 10


def test_same_statistics_same_bytes():
    document = document_of([pair(c, r) for c in range(1, 80, 3) for r in range(2, 90, 5)])
    assert render_plots(document) == render_plots(json.loads(json.dumps(document)))


def test_length_axes_are_clipped_at_the_p99_and_the_rest_counted():
    from poet.transforms.plots import _clipped_edges, _histogram

    pairs = [pair(c, 10) for c in range(1, 101)] + [pair(5000, 10)]
    stats = document_of(pairs)["splits"]["train"]
    edges = _clipped_edges(max(stats["lengths"][q]["p99"] for q in ("chosen", "rejected")))
    assert 99 <= edges[-1] < 200  # the p99, not the 5,000-token outlier
    values, overflow = _histogram(stats["histograms"]["chosen"], edges)
    assert overflow == sum(c for length, c in stats["histograms"]["chosen"] if length >= edges[-1]) >= 1
    assert values.sum() + overflow == stats["pairs"]
    assert _clipped_edges(100, max_length=150)[-1] > 150  # a max length just past the p99 stays in view
    assert _clipped_edges(100, max_length=4096)[-1] < 4096  # one far away does not flatten the histogram


def test_the_max_length_mark_is_on_prompt_plus_completion():
    """The sequence histogram (prompt + longer completion) is what --max-length caps; the plot changes with it."""
    pairs = [pair(c, 30, prompt=200) for c in range(30, 400, 5)]
    stats = document_of(pairs)["splits"]["train"]
    assert stats["histograms"]["sequence"] == [[200 + c, 1] for c in range(30, 400, 5)]
    assert lengths_png("train", stats, max_length=400) != lengths_png("train", stats, max_length=None)


def _layout_problems(figure) -> list[str]:
    """What is wrong with a drawn figure's layout: a panel (with its ticks, labels, title and legend) or a
    figure-level text outside the figure, or two panels running into each other."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    page = figure.bbox
    panels = [(f"panel {axes.get_title() or axes.get_ylabel()!r}", axes.get_tightbbox(renderer))
              for axes in figure.axes if axes.get_visible()]
    texts = [(f"text {text.get_text()!r}", text.get_window_extent(renderer))
             for text in [*figure.texts, *([figure._suptitle] if figure._suptitle else [])] if text.get_text()]
    texts += [("figure legend", legend.get_window_extent(renderer)) for legend in figure.legends]
    problems = [f"{name} leaves the figure" for name, box in panels + texts
                if box.x0 < page.x0 - 1 or box.y0 < page.y0 - 1 or box.x1 > page.x1 + 1 or box.y1 > page.y1 + 1]
    for i, (name_a, box_a) in enumerate(panels):
        problems += [f"{name_a} runs into {name_b}" for name_b, box_b in panels[i + 1:] if box_a.overlaps(box_b)]
    return problems


def _scaled(document: dict, factor: int) -> dict:
    """The same shapes with ``factor`` times the pairs: long tick labels and offset texts."""
    stats = document["splits"]["train"]
    stats["pairs"] *= factor
    for quantity, histogram in stats["histograms"].items():
        stats["histograms"][quantity] = [[length, count * factor] for length, count in histogram]
    stats["chosen_rejected"]["counts"] = [[c, r, n * factor] for c, r, n in stats["chosen_rejected"]["counts"]]
    return document


def _scored(document: dict) -> dict:
    """``document`` with the reference section of a folder scored by a model (--ref-model)."""
    from poet.transforms.reference import ReferenceModel, ReferenceStats, reference_section

    stats = ReferenceStats()
    for i in range(500):
        stats.add(-(1 + i % 17 / 10) * (1 + i % 37), 1 + i % 37, -(2 + i % 13 / 8) * (1 + i % 23), 1 + i % 23,
                  "cpu/float32")
    document["reference"] = reference_section(ReferenceModel("tiny-llama", revision="sha256:0"), {"train": stats}, ["train"])
    return document


@pytest.mark.parametrize("document", [
    _scored(document_of([pair(c, r, prompt=p) for c in range(1, 400, 9) for r in range(2, 300, 13) for p in (30, 900)])),
    _scaled(document_of([pair(c, r) for c in range(1, 80, 3) for r in range(2, 90, 5)], max_length=4096), 10**5),
    document_of([pair(c, r, room=100) for c in range(1, 300, 7) for r in range(1, 300, 11)], max_length=128,
                poet=False),
    document_of([], dead=3),
], ids=["typical", "millions-of-pairs", "no-poet-capped", "no-pairs"])
def test_no_text_leaves_the_figure_or_runs_into_another_panel(document, monkeypatch):
    from poet.transforms import plots

    drawn = []
    monkeypatch.setattr(plots, "_png", lambda figure, png=plots._png: drawn.append(figure) or png(figure))
    render_plots(document)
    assert len(drawn) == len(plot_paths("train", reference="reference" in document))
    for figure in drawn:
        assert _layout_problems(figure) == []


# --------------------------------------------------------------------------- drawn by the launcher


def test_a_prepare_run_draws_the_plots_of_its_stats_json(tmp_path):
    from conftest import HH_SAMPLE, MINIMIND, prepare

    rows = tmp_path / "rows.jsonl"
    with gzip.open(HH_SAMPLE, "rt", encoding="utf-8") as handle:
        rows.write_text("".join(line for _, line in zip(range(20), handle)), encoding="utf-8")
    assert prepare(tmp_path / "out", "--input", str(rows), "--tokenizer", str(MINIMIND)) == 0
    document = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert {p: (tmp_path / "out" / p).read_bytes() for p in plot_paths("train").values()} == render_plots(document)
