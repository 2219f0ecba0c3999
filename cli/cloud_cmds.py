"""`mnistkit config | stage | doctor | image`: the Google Cloud side, over pipeline.cloud."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mnistkit.cli.errors import user_errors
from mnistkit.cli.options import progress_option, resolve_config, settings_option, show_progress
from mnistkit.pipeline.choices import BIGQUERY_WRITES, FRAMEWORKS, IMAGE_BACKENDS

__all__ = ["COMMANDS"]


@click.group(name="config")
def config_group() -> None:
    """Cloud settings: Terraform outputs, cached in .mnistkit/config.json ($MNISTKIT_CONFIG).

    Each setting comes from the first of: a flag (--set NAME=VALUE), MNISTKIT_<NAME>, the config
    file's "settings" (edit it to pin values), the cached Terraform outputs, a default.
    """


@config_group.command(name="show")
@settings_option
@click.option("--json", "as_json", is_flag=True, help="Print {name: {value, source}} as JSON.")
@user_errors
def config_show(settings: tuple[str, ...], as_json: bool) -> None:
    """Print every effective setting and where it came from."""
    from mnistkit.pipeline.cloud.config import config_path, describe

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
@user_errors
def config_refresh(infra_dir: Path) -> None:
    """Re-read `terraform output -json` into the config file (run it after `make deploy`)."""
    from mnistkit.pipeline.cloud.config import refresh_config

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
    help="Input file or folder (repeatable) → input_location (gs://DATA_BUCKET/inputs/).",
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
    type=click.Choice(BIGQUERY_WRITES),
    default="append",
    show_default=True,
    help="Add the loaded rows to the input table, or replace its rows.",
)
@progress_option
@settings_option
@user_errors
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
    from mnistkit.pipeline.cloud.staging import stage as run_stage

    if model_dir is None and not inputs:
        raise click.UsageError("nothing to stage: pass --model-dir and/or --input")
    config = resolve_config(settings)
    report = run_stage(
        config, model_dir, list(inputs), load_bigquery=load_bigquery, write=write, progress=show_progress(progress)
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
@user_errors
def doctor(gpu: str | None, max_workers: int | None, settings: tuple[str, ...]) -> None:
    """Check credentials, enabled APIs, bucket and dataset access, and the GPU quota.

    Exits with status 1 when a check fails; warnings (checks that could not run) do not fail.
    """
    from mnistkit.pipeline.cloud.doctor import run_doctor

    config = resolve_config(settings, gpu=("gpu", gpu), max_workers=("max_workers", max_workers))
    checks = run_doctor(config)
    for check in checks:
        click.echo(f"[{_MARKS[check.ok]}] {check.name}: {check.detail}")
    if any(check.ok is False for check in checks):
        raise SystemExit(1)


@click.group(name="image")
def image_group() -> None:
    """The Dataflow worker image (pipeline/cloud/worker/Dockerfile)."""


@image_group.command(name="build")
@click.option(
    "--tag",
    help="Image tag; default: the tag of worker_image (Terraform: v1). Tags are immutable: each build needs a new one.",
)
@click.option(
    "--backend",
    type=click.Choice(["auto", *IMAGE_BACKENDS]),
    default="auto",
    show_default=True,
    help="auto: the local Docker engine when one answers, else Cloud Build.",
)
@click.option(
    "--framework",
    type=click.Choice(FRAMEWORKS),
    default="tensorflow",
    show_default=True,
    help="The exports the image serves: TensorFlow with CUDA (Dockerfile) or CUDA PyTorch (Dockerfile.pytorch).",
)
@click.option("--dry-run", is_flag=True, help="Print the commands instead of running them.")
@settings_option
@user_errors
def image_build(tag: str | None, backend: str, framework: str, dry_run: bool, settings: tuple[str, ...]) -> None:
    """Build the GPU worker image with this machine's Python, Beam and TensorFlow (or torch) versions and push it.

    The Beam base image is pinned by digest: set worker_base_digest (--set worker_base_digest=sha256:…);
    a dry run without it shows a placeholder.
    """
    import shlex
    import subprocess

    from mnistkit.pipeline.cloud.image import BASE_DIGEST_PLACEHOLDER, plan_image_build, run_image_build

    config = resolve_config(settings)
    build = plan_image_build(config, tag=tag, backend=None if backend == "auto" else backend, framework=framework)
    versions = ", ".join(f"{k}={v}" for k, v in build.versions.items())
    click.echo(f"Building {build.image} with {build.backend} ({versions})")
    for command in build.commands:
        click.echo("$ " + shlex.join(command))
    if dry_run:
        build.discard()
        if build.base_digest is None:
            click.echo(
                f"worker_base_digest is not set: a real build refuses to run ({BASE_DIGEST_PLACEHOLDER})", err=True
            )
        return
    try:
        run_image_build(build)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        raise click.ClickException(f"image build failed: {exc}") from exc
    if build.image != config.worker_image:
        click.echo(f"Launch with it: --set worker_image={build.image}")


COMMANDS = [config_group, stage, doctor, image_group]
