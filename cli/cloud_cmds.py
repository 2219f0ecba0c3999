"""`mnistkit config | stage | doctor | image`: the Google Cloud side, over pipeline.config and friends."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from cli.errors import user_errors
from pipeline.config import ConfigError

if TYPE_CHECKING:
    from pipeline.config import CloudConfig

_SETTINGS_HELP = (
    "Override one setting (repeatable), e.g. --set max_workers=8; `mnistkit config show` lists them. "
    "Also MNISTKIT_<NAME>, e.g. MNISTKIT_MAX_WORKERS=8."
)


def settings_option(fn: Callable) -> Callable:
    """`--set NAME=VALUE`, repeatable: the flag that reaches every cloud setting."""
    return click.option("--set", "settings", multiple=True, metavar="NAME=VALUE", help=_SETTINGS_HELP)(fn)


def resolve_config(settings: tuple[str, ...] = (), **named: tuple[str, Any]) -> CloudConfig:
    """The CloudConfig for a command: `--set` pairs and named options (setting → value) on top.

    Named options a user did not give are left out, so they do not hide env vars or the config
    file; those set through Click's own MNISTKIT_<COMMAND>_<OPTION> variables say so.
    """
    from pipeline.config import load_config

    ctx = click.get_current_context()
    flags: dict[str, tuple[Any, str]] = {}
    for pair in settings:
        name, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--set")
        flags[name.strip()] = (value, f"flag --set {name.strip()}")
    for setting, (param, value) in named.items():
        source = ctx.get_parameter_source(param)
        if source is ParameterSource.COMMANDLINE:
            flags[setting] = (value, f"flag --{param.replace('_', '-')}")
        elif source is ParameterSource.ENVIRONMENT:
            flags[setting] = (value, f"env {ctx.auto_envvar_prefix}_{param.upper()}")
    return load_config(flags)


def _cloud_error_types() -> tuple[type[Exception], ...]:
    from pipeline.bigquery import BigQueryError
    from pipeline.doctor import QuotaError

    return (ConfigError, QuotaError, BigQueryError, FileNotFoundError)


# Configuration and quota problems are the user's to fix: a message, not a traceback.
cloud_errors = user_errors(_cloud_error_types)


@click.group(name="config")
def config_group() -> None:
    """Cloud settings: Terraform outputs, cached in .mnistkit/config.json ($MNISTKIT_CONFIG).

    Each setting comes from the first of: a flag (--set NAME=VALUE), MNISTKIT_<NAME>, the config
    file's "settings" (edit it to pin values), the cached Terraform outputs, a default.
    """


@config_group.command(name="show")
@settings_option
@click.option("--json", "as_json", is_flag=True, help="Print {name: {value, source}} as JSON.")
@cloud_errors
def config_show(settings: tuple[str, ...], as_json: bool) -> None:
    """Print every effective setting and where it came from."""
    from pipeline.config import config_path, describe

    config = resolve_config(settings)
    rows = describe(config)
    if as_json:
        click.echo(json.dumps({name: {"value": value, "source": source} for name, value, source in rows}, indent=2))
        return
    click.echo(f"Config file: {config_path()}")
    name_width = max(len(name) for name, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    for name, value, source in rows:
        click.echo(f"{name:<{name_width}}  {value or '-':<{value_width}}  {source}")


@config_group.command(name="refresh")
@click.option(
    "--infra-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("infra"),
    show_default=True,
    help="The deployed Terraform root module.",
)
@cloud_errors
def config_refresh(infra_dir: Path) -> None:
    """Re-read `terraform output -json` into the config file (run it after `make deploy`)."""
    from pipeline.config import refresh_config

    path = refresh_config(infra_dir=infra_dir)
    click.echo(f"Wrote the Terraform outputs of {infra_dir} to {path}")


@click.command()
@click.option(
    "--model-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Export dir (all versions) or one version dir → <model_uri> (default gs://MODEL_BUCKET/mnist).",
)
@click.option(
    "--input",
    "inputs",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Input file or folder (repeatable) → gs://DATA_BUCKET/inputs/.",
)
@click.option(
    "--bigquery/--no-bigquery",
    "load_bigquery",
    default=True,
    show_default=True,
    help="Load text inputs (key:v1,...) into the input table.",
)
@click.option(
    "--write",
    type=click.Choice(["append", "truncate"]),
    default="append",
    show_default=True,
    help="Add the loaded rows to the input table, or replace its rows.",
)
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@settings_option
@cloud_errors
def stage(
    model_dir: Path | None,
    inputs: tuple[Path, ...],
    load_bigquery: bool,
    write: str,
    progress: bool | None,
    settings: tuple[str, ...],
) -> None:
    """Upload a model export and inputs to the buckets; load text inputs into BigQuery.

    Files already in the bucket with the same checksum are skipped, so re-running is cheap.
    """
    from pipeline.staging import stage as run_stage

    if model_dir is None and not inputs:
        raise click.UsageError("nothing to stage: pass --model-dir and/or --input")
    config = resolve_config(settings)
    show_progress = click.get_text_stream("stderr").isatty() if progress is None else progress
    report = run_stage(
        config, model_dir, list(inputs), load_bigquery=load_bigquery, write=write, progress=show_progress
    )
    click.echo(
        f"Uploaded {len(report.uploaded)} files ({report.bytes_uploaded:,} bytes); {len(report.skipped)} unchanged"
    )
    if report.model_uri:
        click.echo(f"Model:  {report.model_uri}")
    for uri in report.input_uris:
        click.echo(f"Input:  {uri}")
    if report.table:
        click.echo(f"Loaded {report.rows_loaded:,} rows into {report.table} ({write})")
        if report.lines_rejected:
            click.echo(f"Skipped {report.lines_rejected:,} lines without an integer key", err=True)


_MARKS = {True: "ok  ", False: "FAIL", None: "warn"}


@click.command()
@click.option("--gpu", metavar="TYPE:COUNT", help="Check the quota for this GPU (e.g. t4:1); default: config.")
@click.option("--max-workers", type=click.IntRange(min=1), help="Workers the quota must hold; default: config.")
@settings_option
@cloud_errors
def doctor(gpu: str | None, max_workers: int | None, settings: tuple[str, ...]) -> None:
    """Check credentials, enabled APIs, bucket and dataset access, and the GPU quota.

    Exits with status 1 when a check fails; warnings (checks that could not run) do not fail.
    """
    from pipeline.doctor import run_doctor

    config = resolve_config(settings, gpu=("gpu", gpu), max_workers=("max_workers", max_workers))
    checks = run_doctor(config)
    for check in checks:
        click.echo(f"[{_MARKS[check.ok]}] {check.name}: {check.detail}")
    if any(check.ok is False for check in checks):
        raise SystemExit(1)


@click.group(name="image")
def image_group() -> None:
    """The Dataflow worker image (pipeline/worker/Dockerfile)."""


@image_group.command(name="build")
@click.option("--tag", help="Image tag; default: the tag of worker_image (Terraform: latest).")
@click.option(
    "--backend",
    type=click.Choice(["auto", "docker", "cloud-build"]),
    default="auto",
    show_default=True,
    help="auto: the local Docker engine when one answers, else Cloud Build.",
)
@click.option("--dry-run", is_flag=True, help="Print the commands instead of running them.")
@settings_option
@cloud_errors
def image_build(tag: str | None, backend: str, dry_run: bool, settings: tuple[str, ...]) -> None:
    """Build the GPU worker image with this machine's Python, Beam and TensorFlow versions and push it."""
    import shlex
    import subprocess

    from pipeline.image import plan_image_build, run_image_build

    config = resolve_config(settings)
    build = plan_image_build(config, tag=tag, backend=None if backend == "auto" else backend)
    versions = ", ".join(f"{k}={v}" for k, v in build.versions.items())
    click.echo(f"Building {build.image} with {build.backend} ({versions})")
    for command in build.commands:
        click.echo("$ " + shlex.join(command))
    if dry_run:
        build.discard()
        return
    try:
        run_image_build(build)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        raise click.ClickException(f"image build failed: {exc}") from exc
    if build.image != config.worker_image:
        click.echo(f"Launch with it: --set worker_image={build.image}")


