"""`mnistkit stream` and `mnistkit simulate-stream`: thin Click layers over pipeline.streaming and
pipeline.simulate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cli.cloud_cmds import dataflow_options, dataflow_runner, refuse_dataflow_options
from cli.model_cmds import data_dir_option, dataset_option

_ENV = "Every option can also be set as MNISTKIT_<COMMAND>_<OPTION>, e.g. MNISTKIT_STREAM_MAX_BATCH=10."


@click.command(context_settings={"show_default": True}, epilog=_ENV)
@click.option(
    "--model",
    required=True,
    metavar="URI",
    show_envvar=True,
    help="Export dir (local or gs://): its newest version is served, and a newer export is picked up "
    "while the stream runs. A version dir pins that version.",
)
@click.option(
    "--input",
    "input_uri",
    required=True,
    metavar="URI",
    envvar="MNISTKIT_STREAM_INPUT",
    show_envvar=True,
    help="pubsub://projects/P/subscriptions/S, pubsub://projects/P/topics/T, or watch://DIR for new "
    'files in a folder (local or gs://). Payload: one JSON row {"key": int, "image": [784 values]} '
    "per message or line.",
)
@click.option(
    "--output",
    required=True,
    metavar="DIR|bq://TABLE",
    show_envvar=True,
    help="A folder (local or gs://) that gets one predictions-<time>-<id>.jsonl per scored micro-batch "
    "and errors-<time>-<id>.jsonl for dead letters; or bq://project.dataset.table (rows streamed in).",
)
@click.option(
    "--errors-output",
    metavar="DIR",
    show_envvar=True,
    help="Folder for the dead letters (errors-*.jsonl); default: --output. A bq:// output needs one.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=100,
    show_envvar=True,
    help="Most rows per model call; 1 scores every row on its own.",
)
@click.option(
    "--window-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_envvar=True,
    help="Longest a row waits for its micro-batch to fill.",
)
@click.option(
    "--poll-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_envvar=True,
    help="watch:// inputs: how often the folder is listed.",
)
@click.option(
    "--model-check-seconds",
    type=click.FloatRange(min=0),
    default=10.0,
    show_envvar=True,
    help="How often the export dir is checked for a newer version.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    show_envvar=True,
    help="Stop after this many seconds (a watched folder then drains; local Pub/Sub reads are cancelled).",
)
@click.option(
    "--idle-stop",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    show_envvar=True,
    help="watch:// inputs: stop once no new file has appeared for this many seconds.",
)
@click.option(
    "--runner",
    type=click.Choice(["direct", "dataflow"]),
    default="direct",
    show_envvar=True,
    help="Run here, or launch a streaming job on Dataflow with the settings of `mnistkit config show`.",
)
@dataflow_options("mnistkit-stream")
def stream(
    model: str,
    input_uri: str,
    output: str,
    errors_output: str | None,
    max_batch: int,
    window_seconds: float,
    poll_seconds: float,
    model_check_seconds: float,
    duration: float | None,
    idle_stop: float | None,
    runner: str,
    **cloud: Any,
) -> None:
    """Score rows as they arrive (streaming pipeline on Apache Beam), in micro-batches.

    Every output row carries key, class, confidence, pred0..pred9, its event time (publish time
    or file time), the prediction time, the latency in ms and the model version. Bad rows go to
    the dead letters with the reason. Without --duration/--idle-stop a local stream runs until
    interrupted; a Dataflow job runs until drained or cancelled.

    \b
    Example (two terminals):
      mnistkit stream --model models/ --input watch://incoming/ --output scored/ --idle-stop 30
      mnistkit simulate-stream --to incoming/ --rate 100 --count 2000
    """
    from pipeline.bigquery import BigQueryError
    from pipeline.model import ModelError
    from pipeline.stream_io import StreamInputError
    from pipeline.streaming import StreamConfig, run_stream

    if runner == "direct":
        refuse_dataflow_options(cloud)
    config = StreamConfig(
        model=model,
        input=input_uri,
        output=output,
        max_batch=max_batch,
        window_seconds=window_seconds,
        poll_seconds=poll_seconds,
        model_check_seconds=model_check_seconds,
        duration=duration,
        idle=idle_stop,
        errors_output=errors_output,
        dataflow=dataflow_runner("mnistkit-stream", **cloud) if runner == "dataflow" else None,
    )
    try:
        result = run_stream(config)
    except (StreamInputError, ModelError, BigQueryError) as exc:
        raise click.ClickException(str(exc)) from exc
    if config.dataflow is not None:
        if result.job_id:
            click.echo(f"Submitted Dataflow streaming job {config.dataflow.job_name}: {result.job_id}")
            click.echo(f"Console: {result.console_url}")
        else:
            click.echo(f"Dry run: job {config.dataflow.job_name} built and staged, not submitted")
            click.echo(f"Job description: {result.template_location}")
        return
    summary = result.summary
    click.echo(
        f"Predicted {summary.rows_predicted:,} of {summary.rows_read:,} rows; rejected {summary.rows_rejected:,}"
        + (": " + ", ".join(f"{r} {n:,}" for r, n in summary.rejected.items()) if summary.rejected else "")
    )
    if result.latency_ms:
        latency = result.latency_ms
        click.echo(f"Latency ms: min {latency['min']:,}, mean {latency['mean']:,}, max {latency['max']:,}")
    click.echo(f"Predictions: {output if output.startswith('bq://') else output + '/predictions-*.jsonl'}")
    click.echo(f"Dead letters: {config.errors_folder}/errors-*.jsonl")


@click.command(name="simulate-stream", context_settings={"show_default": True}, epilog=_ENV)
@click.option(
    "--to",
    "target",
    required=True,
    metavar="URI",
    show_envvar=True,
    help="pubsub://projects/P/topics/T, or a folder (watch://DIR or DIR, local or gs://) to write files into.",
)
@click.option(
    "--rate", type=click.FloatRange(min=0, min_open=True), default=10.0, show_envvar=True, help="Rows per second."
)
@click.option("--count", type=click.IntRange(min=1), default=100, show_envvar=True, help="Rows to send.")
@dataset_option
@data_dir_option
@click.option("--key-start", type=int, default=0, show_envvar=True, help="Key of the first row.")
@click.option(
    "--bad-every",
    type=click.IntRange(min=1),
    default=None,
    show_envvar=True,
    help="Make every Nth row malformed, to watch it land in the dead letters.",
)
@click.option(
    "--min-send-seconds",
    type=click.FloatRange(min=0),
    default=0.05,
    show_envvar=True,
    help="Shortest gap between two sends; rows due meanwhile share a file (or a publish burst).",
)
def simulate_stream(
    target: str,
    rate: float,
    count: int,
    dataset: str,
    data_dir: Path | None,
    key_start: int,
    bad_every: int | None,
    min_send_seconds: float,
) -> None:
    """Send test-split rows (cycled, keyed from --key-start) at a fixed rate to a Pub/Sub topic or
    into a watched folder.

    \b
    Example (two terminals):
      mnistkit stream --model models/ --input watch://incoming/ --output scored/ --idle-stop 10
      mnistkit simulate-stream --to incoming/ --rate 100 --count 2000
    """
    from model_export.datasets import DatasetError, load_dataset
    from pipeline.simulate import dataset_rows, open_sink, simulate
    from pipeline.stream_io import StreamInputError

    try:
        images, _ = load_dataset(dataset, "test", data_dir)
        sink = open_sink(target)
    except (DatasetError, StreamInputError) as exc:
        raise click.ClickException(str(exc)) from exc
    result = simulate(dataset_rows(images, count, key_start, bad_every), count, rate, sink, min_send_seconds)
    click.echo(
        f"Sent {result.rows:,} rows in {result.sends:,} sends over {result.seconds:.1f} s "
        f"({result.rows_per_s:,.1f} rows/s) to {target}"
    )


COMMANDS = [stream, simulate_stream]
