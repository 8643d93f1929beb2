"""What ``poet prepare`` and ``poet score`` print while they run: poet's progress lines, the libraries' warnings."""

from __future__ import annotations

import logging
import os
import sys

from poet.transforms.errors import InputFileError

REACH_THREAD = "poet-reach-output"  # the thread that looks at a remote --output (pipeline.launch.output)


def _worth_showing(record: logging.LogRecord) -> bool:
    """Hide what would repeat or mislead: the runner's traceback of an input file's problem or of an interruption
    (poet says each in one line), apache-beam's warning, without its [gcp] extra, about BigQuery clients
    nothing here uses, RunInference's (``--ref-model``) that it cannot measure memory without its optional
    model manager, the Dataflow runner's choice of pickler, and the retries of the bounded look at a remote
    ``--output`` (its outcome is one line: see ``pipeline.launch.output``)."""
    message = str(record.msg)
    return not (record.threadName == REACH_THREAD or message.startswith(("apitools not found", "KeyboardInterrupt", "Resource module is not available",
                                  "Runner defaulting to pickling library"))
                or InputFileError.MARKER in message
                or (record.exc_info and InputFileError.MARKER in str(record.exc_info[1])))


def quiet_logging() -> None:
    """Progress lines from poet on stderr; the libraries' chatter only when it is a warning."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_worth_showing)
    for noisy in ("apache_beam", "transformers", "httpx", "httpx2", "urllib3"):  # httpx2: huggingface-hub 2.x
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")  # "PyTorch was not found": not needed here
