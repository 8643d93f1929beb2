"""What poet adds to Beam's ``DataflowRunner``: one line for each setup mistake, and a dry run that proves the job builds.

Beam's own ``--dry_run True`` builds the whole Dataflow job on the launcher (the
graph, its coders and environments, the job request) and stops before the
first request to Google Cloud: no credentials, no network, nothing staged. poet
runs it instead of the staged run (there is no output to read back) and prints
one summary of the job it would submit. Workers run on other machines, so
every path they read or write must be one they can reach: a local file is
refused for a real submission and only warned about in a dry run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, TestOptions

from poet.transforms.errors import UserError

# Dataflow's quota on one job creation request (cloud.google.com/dataflow/quotas); the job graph is most of it
JOB_REQUEST_LIMIT = 10 * 2**20
_REQUIRED = ("project", "region", "temp_location")
_log = logging.getLogger("poet")


def is_dry_run(options: PipelineOptions) -> bool:
    """``--dry_run True`` (Beam takes any text as true: ``--dry_run False`` too, so poet does the same)."""
    return bool(options.view_as(TestOptions).dry_run)


def check_setup(options: PipelineOptions) -> None:
    """The ``gcp`` extra and the options every Dataflow job needs, checked before anything runs."""
    try:
        from apache_beam.io.gcp import gcsio
        from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner  # noqa: F401

        installed = gcsio.GCS_INSTALLED
    except ImportError:
        installed = False
    if not installed:
        raise UserError("--runner DataflowRunner needs Google Cloud's libraries: pip install 'poet-data[gcp]'")
    cloud = options.view_as(GoogleCloudOptions)
    missing = [f"--{name}" for name in _REQUIRED if not getattr(cloud, name)]
    if missing:
        raise UserError(f"--runner DataflowRunner needs {', '.join(missing)} (e.g. --project MY_PROJECT "
                        "--region us-central1 --temp_location gs://MY_BUCKET/tmp)")
    from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator

    # Beam's own checks, run here: for a bad --temp_location Beam would go online to create a default bucket
    validator = PipelineOptionsValidator(options, None)
    errors = validator.validate_gcs_path(cloud, "temp_location") + validator.validate_cloud_options(cloud)
    if errors:
        raise UserError(f"--runner DataflowRunner: {errors[0]}")


def check_worker_paths(paths: Iterable[tuple[str, str]], dry_run: bool) -> None:
    """``(what, path)`` pairs the workers will open: a path of this machine is refused (a warning in a dry run)."""
    local = [f"{what} {path}" for what, path in paths if "://" not in path]
    if not local:
        return
    problem = f"Dataflow workers cannot reach paths of this machine: {', '.join(local)}"
    if not dry_run:
        raise UserError(f"{problem}; use gs:// (or hf://) paths")
    _log.warning("poet: warning: %s (a real submission is refused)", problem)


@dataclass(frozen=True)
class JobFacts:
    """What the summary says besides the job itself: what travels inside it, where its workers read and write."""

    inside: tuple[str, ...]  # e.g. "tokenizer ./smollm2 (2 files, 1.56 MiB, carried in the job)"
    reads: tuple[str, ...]
    writes: str


def reference_facts(model) -> tuple[str, ...]:
    """What the job carries of a reference model (``--ref-model``): its name and revision; workers load the weights."""
    if model is None:
        return ()
    return (f"reference model {model.name} at {model.revision} (a name: each worker loads the weights)",)


@dataclass(frozen=True)
class DryRun:
    """What a dry run gives instead of a finished folder: the summary to print."""

    summary: str


def dry_run(runner, options: PipelineOptions, job: Callable[[str], beam.PTransform], output: str,
            facts: JobFacts) -> DryRun:
    """Build ``job(folder)`` for Dataflow with Beam's dry run; one line if the job is over Dataflow's limit."""
    pipeline = beam.Pipeline(runner=runner, options=options)
    _ = pipeline | job(f"{output}.poet-staging-dry-run")  # a name only: nothing is written
    built = pipeline.run().job
    size = built.proto_pipeline.ByteSize()
    if size > JOB_REQUEST_LIMIT:
        raise UserError(f"the Dataflow job is {_mb(size)}, over Dataflow's {_mb(JOB_REQUEST_LIMIT)} limit: "
                        "pass --tokenizer as a Hub id or gs:// folder rather than a local folder")
    return DryRun(summary(built, size, facts))


def summary(job, size: int, facts: JobFacts) -> str:
    """The steps, the job graph's size against Dataflow's limit, what travels inside, where workers read and write."""
    transforms = job.proto_pipeline.components.transforms
    steps = sum(1 for transform in transforms.values() if not transform.subtransforms)
    lines = [
        f"dry run: Dataflow job {job.google_cloud_options.job_name} built and validated, not submitted",
        f"  steps: {steps}",
        f"  job size: {_mb(size)} of Dataflow's {_mb(JOB_REQUEST_LIMIT)} limit ({100 * size / JOB_REQUEST_LIMIT:.1f}%)",
        *(f"  inside the job: {item}" for item in facts.inside),
        *(f"  workers read: {where}" for where in facts.reads),
        f"  workers write: {facts.writes}",
    ]
    return "\n".join(lines)


def _mb(size: int) -> str:
    return f"{size / 2**20:.2f} MiB"
