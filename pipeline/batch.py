"""The batch prediction pipeline (files in, JSON lines out) and `run_predict`, which the CLI calls.

    files ─ReadFiles─▶ RawBatch ─ParseRecords─▶ ParsedBatch ─Predict─▶ PredictionBatch ─▶ <output>-*
          └──────────────── dead letters of every step ─────────────────────────────▶ <output>-errors-*

A `bq://project.dataset.table` input or output swaps the source or the predictions sink for
BigQuery's (pipeline/bigquery.py); everything between them stays the same.

Everything after the Reshuffle of file ranges fuses into one stage, so rows never leave the
worker that read them; both sinks are Beam text sinks, which write temporary files and rename
them only once the run has succeeded.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler
from apache_beam.options.pipeline_options import GoogleCloudOptions
from apache_beam.runners.runner import PipelineResult

from mnistkit.pipeline import accounting
from mnistkit.pipeline.accounting import Summary, query_counters
from mnistkit.pipeline.choices import FORMATS
from mnistkit.pipeline.inference.factory import batch_handler
from mnistkit.pipeline.inference.runtimes import runtime_options
from mnistkit.pipeline.inference.savedmodel import ModelInfo
from mnistkit.pipeline.io import bigquery
from mnistkit.pipeline.io.files import match_files
from mnistkit.pipeline.io.formats import FormatError, detect_format
from mnistkit.pipeline.runners import Runner, RunnerConfig
from mnistkit.pipeline.transforms import (
    DEAD_LETTERS,
    ParseRecords,
    Predict,
    ReadFiles,
    dead_letter_to_json,
    predictions_to_json,
)

__all__ = [
    "OutputExistsError",
    "PredictConfig",
    "READ_BATCH_ROWS",
    "StartedRun",
    "build_pipeline",
    "run_predict",
    "start_predict",
]

_LOGGER = logging.getLogger(__name__)

# Rows per RawBatch: parsing amortises its fixed costs (784 column conversions) over big
# batches, while the model runs fastest on a few hundred rows per call (`max_batch`).
READ_BATCH_ROWS = 2048
# Ranges per worker: enough to even out workers that finish early, few enough to stay cheap.
_SPLITS_PER_WORKER = 4


class OutputExistsError(Exception):
    """The outputs of an earlier run are in the way; the message names them."""


@dataclass(frozen=True)
class PredictConfig:
    """Everything one batch prediction run needs; see `mnistkit predict --help`."""

    # An export dir or version dir; or an endpoint (http(s)://…, vertex://…) the pipeline calls.
    model: str
    input: str
    output: str
    format: str | None = None
    # Rows per model call. Batch inputs arrive already batched, so by default (min_batch None =
    # max_batch) RunInference's BatchElements only tops up short tail batches to `max_batch`; a
    # smaller `min_batch` turns on Beam's adaptive batch sizing between the two.
    min_batch: int | None = None
    max_batch: int = 256
    read_batch: int = READ_BATCH_ROWS
    overwrite: bool = False
    runner: Runner = field(default_factory=RunnerConfig)
    # Prefix of the dead letters and the summary; default: `output` (required for a bq:// output).
    errors_output: str | None = None
    # A bq:// output: "append" to the table or "truncate" it first.
    bigquery_write: str = "append"
    # A bq:// input: DIRECT_READ (Storage Read API) or EXPORT, as the deployment allows.
    bigquery_read_method: str = "DIRECT_READ"
    # The inference runtime (choices.INFERENCE_RUNTIMES) and its precision (choices.PRECISIONS).
    runtime: str = "auto"
    precision: str = "f32"

    @property
    def report_prefix(self) -> str:
        return self.errors_output or self.output

    @property
    def predictions_pattern(self) -> str:
        if bigquery.is_bigquery(self.output):
            return self.output
        return f"{self.output}-[0-9]*-of-[0-9]*.jsonl"

    @property
    def errors_pattern(self) -> str:
        return f"{self.report_prefix}-errors-*.jsonl"

    @property
    def summary_path(self) -> str:
        return f"{self.report_prefix}-summary.json"


def build_pipeline(pipeline: beam.Pipeline, config: PredictConfig, fmt: str, handler: ModelHandler) -> None:
    """Add the read → parse → predict → write steps of `config` to `pipeline`."""
    desired_splits = _SPLITS_PER_WORKER * config.runner.worker_count
    if bigquery.is_bigquery(config.input):
        table = bigquery.parse_table(config.input)
        source = bigquery.ReadFromBigQueryTable(table, config.read_batch, config.bigquery_read_method)
        read = pipeline | "ReadBigQuery" >> source
    else:
        read = pipeline | "ReadFiles" >> ReadFiles(config.input, fmt, config.read_batch, desired_splits)
    parsed = read.main | "ParseRecords" >> ParseRecords(fmt)
    predicted = parsed.main | "Predict" >> Predict(handler)
    if bigquery.is_bigquery(config.output):
        table = bigquery.parse_table(config.output)
        # Batch loads stage files under the pipeline's temp location; without a gs:// one, rows stream in.
        gcs_temp = pipeline.options.view_as(GoogleCloudOptions).temp_location
        sink = bigquery.WritePredictionsToBigQuery(table, config.bigquery_write, gcs_temp)
        _ = predicted.main | "WritePredictions" >> sink
    else:
        _ = (
            predicted.main
            | "PredictionsToJson" >> beam.Map(predictions_to_json)
            | "WritePredictions" >> beam.io.WriteToText(config.output, file_name_suffix=".jsonl")
        )
    _ = (
        (read[DEAD_LETTERS], parsed[DEAD_LETTERS], predicted[DEAD_LETTERS])
        | "AllDeadLetters" >> beam.Flatten()
        | "DeadLettersToJson" >> beam.Map(dead_letter_to_json)
        | "WriteDeadLetters" >> beam.io.WriteToText(f"{config.report_prefix}-errors", file_name_suffix=".jsonl")
    )


@dataclass
class StartedRun:
    """A pipeline `start_predict` launched; `finish()` waits for it and writes its Summary."""

    config: PredictConfig
    result: PipelineResult
    model: ModelInfo
    format: str
    started: float
    runtime: str = ""

    def finish(self) -> Summary:
        self.result.wait_until_finish()
        config = self.config
        summary = Summary.from_counters(
            query_counters(self.result),
            input=config.input,
            output=config.output,
            model=self.model.uri,
            format=self.format,
            wall_time_s=time.monotonic() - self.started,
            runtime=self.runtime,
            precision=config.precision,
            outputs={
                "predictions": config.predictions_pattern,
                "errors": config.errors_pattern,
                "summary": config.summary_path,
            },
        )
        if not summary.reconciled:
            _LOGGER.error("Row counts do not reconcile: %s", summary.to_dict())
        summary.write(config.summary_path)
        return summary


def run_predict(config: PredictConfig) -> Summary:
    """Check the inputs, the model and the outputs, run the pipeline, write and return its Summary.

    Raises InputError, FormatError, ModelError or OutputExistsError before anything runs.
    """
    return start_predict(config).finish()


def start_predict(config: PredictConfig) -> StartedRun:
    """Check the inputs, the model and the outputs, and start the pipeline (as run_predict)."""
    started = time.monotonic()
    if bigquery.is_bigquery(config.output) and not config.errors_output:
        raise bigquery.BigQueryError("a BigQuery output needs --errors-output, a prefix for dead letters and summary")
    if bigquery.is_bigquery(config.input):
        fmt = bigquery.SOURCE_FORMAT
        accounting.start_progress(0)
    else:
        fmt = config.format or detect_format(config.input)
        accounting.start_progress(sum(size for _, size in match_files(config.input)))
    if fmt not in FORMATS:
        raise FormatError(f"predict reads {', '.join(FORMATS)}; convert {fmt} inputs first (mnistkit convert).")
    model, handler, runtime_name = batch_handler(
        config.model,
        min_batch=config.min_batch or config.max_batch,
        max_batch=config.max_batch,
        runtime=runtime_options(config.runner, config.runtime, config.precision),
        here=isinstance(config.runner, RunnerConfig),
    )
    _clear_outputs(config)
    pipeline = beam.Pipeline(options=config.runner.pipeline_options())
    build_pipeline(pipeline, config, fmt, handler)
    return StartedRun(config, pipeline.run(), model, fmt, started, runtime_name)


def _clear_outputs(config: PredictConfig) -> None:
    patterns = [config.errors_pattern, config.summary_path]
    if not bigquery.is_bigquery(config.output):  # a table is appended to or truncated instead
        patterns.append(config.predictions_pattern)
    existing = [m.path for result in FileSystems.match(patterns) for m in result.metadata_list]
    if not existing:
        return
    if not config.overwrite:
        shown = ", ".join(sorted(existing)[:3]) + (", ..." if len(existing) > 3 else "")
        raise OutputExistsError(
            f"Outputs of an earlier run exist ({shown}); pass --overwrite to replace them or choose another --output."
        )
    FileSystems.delete(existing)
