"""Options several commands share, declared once, and the cloud settings they resolve to.

Commands stack these named objects instead of re-declaring the same flags; the functions at the
bottom turn what a user gave into the library's config objects (cloud.config.CloudConfig,
cloud.launch.DataflowRunnerConfig), so no command builds those by hand.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from mnistkit.model_export.datasets import DATASETS
from mnistkit.pipeline.choices import BIGQUERY_WRITES, INFERENCE_RUNTIMES, PRECISIONS, RUNNERS

if TYPE_CHECKING:
    from mnistkit.pipeline.cloud.config import CloudConfig
    from mnistkit.pipeline.cloud.launch import DataflowRunnerConfig

__all__ = [
    "bigquery_write_option",
    "data_dir_option",
    "dataflow_options",
    "dataflow_runner",
    "dataset_option",
    "endpoint_option",
    "endpoint_token_option",
    "env_epilog",
    "model_or_endpoint",
    "progress_option",
    "refuse_dataflow_options",
    "resolve_config",
    "runner_option",
    "runtime_options",
    "settings_option",
    "show_progress",
    "stack",
]


def stack(*options: Callable[[Callable], Callable]) -> Callable[[Callable], Callable]:
    """Several options as one decorator, applied in the order they are listed (as --help shows them)."""

    def decorate(fn: Callable) -> Callable:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def env_epilog(example: str) -> str:
    return f"Every option can also be set as MNISTKIT_<COMMAND>_<OPTION>, e.g. {example}."


dataset_option = click.option(
    "--dataset",
    type=click.Choice(sorted(DATASETS)),
    default="mnist",
    show_default=True,
    help="Which dataset: handwritten digits or Fashion-MNIST clothing.",
)
data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder with the IDX files (.gz or raw) or mnist.npz. Without it the kit uses its cache "
    "(~/.cache/mnistkit, downloading once) or Debian's /usr/share/datasets/fashion-mnist.",
)


def runner_option(help: str) -> Callable[[Callable], Callable]:
    return click.option("--runner", type=click.Choice(RUNNERS), default="direct", show_envvar=True, help=help)


runtime_options = stack(
    click.option(
        "--runtime",
        type=click.Choice(INFERENCE_RUNTIMES),
        default="auto",
        show_envvar=True,
        help="Inference engine. auto: TensorFlow (CUDA) where a GPU is visible, else OpenVINO when installed "
        "(no TensorFlow import on CPU), else TensorFlow.",
    ),
    click.option(
        "--precision",
        type=click.Choice(PRECISIONS),
        default="f32",
        show_envvar=True,
        help="bf16: faster on CPUs with native bf16 (OpenVINO only; refused elsewhere); the summary reports "
        "its class agreement with f32 on the first batch.",
    ),
)

bigquery_write_option = click.option(
    "--bigquery-write",
    type=click.Choice(BIGQUERY_WRITES),
    default="append",
    help="A bq:// --output: add the rows to the table, or replace its rows (needs a gs:// temp_location).",
)

endpoint_option = click.option(
    "--endpoint",
    metavar="URL|vertex://…",
    show_envvar=True,
    help="Call an online endpoint instead of loading --model: a `mnistkit serve` URL (http://HOST:PORT) or "
    "vertex://projects/P/locations/L/endpoints/E. --max-batch rows go per request (1: a request per row); "
    "rows of requests that fail for good are dead-lettered with the HTTP status.",
)


def _hand_token_to_the_pipeline(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """A --endpoint-token flag reaches the remote handlers as $MNISTKIT_ENDPOINT_TOKEN, for this command only.

    The environment, not the run's config: configs are written into summaries and job options,
    and a secret must not be.
    """
    from mnistkit.pipeline.inference.remote import TOKEN_ENV

    if value is None or ctx.get_parameter_source(param.name) is ParameterSource.ENVIRONMENT:
        return
    previous = os.environ.get(TOKEN_ENV)
    os.environ[TOKEN_ENV] = value

    def restore() -> None:
        if previous is None:
            os.environ.pop(TOKEN_ENV, None)
        else:
            os.environ[TOKEN_ENV] = previous

    ctx.call_on_close(restore)


endpoint_token_option = click.option(
    "--endpoint-token",
    metavar="TOKEN",
    envvar="MNISTKIT_ENDPOINT_TOKEN",
    show_envvar=True,
    expose_value=False,
    callback=_hand_token_to_the_pipeline,
    help="Bearer token of a `mnistkit serve --token` endpoint (https or loopback only); never printed. Prefer "
    "the environment variable: a flag is visible to other users in the process list.",
)


def model_or_endpoint(model: str | None, endpoint: str | None) -> str:
    """The URI a pipeline scores with: exactly one of --model and --endpoint."""
    if bool(model) == bool(endpoint):
        raise click.UsageError("give either --model or --endpoint")
    return model or endpoint


progress_option = click.option(
    "--progress/--no-progress", default=None, help="Show live progress (default: on a terminal)."
)


def show_progress(progress: bool | None) -> bool:
    """--progress / --no-progress as given, else whether stderr is a terminal."""
    return click.get_text_stream("stderr").isatty() if progress is None else progress


_SETTINGS_HELP = (
    "Override one setting (repeatable), e.g. --set max_workers=8; `mnistkit config show` lists them. "
    "Also MNISTKIT_<NAME>, e.g. MNISTKIT_MAX_WORKERS=8."
)
settings_option = click.option("--set", "settings", multiple=True, metavar="NAME=VALUE", help=_SETTINGS_HELP)


def dataflow_options(job_prefix: str) -> Callable[[Callable], Callable]:
    """The options of every Dataflow launch (see dataflow_runner): GPUs, scale, job name, dry run, --set."""
    return stack(
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
    )


def resolve_config(settings: tuple[str, ...] = (), **named: tuple[str, Any]) -> CloudConfig:
    """The CloudConfig for a command: `--set` pairs and named options (setting → (param, value)) on top.

    Named options a user did not give are left out, so they do not hide env vars or the config
    file; those set through Click's own MNISTKIT_<COMMAND>_<OPTION> variables say so.
    """
    from mnistkit.pipeline.cloud.config import load_config

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


def dataflow_runner(
    job_prefix: str,
    *,
    gpu: str | None,
    max_workers: int | None,
    machine_type: str | None,
    job_name: str | None,
    dry_run: bool,
    settings: tuple[str, ...],
    **_: Any,
) -> DataflowRunnerConfig:
    """The DataflowRunnerConfig that the dataflow_options of a command ask for."""
    from mnistkit.pipeline.cloud.launch import DataflowRunnerConfig, default_job_name, dry_run_location

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


def refuse_dataflow_options(options: dict[str, Any]) -> None:
    """A local run given Dataflow-only options stops with a usage error rather than ignoring them."""
    given = [f"--{name.replace('_', '-')}" for name in _DATAFLOW_ONLY if options.get(name)]
    if given:
        raise click.UsageError(f"{', '.join(given)} only apply to --runner dataflow")
