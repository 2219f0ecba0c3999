"""`mnistkit predict` and `mnistkit convert`: thin Click layers over pipeline.batch and pipeline.io.formats."""

from __future__ import annotations

from typing import Any

import click

from mnistkit.cli.errors import user_errors
from mnistkit.cli.options import (
    bigquery_write_option,
    dataflow_options,
    endpoint_option,
    endpoint_token_option,
    env_epilog,
    model_or_endpoint,
    progress_option,
    runner_option,
    runtime_options,
    show_progress,
    stack,
)
from mnistkit.cli.output import echo_job_status, echo_launch, echo_outputs, echo_summary, live_progress
from mnistkit.model_export.datasets import DATASETS, SPLITS
from mnistkit.pipeline.choices import FORMATS, INPUT_FORMATS, RUNNING_MODES

__all__ = ["COMMANDS", "EXIT_TOO_MANY_ERRORS"]

# Exit status when the run finished but rejected more rows than --max-error-rate allows.
EXIT_TOO_MANY_ERRORS = 3
_ENV = env_epilog("MNISTKIT_PREDICT_MODEL=models/mnist")

_predict_cloud_options = stack(
    click.option(
        "--errors-output",
        metavar="PREFIX",
        help="Prefix of the dead letters and the summary; default: --output (a bq:// output needs one; "
        "on Dataflow it defaults to OUTPUT_LOCATION/runs/JOB_NAME).",
    ),
    bigquery_write_option,
    dataflow_options("mnistkit-predict"),
    click.option(
        "--wait", is_flag=True, help="Dataflow: follow the job (state and row counts), then write the summary."
    ),
)


@click.command(context_settings={"show_default": True}, epilog=_ENV)
@click.option(
    "--model",
    metavar="URI",
    show_envvar=True,
    help="Exported model: an export dir (its newest numeric version is served) or one version dir; "
    "a local path or gs://.",
)
@endpoint_option
@endpoint_token_option
@click.option(
    "--input",
    "input_uri",
    required=True,
    metavar="URI",
    envvar="MNISTKIT_PREDICT_INPUT",
    show_envvar=True,
    help="Rows to score: a local path or gs://; globs (quote them) and .gz/.bz2 files work.",
)
@click.option(
    "--output",
    required=True,
    metavar="PREFIX",
    show_envvar=True,
    help="Writes PREFIX-SSSSS-of-NNNNN.jsonl (predictions), PREFIX-errors-*.jsonl (rejected rows) "
    "and PREFIX-summary.json; local or gs://.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    envvar="MNISTKIT_PREDICT_FORMAT",
    show_envvar=True,
    help="Input format. Default: from the extension (.txt/.csv text, .jsonl/.json, .tfrecord).",
)
@runner_option("Run here, or launch on Dataflow with the settings of `mnistkit config show`.")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=0,
    show_envvar=True,
    help="Local workers; 0 = one per CPU core.",
)
@click.option(
    "--running-mode",
    type=click.Choice(RUNNING_MODES),
    default="multi_threading",
    show_envvar=True,
    help="Local workers as threads of one process (one TensorFlow start-up), one process each "
    "(pays off on many cores and big inputs), or a single in-process worker (debugging).",
)
@click.option(
    "--min-batch",
    type=click.IntRange(min=1),
    default=None,
    show_envvar=True,
    help="Smallest model call, in rows. Default: --max-batch, as rows arrive batched; a smaller value "
    "lets Beam adapt the call size between the two.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=None,
    show_envvar=True,
    help="Largest model call, in rows. Default: the runtime's (2,048 on OpenVINO, 256 on TensorFlow and "
    "PyTorch; GPUs like 2,048 too), 256 rows per request to an endpoint.",
)
@click.option(
    "--max-error-rate",
    type=click.FloatRange(0, 1),
    default=None,
    show_envvar=True,
    help=f"Exit with status {EXIT_TOO_MANY_ERRORS} when rejected/read rows exceed this fraction (e.g. 0.01).",
)
@runtime_options
@click.option("--overwrite", is_flag=True, show_envvar=True, help="Replace the outputs of an earlier run.")
@progress_option
@_predict_cloud_options
@user_errors
def predict(
    model: str | None,
    endpoint: str | None,
    input_uri: str,
    output: str,
    fmt: str | None,
    runner: str,
    workers: int,
    running_mode: str,
    min_batch: int | None,
    max_batch: int | None,
    max_error_rate: float | None,
    runtime: str,
    precision: str,
    overwrite: bool,
    progress: bool | None,
    errors_output: str | None,
    bigquery_write: str,
    **cloud: Any,
) -> None:
    """Score rows from files with an exported model (batch pipeline on Apache Beam).

    Every input row ends up either in the predictions (key, class, confidence, pred0..pred9) or
    in the dead letters (source file, reason, raw row); the summary reconciles the two.

    \b
    BigQuery tables work as --input and --output: bq://project.dataset.table.
    --runner dataflow launches on Dataflow with the settings of `mnistkit config show`.
    """
    from mnistkit.pipeline.batch import PredictConfig
    from mnistkit.pipeline.runners import RunnerConfig

    if min_batch is not None and max_batch is not None and min_batch > max_batch:
        raise click.BadParameter(f"--min-batch {min_batch} exceeds --max-batch {max_batch}", param_hint="--min-batch")
    config = PredictConfig(
        model=model_or_endpoint(model, endpoint),
        input=input_uri,
        output=output,
        format=fmt,
        min_batch=min_batch,
        max_batch=max_batch,
        overwrite=overwrite,
        runner=RunnerConfig(workers=workers, running_mode=running_mode),
        errors_output=errors_output,
        bigquery_write=bigquery_write,
        runtime=runtime,
        precision=precision,
    )
    if runner == "dataflow":
        summary = _predict_on_dataflow(config, **cloud)
        if summary is None:
            return
    else:
        summary = _predict_here(config, cloud, progress)
    if not summary.reconciled:
        raise click.ClickException("rows read != predicted + rejected; see the summary and report a bug")
    if max_error_rate is not None and summary.error_rate > max_error_rate:
        rate = f"{summary.error_rate:.2%} of the rows were rejected"
        click.echo(f"Error: {rate}, above --max-error-rate {max_error_rate:.2%}.", err=True)
        raise SystemExit(EXIT_TOO_MANY_ERRORS)


