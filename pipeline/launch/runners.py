"""The Beam runners ``poet prepare`` runs on, and how each one is set up and released.

* ``DirectRunner`` (the default): Beam's in-process ``FnApiRunner``. Beam's own
  DirectRunner would first download the Prism binary. It honours
  ``--direct_num_workers N --direct_running_mode multi_processing``; one worker
  in this process stays the default: on a laptop the tokenizer already uses
  every core inside each batch (see benchmarks/RESULTS.md).
* ``DaskRunner``: Beam's Dask runner on the ``dask.distributed`` scheduler at
  ``--dask_client_address``, or on a local cluster without it. Its work is
  split by ``--dask_npartitions``; poet's default is one partition per input
  file, since everything downstream keeps the partitions of the file list.
  More partitions than files read the files in parts (:func:`input_parts`).
  A scheduler that cannot be reached within ``--dask_connection_timeout`` (30 s
  by default), or does not answer 5 s later, and a cluster left without workers
  for 120 s, end the run in one line.
* ``DataflowRunner``: Google Cloud Dataflow (the ``gcp`` extra), set up by Beam;
  its setup is checked first and ``--dry_run True`` builds its job without
  submitting it (see :mod:`pipeline.launch.dataflow`).

Any other name is refused with one line listing these.
"""

from __future__ import annotations

import asyncio
import logging

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from poet.pipeline.launch import dataflow
from poet.transforms.errors import UserError, first_line

RUNNERS = {
    "DirectRunner": "this machine (default)",
    "DaskRunner": "a Dask cluster, --dask_client_address tcp://HOST:8786 (a local one without it)",
    "DataflowRunner": "Google Cloud Dataflow",
}
_QUALIFIED = {
    "apache_beam.runners.direct.direct_runner.DirectRunner": "DirectRunner",
    "apache_beam.runners.dask.dask_runner.DaskRunner": "DaskRunner",
    "apache_beam.runners.dataflow.dataflow_runner.DataflowRunner": "DataflowRunner",
}
_log = logging.getLogger("poet")
DASK_CONNECT_TIMEOUT = 30.0  # seconds to reach --dask_client_address, unless --dask_connection_timeout says
NO_WORKERS_TIMEOUT = 120.0  # seconds a Dask cluster may have no worker before the run ends
_DASK_POLL = 5.0  # seconds between looks at the cluster's workers
_DASK_HANDSHAKE = 5.0  # seconds a scheduler has to answer once connected


def runner_name(options: PipelineOptions) -> str:
    """The canonical name of ``--runner`` (``DirectRunner`` when absent); one line for a name that does not work."""
    given = options.view_as(StandardOptions).runner
    if given is None:
        return "DirectRunner"
    name = _QUALIFIED.get(given, given)
    for known in RUNNERS:
        if name.lower() in (known.lower(), known.lower().removesuffix("runner")):
            return known
    listed = "; ".join(f"{known} ({where})" for known, where in RUNNERS.items())
    raise UserError(f"unknown --runner {given!r}; poet runs on {listed}")


def check_runner(options: PipelineOptions, worker_paths: list[tuple[str, str]]) -> bool:
    """Before any work: the runner's name and setup, and on Dataflow the ``(what, path)`` its workers open.
    Returns whether this is a dry run (``--dry_run True``, Dataflow only)."""
    name = runner_name(options)
    dry_run = dataflow.is_dry_run(options)
    if dry_run and name != "DataflowRunner":
        raise UserError("--dry_run builds a Dataflow job without submitting it: pass --runner DataflowRunner too")
    if name == "DataflowRunner":
        dataflow.check_setup(options)
        dataflow.check_worker_paths(worker_paths, dry_run)
    return dry_run


def choose_runner(options: PipelineOptions, files: int):
    """The runner object for ``beam.Pipeline`` (None: Beam builds the one named in the options)."""
    name = runner_name(options)
    standard = options.view_as(StandardOptions)
    if name == "DirectRunner":
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        standard.runner = None
        return FnApiRunner()
    if name == "DaskRunner":
        standard.runner = None
        return _dask_runner(options, files)
    standard.runner = name
    return None


