"""Progress of a long run: counts, rate and time left, redrawn on a terminal or logged, and the runner's metrics."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys

from conftest import HH_SAMPLE, MINIMIND, REPO, prepare

from poet.transforms.progress import Progress, ProgressSettings


def _progress(every_s: float, terminal: bool, total_bytes: int | None = 1000) -> Progress:
    return Progress(ProgressSettings(every_s, terminal, total_bytes), io.StringIO(), started=100.0)


def test_a_report_every_interval_with_counts_rate_and_time_left():
    progress = _progress(5, terminal=False)
    progress.count_read(200, 250)
    progress.count_prepared(190, 10, now=104.0)  # not yet 5 s
    assert progress.stream.getvalue() == ""
    progress.count_prepared(0, 0, now=110.0)
    assert progress.stream.getvalue() == (
        "poet: 200 rows read, 190 kept, 10 dead-lettered, 20 rows/s, 25% of the input, about 0:30 left\n"
    )
    progress.count_prepared(0, 0, now=112.0)  # 2 s after the last report
    assert progress.stream.getvalue().count("\n") == 1


def test_a_terminal_line_is_redrawn_in_place_and_ended_once():
    progress = _progress(1, terminal=True, total_bytes=None)
    for second in (101, 102):
        progress.count_read(10, 0)
        progress.count_prepared(10, 0, now=second)
    assert progress.stream.getvalue() == ("\rpoet: 10 rows read, 10 kept, 0 dead-lettered, 10 rows/s\x1b[K"
                                          "\rpoet: 20 rows read, 20 kept, 0 dead-lettered, 10 rows/s\x1b[K")
    progress.count_read(5, 0)
    progress.count_prepared(4, 1, now=102.5)  # not shown yet: the end shows it
    progress.end(now=102.5)
    progress.end()
    assert progress.stream.getvalue().endswith(
        "\rpoet: 25 rows read, 24 kept, 1 dead-lettered, 10 rows/s\x1b[K\n")


def test_zero_seconds_never_reports():
    progress = _progress(0, terminal=True)
    progress.count_read(10, 10)
    progress.count_prepared(10, 0, now=10_000.0)
    progress.end()
    assert progress.stream.getvalue() == ""


def _args(output) -> list[str]:
    return ["--input", str(HH_SAMPLE), "--tokenizer", str(MINIMIND), "--license", "mit", "--batch-size", "16",
            "--progress-every", "0.001"]


def test_a_run_on_a_terminal_shows_one_redrawn_progress_line(tmp_path):
    """``poet prepare`` with its stderr on a terminal (a pty): the line is redrawn, reaches every row and the
    whole input, and is ended before the final table."""
    leader, follower = pty.openpty()
    script = f"import sys; from poet.pipeline.commands.cli import main; sys.exit(main({['prepare', '--output', str(tmp_path / 'out'), *_args(tmp_path)]!r}))"
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=follower, cwd=REPO)
    os.close(follower)
    shown = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 120)
        assert ready, "no output for 120 s"
        try:
            data = os.read(leader, 65536)
        except OSError:  # the pty closed: the process is gone
            break
        if not data:
            break
        shown += data
    os.close(leader)
    assert process.wait(timeout=60) == 0
    assert b"wrote" in process.stdout.read()
    text = shown.decode()
    redrawn = [part for part in text.split("\r") if part.startswith("poet: ") and "rows read" in part]
    assert len(redrawn) > 2 and all(part.endswith("\x1b[K") for part in redrawn)  # each redraws the same line
    last = redrawn[-1]
    assert "2,312 rows read" in last and "dead-lettered" in last and "100% of the input, about 0:00 left" in last
    assert f"{last}\r\n" in text  # ended (the terminal writes a newline as \r\n) before anything else


def test_a_run_off_a_terminal_logs_progress_lines(tmp_path, capsys):
    assert prepare(tmp_path / "out", *_args(tmp_path)) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "rows read" in line]
    assert len(lines) > 2 and "\r" not in "".join(lines)
    assert lines[-1].startswith("poet: 2,312 rows read, ")


def test_rows_read_kept_and_dead_lettered_are_beam_metrics(tmp_path):
    """What Dask's and Dataflow's own UIs show: the same counters, as Beam metrics."""
    import apache_beam as beam
    from apache_beam.metrics import MetricsFilter

    from poet.pipeline.steps.prepare_pairs import PreparePairs
    from poet.pipeline.steps.read import ReadPreferenceFiles
    from poet.pipeline.steps.tokenizer_source import TokenizerSource
    from poet.transforms.contract import PrepareOptions

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "Hi", "chosen": "a", "rejected": "b"}\nnot json\n')
    progress = ProgressSettings(every_s=0, terminal=False)
    tokenizer = TokenizerSource.resolve(str(MINIMIND), carry=False)
    pipeline = beam.Pipeline()
    _ = (pipeline
         | ReadPreferenceFiles([("train", 0, str(bad))], progress)
         | PreparePairs(tokenizer, PrepareOptions(max_length=None, batch_size=8), False, progress))  # fmt: skip
    result = pipeline.run()
    result.wait_until_finish()
    counters = {metric.key.metric.name: metric.committed
                for metric in result.metrics().query(MetricsFilter().with_namespace("poet"))["counters"]}
    assert counters == {"rows_read": 2, "pairs_kept": 1, "dead_letter_malformed_json": 1}
