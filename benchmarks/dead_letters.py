"""Section 9: peak memory of ``poet prepare`` with a mass of bad lines, against a clean run of the same good rows.

Dead letters are streamed to their files chunk by chunk and no row is read
whole past ``--max-row-bytes`` (see ``pipeline/steps/dead_letters.py`` and
``transforms/readers.py``), so the bad lines must cost at most 1.2x the
clean run's peak RSS, whatever their amount: ``make bench`` adds 1 GiB of them
(``--dead-letter-mb`` to change it; ``--only-dead-letters`` runs this section alone).
"""

from __future__ import annotations

from benchmarks.data import replicate, with_bad_lines

DEAD_LETTER_MB = 1024
TARGET = 1.2


def compare(bad_mb: int, run_prepare) -> dict:
    """A clean run and a run with ``bad_mb`` MiB of bad lines between the same rows, alternating, once each."""
    bad_input, bad_lines = with_bad_lines(bad_mb)
    clean = run_prepare("clean-x1", replicate(1), "clean-x1")
    bad = run_prepare(f"bad-{bad_mb}mb", bad_input, f"bad-{bad_mb}mb")
    return {"bad_mb": bad_mb, "bad_lines": bad_lines, "clean": clean, "bad": bad,
            "ratio": bad["peak_rss_mb"] / clean["peak_rss_mb"],
            "accounted": bad["read"] == clean["read"] + bad_lines and bad["pairs"] == clean["pairs"]}


def report(results: dict) -> list[str]:
    clean, bad = results["clean"], results["bad"]
    return [
        f"## 9. Memory with {results['bad_mb']:,} MiB of bad lines",
        "",
        f"The 1x sample alone, then with {results['bad_lines']:,} bad lines between its rows (unterminated 1 MiB "
        "rows, 512 KiB pairs with identical responses, and one 20 MiB row in fifty, over `--max-row-bytes`). "
        "Peak RSS is the process's.",
        "",
        "| run | rows read | pairs kept | seconds | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|",
        f"| clean | {clean['read']:,} | {clean['pairs']:,} | {clean['seconds']:.1f} | {clean['peak_rss_mb']:,.0f} |",
        f"| with bad lines | {bad['read']:,} | {bad['pairs']:,} | {bad['seconds']:.1f} | {bad['peak_rss_mb']:,.0f} |",
        "",
        "| check | measured | target | met |",
        "|---|---:|---:|:-:|",
        f"| peak RSS, bad / clean | {results['ratio']:.2f} | <= {TARGET} | "
        f"{'yes' if results['ratio'] <= TARGET else '**no**'} |",
        f"| every bad line dead-lettered, every good row kept | {results['accounted']} | True | "
        f"{'yes' if results['accounted'] else '**no**'} |",
        "",
    ]
