"""The batch prediction pipeline (files in, JSON lines out) and `run_predict`, which the CLI calls.

    files ─ReadFiles─▶ RawBatch ─ParseRecords─▶ ParsedBatch ─Predict─▶ PredictionBatch ─▶ <output>-*
          └──────────────── dead letters of every step ─────────────────────────────▶ <output>-errors-*

A `bq://project.dataset.table` input or output swaps the source or the predictions sink for
BigQuery's (io/bigquery.py); everything between them stays the same, and rows the table
refuses join the dead letters.

Everything after the Reshuffle of file ranges fuses into one stage, so rows never leave the
worker that read them. Both file sinks write under a folder of this run's own
(`<output>-run-<id>/`, io/run_outputs.py); once every sink has finished, a last step replaces the
previous outputs with them, and `StartedRun.finish` then writes the summary. A run that fails or
is killed leaves the previous outputs and summary as they were.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler
from apache_beam.options.pipeline_options import GoogleCloudOptions
from apache_beam.runners.runner import PipelineResult, PipelineState

from mnistkit.pipeline import accounting
from mnistkit.pipeline.accounting import Summary, query_counters
from mnistkit.pipeline.choices import FORMATS
from mnistkit.pipeline.inference.factory import batch_handler
from mnistkit.pipeline.inference.runtimes import runtime_options
from mnistkit.pipeline.inference.savedmodel import ModelInfo
from mnistkit.pipeline.io import bigquery, run_outputs
from mnistkit.pipeline.io.files import match_files
from mnistkit.pipeline.io.formats import FormatError, detect_format
from mnistkit.pipeline.io.run_outputs import StagedPrefix
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
    "RunFailedError",
    "StartedRun",
    "build_pipeline",
    "run_predict",
    "start_predict",
]

_LOGGER = logging.getLogger(__name__)

# Rows per RawBatch: parsing amortises its fixed costs (784 column conversions) over big
# batches, and OpenVINO scores a whole one per model call (runtimes.call_rows).
READ_BATCH_ROWS = 2048
# Ranges per worker: enough to even out workers that finish early, few enough to stay cheap.
_SPLITS_PER_WORKER = 4


class OutputExistsError(Exception):
    """The outputs of an earlier run are in the way, or the input is among them; the message names them."""


class RunFailedError(RuntimeError):
    """The pipeline ended without succeeding (a remote job failed or was cancelled)."""


@dataclass(frozen=True)
class PredictConfig:
    """Everything one batch prediction run needs; see `mnistkit predict --help`."""

    # An export dir or version dir; or an endpoint (http(s)://…, vertex://…) the pipeline calls.
    model: str
    input: str
    output: str
    format: str | None = None
    # Rows per model call; None: the runtime's own (factory.batch_handler). Batch inputs arrive
    # already batched, so by default (min_batch None = max_batch) RunInference's BatchElements only
    # tops up short tail batches; a smaller `min_batch` turns on Beam's adaptive batch sizing.
    min_batch: int | None = None
    max_batch: int | None = None
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

    @property
    def output_patterns(self) -> list[str]:
        """What a finished run leaves in files, and the next one replaces."""
        patterns = [self.errors_pattern, self.summary_path]
        if not bigquery.is_bigquery(self.output):  # a table is appended to or truncated instead
            patterns.append(self.predictions_pattern)
        return patterns

    def staged_prefixes(self, run_id: str) -> tuple[StagedPrefix, ...]:
        """Where run `run_id` writes its dead letters and (file outputs) predictions first."""
        prefixes = [StagedPrefix(f"{self.report_prefix}-errors", run_id)]
        if not bigquery.is_bigquery(self.output):
            prefixes.append(StagedPrefix(self.output, run_id))
        return tuple(prefixes)


def build_pipeline(
    pipeline: beam.Pipeline,
    config: PredictConfig,
    fmt: str,
    handler: ModelHandler,
    run_id: str | None = None,
    input_bytes: int = 0,
) -> None:
    """Add the read → parse → predict → write → commit steps of `config` to `pipeline` (`input_bytes`:
    the input's size where known, see ParseRecords)."""
    prefixes = config.staged_prefixes(run_id or run_outputs.new_run_id())
    desired_splits = _SPLITS_PER_WORKER * config.runner.worker_count
    if bigquery.is_bigquery(config.input):
        table = bigquery.parse_table(config.input)
        source = bigquery.ReadFromBigQueryTable(table, config.read_batch, config.bigquery_read_method)
        read = pipeline | "ReadBigQuery" >> source
    else:
        read = pipeline | "ReadFiles" >> ReadFiles(config.input, fmt, config.read_batch, desired_splits)
    parsed = read.main | "ParseRecords" >> ParseRecords(fmt, input_bytes)
    predicted = parsed.main | "Predict" >> Predict(handler)
    dead_letters = [read[DEAD_LETTERS], parsed[DEAD_LETTERS], predicted[DEAD_LETTERS]]
    if bigquery.is_bigquery(config.output):
        table = bigquery.parse_table(config.output)
        # Batch loads stage files under the pipeline's temp location; without a gs:// one, rows stream in.
        gcs_temp = pipeline.options.view_as(GoogleCloudOptions).temp_location
        sink = bigquery.WritePredictionsToBigQuery(table, config.bigquery_write, gcs_temp)
        written = predicted.main | "WritePredictions" >> sink
        dead_letters.append(written.dead_letters)
        finished = [written.done]
    else:
        finished = [
            predicted.main
            | "PredictionsToJson" >> beam.Map(predictions_to_json)
            | "WritePredictions" >> beam.io.WriteToText(prefixes[1].staged, file_name_suffix=".jsonl")
        ]
    finished.append(
        tuple(dead_letters)
        | "AllDeadLetters" >> beam.Flatten()
        | "DeadLettersToJson" >> beam.Map(dead_letter_to_json)
        | "WriteDeadLetters" >> beam.io.WriteToText(prefixes[0].staged, file_name_suffix=".jsonl")
    )
    # Runs once, after every sink has finished: the text sinks emit their files' names once
    # they are complete, the BigQuery sink its signal once its last row is sent (see SinkResult).
    _ = (
        tuple(finished)
        | "AllWritten" >> beam.Flatten()
        | "ListWritten" >> beam.combiners.ToList()
        | "Commit" >> beam.Map(_commit, prefixes, config.output_patterns)
    )


def _commit(written: list[str], prefixes: tuple[StagedPrefix, ...], previous: list[str]) -> None:
    staged = [path for path in written if any(path.startswith(p.folder + "/") for p in prefixes)]
    run_outputs.commit(staged, prefixes, previous)


@dataclass
class StartedRun:
    """A pipeline `start_predict` launched; `finish()` waits for it and writes its Summary."""

    config: PredictConfig
    result: PipelineResult
    model: ModelInfo
    format: str
    started: float
    run_id: str
    runtime: str = ""

    def finish(self) -> Summary:
        """Wait for the run; when it succeeded, write its Summary (its outputs are then in place).

        A run that failed leaves the previous outputs; what it had written is removed.
        """
        config = self.config
        try:
            state = self.result.wait_until_finish()
            if state is not None and state != PipelineState.DONE:
                raise RunFailedError(f"the pipeline ended {state}; the previous outputs are left as they were")
        except BaseException:
            run_outputs.remove_folders(p.folder for p in config.staged_prefixes(self.run_id))
            raise
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
        input_files = []
    else:
        fmt = config.format or detect_format(config.input)
        input_files = match_files(config.input)
    input_bytes = sum(size for _, size in input_files)
    accounting.start_progress(input_bytes)
    if fmt not in FORMATS:
        raise FormatError(f"predict reads {', '.join(FORMATS)}; convert {fmt} inputs first (mnistkit convert).")
    model, handler, runtime_name = batch_handler(
        config.model,
        min_batch=config.min_batch,
        max_batch=config.max_batch,
        runtime=runtime_options(config.runner, config.runtime, config.precision),
        here=isinstance(config.runner, RunnerConfig),
    )
    _check_outputs(config, {path for path, _ in input_files})
    run_id = run_outputs.new_run_id()
    pipeline = beam.Pipeline(options=config.runner.pipeline_options())
    build_pipeline(pipeline, config, fmt, handler, run_id, input_bytes)
    return StartedRun(config, pipeline.run(), model, fmt, started, run_id, runtime_name)


def _shown(paths: list[str]) -> str:
    return ", ".join(sorted(paths)[:3]) + (", ..." if len(paths) > 3 else "")


def _check_outputs(config: PredictConfig, inputs: set[str]) -> None:
    """Refuse a run whose outputs would replace its input, or (without --overwrite) earlier outputs.

    With --overwrite, the folders of runs that were killed are removed now; the earlier outputs
    themselves stay until this run has succeeded.
    """
    existing = [m.path for result in FileSystems.match(config.output_patterns) for m in result.metadata_list]
    clashing = sorted(inputs.intersection(existing))
    if clashing:
        raise OutputExistsError(
            f"the input {_shown(clashing)} matches this run's output names, which a run replaces: "
            "choose another --output (or --errors-output)"
        )
    leftovers = [folder for p in config.staged_prefixes("") for folder in run_outputs.run_folders(p.final)]
    if not config.overwrite and (existing or leftovers):
        found = [f"Outputs of an earlier run ({_shown(existing)})"] if existing else []
        found += [f"files of a run that did not finish ({_shown(leftovers)})"] if leftovers else []
        raise OutputExistsError(
            f"{' and '.join(found)} exist; pass --overwrite to replace them or choose another --output."
        )
    run_outputs.remove_folders(leftovers)
