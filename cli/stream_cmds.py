"""`mnistkit stream` and `mnistkit simulate-stream`: thin Click layers over pipeline.streaming."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mnistkit.cli.errors import user_errors
from mnistkit.cli.options import (
    data_dir_option,
    dataflow_options,
    dataflow_runner,
    dataset_option,
    endpoint_option,
    endpoint_token_option,
    env_epilog,
    model_or_endpoint,
    refuse_dataflow_options,
    runner_option,
    runtime_options,
)
from mnistkit.cli.output import echo_launch, echo_outputs, echo_summary

__all__ = ["COMMANDS"]

_ENV = env_epilog("MNISTKIT_STREAM_MAX_BATCH=10")


@click.command(context_settings={"show_default": True}, epilog=_ENV)
@click.option(
    "--model",
    metavar="URI",
    show_envvar=True,
    help="Export dir (local or gs://): its newest version is served, and a newer export is picked up "
    "while the stream runs. A version dir pins that version.",
)
@endpoint_option
@endpoint_token_option
@click.option(
    "--input",
    "input_uri",
    metavar="URI",
    envvar="MNISTKIT_STREAM_INPUT",
    show_envvar=True,
    help="pubsub://projects/P/subscriptions/S, pubsub://projects/P/topics/T (not on Dataflow), or watch://DIR for "
    'new files in a folder (local or gs://). A message holds one JSON row {"key": int, "image": [784 values]}; '
    "a file may be in any format `mnistkit predict` reads (text, JSON lines, TFRecord, .gz), told by its name. "
    "Default on Dataflow: the kit's subscription (setting pubsub_input_subscription).",
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
@runtime_options
@runner_option("Run here, or launch a streaming job on Dataflow with the settings of `mnistkit config show`.")
@dataflow_options("mnistkit-stream")
@user_errors
def stream(
    model: str | None,
    endpoint: str | None,
    input_uri: str | None,
    output: str,
    errors_output: str | None,
    max_batch: int,
    window_seconds: float,
    poll_seconds: float,
    model_check_seconds: float,
    duration: float | None,
    idle_stop: float | None,
    runtime: str,
    precision: str,
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
    from mnistkit.pipeline.streaming.pipeline import StreamConfig, run_stream

    if runner != "dataflow" and not input_uri:
        raise click.UsageError("a local stream needs --input (on Dataflow it defaults to the kit's subscription)")
    config = StreamConfig(
        model=model_or_endpoint(model, endpoint),
        input=input_uri or "",
        output=output,
        max_batch=max_batch,
        window_seconds=window_seconds,
        poll_seconds=poll_seconds,
        model_check_seconds=model_check_seconds,
        duration=duration,
        idle=idle_stop,
        errors_output=errors_output,
        runtime=runtime,
        precision=precision,
    )
    if runner == "dataflow":
        from mnistkit.pipeline.cloud.launch import launch_stream

        echo_launch(launch_stream(config, dataflow_runner("mnistkit-stream", **cloud)), "streaming")
        return
    refuse_dataflow_options(cloud)
    result = run_stream(config)
    echo_summary(result.summary)
    if result.latency_ms:
        latency = result.latency_ms
        click.echo(f"Latency ms: min {latency['min']:,}, mean {latency['mean']:,}, max {latency['max']:,}")
    echo_outputs(result.summary.outputs)


@click.command(name="simulate-stream", context_settings={"show_default": True}, epilog=_ENV)
@click.option(
    "--to",
    "target",
    metavar="URI",
    show_envvar=True,
    help="pubsub://projects/P/topics/T, or a folder (watch://DIR or DIR, local or gs://) to write files into. "
    "Default: the kit's topic (setting pubsub_input_topic).",
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
@user_errors
def simulate_stream(
    target: str | None,
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
    from mnistkit.model_export.datasets import load_dataset
    from mnistkit.pipeline.streaming.simulate import dataset_rows, open_sink, simulate

    if not target:
        from mnistkit.cli.options import resolve_config

        cloud = resolve_config()
        cloud.require("pubsub_input_topic")
        target = f"pubsub://{cloud.pubsub_input_topic}"
    images, _ = load_dataset(dataset, "test", data_dir)
    sink = open_sink(target)
    result = simulate(dataset_rows(images, count, key_start, bad_every), count, rate, sink, min_send_seconds)
    click.echo(
        f"Sent {result.rows:,} rows in {result.sends:,} sends over {result.seconds:.1f} s "
        f"({result.rows_per_s:,.1f} rows/s) to {target}"
    )


COMMANDS = [stream, simulate_stream]