def _predict_here(config: Any, cloud: dict[str, Any], progress: bool | None) -> Any:
    from mnistkit.cli.options import refuse_dataflow_options, resolve_config
    from mnistkit.pipeline.batch import run_predict
    from mnistkit.pipeline.cloud.launch import local_predict_config
    from mnistkit.pipeline.io.bigquery import is_bigquery

    refuse_dataflow_options(cloud)
    if is_bigquery(config.input) or is_bigquery(config.output):
        config = local_predict_config(config, resolve_config(cloud["settings"]))
    if show_progress(progress):
        with live_progress():
            summary = run_predict(config)
    else:
        summary = run_predict(config)
    echo_summary(summary)
    echo_outputs(summary.outputs)
    return summary


def _predict_on_dataflow(config: Any, *, wait: bool, **options: Any) -> Any:
    """Launch on Dataflow; with --wait, follow the job and return its Summary (else None)."""
    from mnistkit.cli.options import dataflow_runner
    from mnistkit.pipeline.cloud.launch import follow_job, launch_predict

    launch = launch_predict(config, dataflow_runner("mnistkit-predict", **options))
    echo_launch(launch, "batch")
    started = launch.run.config
    echo_outputs({"predictions": started.predictions_pattern, "errors": started.errors_pattern})
    if not (wait and launch.submitted):
        return None
    follow_job(launch.run.result, echo_job_status)
    summary = launch.run.finish()
    echo_summary(summary)
    echo_outputs({"summary": started.summary_path})
    return summary