def on_this_machine(runner) -> bool:
    """Whether every worker runs on this machine (the direct runner, in this process or in worker processes)."""
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    return isinstance(runner, FnApiRunner)


def run_in_process(runner, options: PipelineOptions) -> bool:
    """Whether the job runs as one worker inside this process (the default local run)."""
    direct = options.view_as(DirectOptions)
    return on_this_machine(runner) and direct.direct_running_mode in (None, "in_memory")


def input_parts(runner, options: PipelineOptions) -> int:
    """Into how many parts the input is read: Dask's partitions (``--dask_npartitions``, one per file unless
    given), so that more partitions than files split the large files; one part for the other runners (the direct
    runner's worker processes share the chunks of rows, Dataflow splits its own work)."""
    if runner is None or on_this_machine(runner):
        return 1
    from apache_beam.runners.dask.dask_runner import DaskOptions

    return options.view_as(DaskOptions).npartitions or 1


def release(result) -> None:
    """Close what a finished run holds: the Dask client (and the local cluster it started, if any)."""
    client = getattr(result, "client", None)
    if client is not None:
        client.close()


async def _count_workers(distributed, address: str, timeout: float) -> int:
    """The scheduler's workers. ``distributed`` bounds the connection, not the handshake that follows it (a
    server that accepts and never answers would hang it forever): the caller bounds the whole."""
    async with distributed.Client(address, asynchronous=True, timeout=timeout) as client:
        return len(client.scheduler_info()["workers"])


def wait(result) -> None:
    """Wait for the job. On Dask, a cluster that has had no worker for :data:`NO_WORKERS_TIMEOUT` seconds (all
    of them lost, none ever joined) ends the run in one line: its tasks would otherwise wait forever."""
    client = getattr(result, "client", None)
    if client is not None:
        _wait_for_workers_to_finish(result, client)
    result.wait_until_finish()


def _wait_for_workers_to_finish(result, client) -> None:
    import distributed

    without_workers = 0.0
    while True:
        try:
            distributed.wait(result.futures, timeout=_DASK_POLL)  # finished or failed; results gathered after
            return
        except TimeoutError:
            pass
        without_workers = 0.0 if client.scheduler_info()["workers"] else without_workers + _DASK_POLL
        if without_workers >= NO_WORKERS_TIMEOUT:
            result.cancel()
            raise UserError(f"the Dask cluster at {client.scheduler.address} has had no worker for "
                            f"{NO_WORKERS_TIMEOUT:g} s; nothing was written: start workers (`dask worker "
                            f"{client.scheduler.address}`) and run again")


def _dask_runner(options: PipelineOptions, files: int):
    try:
        import distributed
        from apache_beam.runners.dask.dask_runner import DaskOptions, DaskRunner
    except ImportError:
        raise UserError("--runner DaskRunner needs Dask: pip install 'poet-data[dask]'") from None
    dask = options.view_as(DaskOptions)
    if dask.npartitions is None and dask.partition_size is None:
        dask.npartitions = files
    if dask.address:
        timeout = dask.timeout or DASK_CONNECT_TIMEOUT
        bound = timeout + _DASK_HANDSHAKE  # distributed gives up connecting after timeout; then the handshake
        try:
            workers = asyncio.run(asyncio.wait_for(_count_workers(distributed, dask.address, timeout), bound))
        except TimeoutError:
            raise UserError(f"the Dask scheduler at {dask.address} did not answer within {bound:g} s (is a Dask "
                            "scheduler listening there?); check --dask_client_address, or raise "
                            "--dask_connection_timeout") from None
        except Exception as err:  # noqa: BLE001 - not-an-address (ValueError), tls:// without TLS (TypeError)...
            raise UserError(f"cannot reach the Dask scheduler at {dask.address} ({first_line(err)}); "
                            "start one with `dask scheduler`, or leave out --dask_client_address "
                            "for a local cluster") from None
        _log.info("poet: Dask scheduler %s with %d worker(s), %d partition(s)", dask.address, workers,
                  dask.npartitions or 0)
    return DaskRunner()
