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
* ``DataflowRunner``: Google Cloud Dataflow (the ``gcp`` extra), set up by Beam.

Any other name is refused with one line listing these.
"""

from __future__ import annotations

import logging

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

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
        try:
            with distributed.Client(dask.address, timeout=dask.timeout or 10) as client:
                workers = len(client.scheduler_info()["workers"])
        except (OSError, TimeoutError) as err:
            raise UserError(f"cannot reach the Dask scheduler at {dask.address} ({first_line(err)}); "
                            "start one with `dask scheduler`, or leave out --dask_client_address "
                            "for a local cluster") from None
        _log.info("poet: Dask scheduler %s with %d worker(s), %d partition(s)", dask.address, workers,
                  dask.npartitions or 0)
    return DaskRunner()