COMMANDS = [config_group, stage, doctor, image_group]


def predict_cloud_options(fn: Callable) -> Callable:
    """The options `mnistkit predict` gets for BigQuery and Dataflow (see launch_on_dataflow)."""
    options = [
        click.option(
            "--errors-output",
            metavar="PREFIX",
            help="Prefix of the dead letters and the summary; default: --output (a bq:// output needs one; "
            "on Dataflow it defaults to gs://DATA_BUCKET/runs/JOB_NAME).",
        ),
        click.option(
            "--bigquery-write",
            type=click.Choice(["append", "truncate"]),
            default="append",
            help="A bq:// --output: add the predictions to the table, or replace its rows (needs a gs:// "
            "temp_location).",
        ),
        dataflow_options("mnistkit-predict"),
        click.option("--wait", is_flag=True, help="Dataflow: wait for the job, then write the summary."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def dataflow_options(job_prefix: str) -> Callable[[Callable], Callable]:
    """The options of every Dataflow launch (see dataflow_runner): GPUs, scale, job name, dry run, --set."""
    options = [
        click.option("--gpu", metavar="TYPE:COUNT", help="Dataflow: GPUs per worker, e.g. t4:1 or l4:1; none for CPU."),
        click.option("--max-workers", type=click.IntRange(min=1), help="Dataflow: autoscaling ceiling."),
        click.option("--machine-type", help="Dataflow: worker machine type (default: one that fits the GPU)."),
        click.option("--job-name", help=f"Dataflow: job name (default: {job_prefix}-<UTC time>)."),
        click.option(
            "--dry-run",
            is_flag=True,
            help="Dataflow: build and stage the job and write its description, but do not submit it.",
        ),
        settings_option,
    ]

    def decorate(fn: Callable) -> Callable:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


@cloud_errors
def dataflow_runner(
    job_prefix: str,
    *,
    gpu: str | None,
    max_workers: int | None,
    machine_type: str | None,
    job_name: str | None,
    dry_run: bool,
    settings: tuple[str, ...],
) -> Any:
    """The pipeline.dataflow.DataflowRunnerConfig the dataflow_options of a command ask for."""
    from pipeline.dataflow import DataflowRunnerConfig, default_job_name, dry_run_location

    cloud = resolve_config(
        settings,
        gpu=("gpu", gpu),
        max_workers=("max_workers", max_workers),
        machine_type=("machine_type", machine_type),
    )
    job_name = job_name or default_job_name(job_prefix)
    location = dry_run_location(cloud, job_name) if dry_run else None
    return DataflowRunnerConfig(cloud, job_name=job_name, template_location=location)


_DATAFLOW_ONLY = ("gpu", "max_workers", "machine_type", "job_name", "dry_run", "wait")


def refuse_dataflow_options(cloud_options: dict[str, Any]) -> None:
    """A local run given Dataflow-only options stops with a usage error rather than ignoring them."""
    given = [f"--{name.replace('_', '-')}" for name in _DATAFLOW_ONLY if cloud_options.get(name)]
    if given:
        raise click.UsageError(f"{', '.join(given)} only apply to --runner dataflow")


@cloud_errors
def local_run_config(config: Any, cloud_options: dict[str, Any]) -> Any:
    """The batch.PredictConfig of a local run: Dataflow-only options refused, BigQuery settings added.

    A run touching BigQuery gets the project, a gs:// temp location for batch loads, and the read
    method the deployment allows.
    """
    from dataclasses import replace

    from pipeline.bigquery import is_bigquery

    refuse_dataflow_options(cloud_options)
    if not (is_bigquery(config.input) or is_bigquery(config.output)):
        return config
    cloud = resolve_config(cloud_options["settings"])
    wanted = {"project": cloud.project_id, "temp_location": cloud.temp_location}
    args = [f"--{name}={value}" for name, value in wanted.items() if value]
    runner = replace(config.runner, extra_args=[*config.runner.extra_args, *args])
    return replace(config, runner=runner, bigquery_read_method=cloud.bigquery_read_method)


@cloud_errors
def launch_on_dataflow(
    config: Any,
    *,
    gpu: str | None,
    max_workers: int | None,
    machine_type: str | None,
    job_name: str | None,
    dry_run: bool,
    wait: bool,
    settings: tuple[str, ...],
) -> None:
    """`predict --runner dataflow`: launch `config` (a batch.PredictConfig) and print the job."""
    from dataclasses import replace

    from pipeline.bigquery import is_bigquery
    from pipeline.dataflow import launch_predict

    runner = dataflow_runner(
        "mnistkit-predict",
        gpu=gpu,
        max_workers=max_workers,
        machine_type=machine_type,
        job_name=job_name,
        dry_run=dry_run,
        settings=settings,
    )
    cloud, job_name = runner.config, runner.job_name
    errors_output = config.errors_output
    if errors_output is None and is_bigquery(config.output):
        cloud.require("data_bucket")
        errors_output = f"{cloud.data_bucket.rstrip('/')}/runs/{job_name}"
    config = replace(
        config, runner=runner, errors_output=errors_output, bigquery_read_method=cloud.bigquery_read_method
    )
    launch = launch_predict(config)
    started = launch.run.config
    if launch.submitted:
        click.echo(f"Submitted Dataflow job {launch.job_name}: {launch.job_id}")
        click.echo(f"Console: {launch.console_url}")
    else:
        click.echo(f"Dry run: job {launch.job_name} built and staged, not submitted")
        click.echo(f"Job description: {launch.template_location}")
    click.echo(f"Predictions: {started.predictions_pattern}")
    click.echo(f"Dead letters: {started.errors_pattern}")
    if wait and launch.submitted:
        summary = launch.run.finish()
        click.echo(
            f"Predicted {summary.rows_predicted:,} of {summary.rows_read:,} rows; rejected {summary.rows_rejected:,}"
        )
        click.echo(f"Summary: {started.summary_path}")