@click.command(context_settings={"show_default": True}, epilog=_ENV)
@click.option(
    "--input",
    "input_uri",
    metavar="URI",
    envvar="MNISTKIT_CONVERT_INPUT",
    show_envvar=True,
    help="An IDX images file (e.g. t10k-images-idx3-ubyte.gz, local), or text/JSONL/TFRecord rows "
    "(local or gs://, globs allowed). Or use --dataset instead.",
)
@click.option(
    "--dataset",
    type=click.Choice(sorted(DATASETS)),
    show_envvar=True,
    help="Convert a dataset split instead of a file, found like `mnistkit train` finds it; "
    "keys are the images' indices, so predictions can be scored (mnistkit evaluate --predictions).",
)
@click.option(
    "--split", type=click.Choice(SPLITS), default="test", show_envvar=True, help="With --dataset: which split."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    show_envvar=True,
    help="With --dataset: folder holding its IDX files or mnist.npz (default: cache or download).",
)
@click.option(
    "--output",
    required=True,
    metavar="URI",
    show_envvar=True,
    help="File to write; its extension picks the format unless --format is given; .gz compresses.",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None, show_envvar=True, help="Output format.")
@click.option(
    "--input-format",
    type=click.Choice(INPUT_FORMATS),
    default=None,
    show_envvar=True,
    help="Input format; default: from the input's name.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, show_envvar=True, help="Convert the first N rows.")
@click.option(
    "--key-start",
    type=int,
    default=0,
    show_envvar=True,
    help="IDX inputs: key of the first image (rows are keyed by their index from there).",
)
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=1,
    show_envvar=True,
    help="IDX inputs: write the images N times with fresh keys, for load tests.",
)
@click.option(
    "--shards",
    type=click.IntRange(min=1),
    default=1,
    show_envvar=True,
    help="Split the output into N files (NAME-00000-of-0000N.EXT), so N workers can read a TFRecord input.",
)
@click.option(
    "--for-training",
    is_flag=True,
    help="With --dataset: write training data instead, --output being a folder (local or gs://): "
    "train/validation/test TFRecord shards with labels and dataset.json, for `mnistkit train --training-data`.",
)
@click.option(
    "--validation-samples",
    type=click.IntRange(min=0),
    default=0,
    show_envvar=True,
    help="With --for-training: hold out the last N train images as the validation split.",
)
@user_errors
def convert(
    input_uri: str | None,
    dataset: str | None,
    split: str,
    data_dir: str | None,
    output: str,
    fmt: str | None,
    input_format: str | None,
    limit: int | None,
    key_start: int,
    repeat: int,
    shards: int,
    for_training: bool,
    validation_samples: int,
) -> None:
    """Write MNIST rows as text (`key:v1,...,v784`), JSON lines or TFRecord.

    From a dataset split, IDX files (the datasets' own format) or any of the three formats. Text
    and JSON values are pixel/255 written exactly; TFRecord stores the raw uint8 pixels.

    \b
    Example:
      mnistkit convert --dataset mnist --split test --output data/test.txt.gz
    """
    if for_training:
        _convert_for_training(dataset, data_dir, output, shards, validation_samples, limit)
        return
    from mnistkit.pipeline.io.formats import convert, detect_format

    result = convert(
        input_uri,
        output,
        fmt or detect_format(output),
        input_format=input_format,
        limit=limit,
        key_start=key_start,
        repeat=repeat,
        shards=shards,
        dataset=dataset,
        split=split,
        data_dir=data_dir,
    )
    click.echo(f"Wrote {result.rows:,} rows to {', '.join(result.files)}")
    if result.rejected:
        skipped = ", ".join(f"{reason} {n:,}" for reason, n in sorted(result.rejected.items()))
        click.echo(f"Skipped {sum(result.rejected.values()):,} malformed rows: {skipped}", err=True)


def _convert_for_training(
    dataset: str | None, data_dir: str | None, output: str, shards: int, validation_samples: int, limit: int | None
) -> None:
    from mnistkit.pipeline.io.training_shards import write_training_shards

    if not dataset:
        raise click.UsageError("--for-training needs --dataset (the labels come from the dataset).")
    written = write_training_shards(
        dataset, output, data_dir, shards=shards, validation_samples=validation_samples, max_train_samples=limit
    )
    for split, files in written.files.items():
        click.echo(f"Wrote {written.rows[split]:,} {split} rows to {len(files)} file(s)")
    click.echo(f"Wrote {written.manifest_path}")


COMMANDS = [predict, convert]
