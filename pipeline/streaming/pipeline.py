"""The streaming prediction pipeline: rows arriving one by one → micro-batches → scored rows.

    source ─(payload, source, format) @ event time─▶ MicroBatch ─▶ Parse ─▶ RunInference ─▶ sink
                                                                  └── dead letters ───────▶ sink

- Micro-batching is Beam's stateful `GroupIntoBatches`: a batch leaves when it holds
  `max_batch` rows or when its first row has waited `window_seconds` (a processing-time timer),
  whichever comes first; `max_batch` 1 scores every row on its own. It batches across bundles
  in the global window, so a row is never dropped for arriving late.
- Each micro-batch is parsed by the batch pipeline's parsers, one vectorised call per format,
  then scored by `StreamModelHandler`, whose model follows the export dir (inference/hot_swap.py).
- Every output row carries its event time (Pub/Sub publish time, file mtime), the prediction
  time, the latency between them in ms, and the model version that scored it.
- The sink writes each scored micro-batch as it comes (io/streams.py). A windowed file sink would
  wait for the watermark to pass each window, which the local FnApiRunner does not keep for a
  polling source; a file per micro-batch needs neither, and its rows show as soon as they are
  scored.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import ModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from mnistkit.pipeline import accounting, coders  # noqa: F401  (coders: registers the batch types' coder)
from mnistkit.pipeline.accounting import LATENCY_MS, Summary, query_counters
from mnistkit.pipeline.inference.factory import check_scorer, stream_handler
from mnistkit.pipeline.inference.runtimes import RuntimeOptions, runtime_options
from mnistkit.pipeline.io.bigquery import is_bigquery, parse_table
from mnistkit.pipeline.io.parsing import parse
from mnistkit.pipeline.io.streams import (
    ERRORS_PREFIX,
    PREDICTIONS_PREFIX,
    StreamInput,
    StreamInputError,
    WriteStreamBigQuery,
    WriteStreamFiles,
    parse_input,
    read_stream,
)
from mnistkit.pipeline.io.watch import StopPolicy
from mnistkit.pipeline.rows import (
    DEAD_LETTERS,
    DeadLetter,
    ParsedBatch,
    RawBatch,
    ScoredBatch,
    StreamBatch,
    StreamRecord,
)
from mnistkit.pipeline.runners import FN_API_RUNNER, Runner

__all__ = [
    "BUNDLE_BASED_RUNNER",
    "ScoreStream",
    "ScoredStream",
    "StartedStream",
    "StreamConfig",
    "StreamResult",
    "build_stream_pipeline",
    "parse_micro_batch",
    "run_stream",
    "start_stream",
    "stream_pipeline_args",
]

_LOGGER = logging.getLogger(__name__)

BUNDLE_BASED_RUNNER = "apache_beam.runners.direct.direct_runner.BundleBasedDirectRunner"


def _stamp(element: tuple[bytes, str, str], timestamp=beam.DoFn.TimestampParam) -> tuple[int, StreamRecord]:
    """A `(payload, source, format)` record with its event time, under the one batching key."""
    payload, source, fmt = element
    accounting.count_read(1)
    return 0, StreamRecord(payload, source, timestamp.micros / 1e6, fmt)


def parse_micro_batch(records: Sequence[StreamRecord]) -> tuple[StreamBatch | None, list[DeadLetter]]:
    """The rows of a micro-batch, parsed by the batch pipeline's parsers, one call per format.

    Each row keeps its source and event time. When a format's records hold a bad row, the
    parser's output no longer tells which rows survived, so those records are parsed again one
    by one: slower, but only for the parts of micro-batches that hold bad rows. A format no
    parser knows makes each of its records a dead letter (parsing.parse), not a crashed stream.
    """
    by_format: dict[str, list[StreamRecord]] = {}
    for record in records:
        by_format.setdefault(record.format, []).append(record)
    parts: list[ParsedBatch] = []
    times: list[np.ndarray] = []
    dead: list[DeadLetter] = []
    for fmt, group in by_format.items():
        rows, bad = parse(RawBatch("stream", [r.payload for r in group]), fmt)
        if not bad:
            parts.append(ParsedBatch(rows.keys, rows.images, [r.source for r in group]))
            times.append(np.fromiter((r.event_time for r in group), np.float64, len(group)))
            continue
        for record in group:
            one, one_bad = parse(RawBatch(record.source, [record.payload]), fmt)
            dead += one_bad
            if len(one):
                parts.append(one)
                times.append(np.asarray([record.event_time], np.float64))
    if not parts:
        return None, dead
    return StreamBatch(ParsedBatch.concat(parts), np.concatenate(times)), dead


def _parse(records: list[StreamRecord]) -> Iterator[StreamBatch | beam.pvalue.TaggedOutput]:
    batch, dead = parse_micro_batch(records)
    if batch is not None:
        yield batch
    if dead:
        yield beam.pvalue.TaggedOutput(DEAD_LETTERS, dead)


@dataclass
class ScoredStream:
    """The outputs of ScoreStream: ScoredBatches, and lists of DeadLetters (one per micro-batch,
    so dead letters stay as batched as the rows)."""

    scored: beam.PCollection
    dead_letters: beam.PCollection


class ScoreStream(beam.PTransform):
    """`(payload, source, format)` elements timestamped by event time → ScoredBatches and dead letters.

    Args:
      handler: the model handler (its model follows the export dir).
      max_batch: most rows per micro-batch and per model call; 1 scores each row on its own.
      window_seconds: longest time a row waits for its micro-batch to fill.
      sharded: batch under runner-sharded keys (Dataflow balances them over its workers); else
        under one key, so a local runner fills every batch it can.
      clock: the clock of the batching timer (tests pass a fake one to drive it with TestStream).
    """

    def __init__(
        self,
        handler: ModelHandler,
        max_batch: int,
        window_seconds: float,
        sharded: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        if max_batch < 1 or window_seconds <= 0:
            raise ValueError("max_batch must be >= 1 and window_seconds > 0")
        self._handler = handler
        self._max_batch = max_batch
        self._window_seconds = window_seconds
        self._sharded = sharded
        self._clock = clock

    def expand(self, records: beam.PCollection) -> ScoredStream:
        # GroupIntoBatches rather than BatchElements(max_batch_duration_secs): the latter keys its
        # state by a per-process id that it does not keep alive, so a runner that recreates
        # DoFns per bundle (the BundleBasedDirectRunner) batches every bundle apart.
        group = beam.GroupIntoBatches.WithShardedKey if self._sharded else beam.GroupIntoBatches
        parsed = (
            records
            | "Stamp" >> beam.Map(_stamp).with_output_types(tuple[int, StreamRecord])
            | "MicroBatch" >> group(self._max_batch, self._window_seconds, self._clock)
            | "Rows" >> beam.Values()
            | "Parse" >> beam.FlatMap(_parse).with_output_types(StreamBatch).with_outputs(DEAD_LETTERS, main="main")
        )
        scored = parsed.main | "RunInference" >> RunInference(self._handler).with_output_types(ScoredBatch)
        return ScoredStream(scored, parsed[DEAD_LETTERS])


@dataclass(frozen=True)
class StreamConfig:
    """Everything one streaming run needs; see `mnistkit stream --help`.

    `runner` None runs the stream here, on the local runner that can read its source; a remote
    runner is set by `cloud.launch.launch_stream`. `duration` and `idle` stop a local run: a
    watched folder stops polling (the pipeline then drains and finishes); a local Pub/Sub read
    is cancelled after `duration` (rows still in flight are lost, like any cancelled streaming job).
    """

    # An export dir (followed), a version dir; or an endpoint (http(s)://…, vertex://…) to call.
    model: str
    input: str
    output: str
    max_batch: int = 100
    window_seconds: float = 1.0
    poll_seconds: float = 1.0
    model_check_seconds: float = 10.0
    duration: float | None = None
    idle: float | None = None
    errors_output: str | None = None
    runner: Runner | None = None
    # The inference runtime (choices.INFERENCE_RUNTIMES) and its precision (choices.PRECISIONS).
    runtime: str = "auto"
    precision: str = "f32"

    @property
    def runtime_options(self) -> RuntimeOptions:
        # A stream's local runners run one worker; a remote runner sizes the engine per worker.
        if self.runner is None:
            return RuntimeOptions(self.runtime, self.precision)
        return runtime_options(self.runner, self.runtime, self.precision)

    @property
    def outputs(self) -> dict[str, str]:
        """Where the stream's rows land: the table, or the folder's file pattern; and its dead letters."""
        predictions = self.output if is_bigquery(self.output) else f"{self.output}/{PREDICTIONS_PREFIX}-*.jsonl"
        return {"predictions": predictions, "errors": f"{self.errors_folder}/{ERRORS_PREFIX}-*.jsonl"}

    @property
    def errors_folder(self) -> str:
        """Where dead letters go: --errors-output, else the output folder (a bq:// output needs one)."""
        if self.errors_output:
            return self.errors_output
        if is_bigquery(self.output):
            raise StreamInputError(
                f"--output {self.output} is a table: name a folder for the dead letters (--errors-output)"
            )
        return self.output


def stream_pipeline_args(source: StreamInput, runner: Runner | None = None) -> list[str]:
    """Beam arguments for a stream: the remote runner's, or the local runner that can run `source`.

    Locally there is no single streaming runner for both sources (Prism, the DirectRunner's
    streaming engine, needs a binary download that fails offline): Pub/Sub reads run only on
    the BundleBasedDirectRunner, which cannot run the polling splittable DoFn of a watched
    folder; that one runs on the FnApiRunner, in this process so the model is loaded once.
    """
    if runner is not None:
        return runner.flags(streaming=True)
    if source.is_pubsub:
        return [f"--runner={BUNDLE_BASED_RUNNER}", "--streaming"]
    return [f"--runner={FN_API_RUNNER}", "--direct_running_mode=in_memory", "--direct_num_workers=1", "--streaming"]


def build_stream_pipeline(pipeline: beam.Pipeline, config: StreamConfig) -> None:
    """Add source → ScoreStream → sink for `config` to `pipeline`."""
    source = parse_input(config.input)
    records, source_dead = read_stream(pipeline, source, config.poll_seconds, StopPolicy(config.duration, config.idle))
    handler = stream_handler(
        config.model,
        max_batch=config.max_batch,
        check_seconds=config.model_check_seconds,
        runtime=config.runtime_options,
    )
    scored = records | "ScoreStream" >> ScoreStream(
        handler, config.max_batch, config.window_seconds, sharded=config.runner is not None
    )
    outputs = [scored.scored, scored.dead_letters]
    if source_dead is not None:
        outputs.append(source_dead | "ListSourceErrors" >> beam.Map(lambda letter: [letter]))
    if is_bigquery(config.output):
        sink = WriteStreamBigQuery(parse_table(config.output), config.errors_folder)
    else:
        sink = WriteStreamFiles(config.output, config.errors_folder)
    _ = tuple(outputs) | "Write" >> sink


@dataclass(frozen=True)
class StartedStream:
    """A stream `start_stream` launched: its Beam result, the checked model and the start time."""

    config: StreamConfig
    result: Any
    source: StreamInput
    model_uri: str
    started: float


@dataclass(frozen=True)
class StreamResult:
    """A local run's row counts and latencies (ms)."""

    summary: Summary
    latency_ms: dict[str, float] = field(default_factory=dict)


def start_stream(config: StreamConfig) -> StartedStream:
    """Check the input, outputs and model, then build the stream and start it on its runner.

    Raises StreamInputError, BigQueryError or ModelError before anything runs.
    """
    started = time.monotonic()
    source = parse_input(config.input)
    _check_folders(config, source)
    # The check reads the newest version; the stream serves the export dir itself, so that
    # newer versions are picked up as they appear.
    model, _ = check_scorer(config.model, config.runtime_options, here=config.runner is None)
    pipeline = beam.Pipeline(options=PipelineOptions(stream_pipeline_args(source, config.runner)))
    build_stream_pipeline(pipeline, config)
    result = pipeline.run()
    _LOGGER.info("Streaming %s through model %s into %s", config.input, model.uri, config.output)
    return StartedStream(config, result, source, model.uri, started)


def run_stream(config: StreamConfig) -> StreamResult:
    """Run the stream here until it stops (see StreamConfig) and count what it did."""
    if config.runner is not None:
        raise ValueError("run_stream runs streams here; launch remote ones with cloud.launch.launch_stream")
    accounting.start_local_counts()
    run = start_stream(config)
    if run.source.is_pubsub and config.duration is not None:
        time.sleep(config.duration)
        run.result.cancel()
    else:
        run.result.wait_until_finish()
    # The BundleBasedDirectRunner that runs local Pub/Sub reads loses the Beam metrics of every
    # bundle after a DoFn's first (accounting._Tally); it runs in this process, so count here.
    in_process = run.source.is_pubsub
    summary = Summary.from_counters(
        accounting.local_counters() if in_process else query_counters(run.result),
        input=config.input,
        output=config.output,
        model=run.model_uri,
        format="stream",
        wall_time_s=time.monotonic() - run.started,
        outputs=config.outputs,
    )
    return StreamResult(summary, accounting.local_latency() if in_process else _latency(run.result))


def _check_folders(config: StreamConfig, source: StreamInput) -> None:
    folders = [config.errors_folder] + ([] if is_bigquery(config.output) else [config.output])
    if source.is_pubsub:
        return
    watched = source.path.rstrip("/")
    if "://" not in watched and not any(c in watched for c in "*?[") and not os.path.isdir(watched):
        raise StreamInputError(f"watch://{watched}: no such folder (create it, or check the path)")
    for folder in folders:
        if folder.rstrip("/") == watched or folder.startswith(watched + "/"):
            raise StreamInputError(f"{folder} lies in the watched folder; the stream would read its own outputs")


def _latency(result: Any) -> dict[str, float]:
    query = MetricsFilter().with_namespace(accounting.NAMESPACE).with_name(LATENCY_MS)
    for distribution in result.metrics().query(query)["distributions"]:
        try:
            value = distribution.committed
        except NotImplementedError:
            value = distribution.attempted
        if value and value.count:
            return {"min": value.min, "mean": round(value.mean, 1), "max": value.max, "count": value.count}
    return {}
