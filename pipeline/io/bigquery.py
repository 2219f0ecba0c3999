"""BigQuery as a source and a sink: `bq://project.dataset.table` inputs and outputs.

Input rows (`key INTEGER, image STRING` as in the original sample, or `image BYTES` with 784 raw
pixels) are read with the Storage Read API (DIRECT_READ: no export job, no temp files), written
back as text records and fed to the same parser as text files, so a bad row from BigQuery becomes
the same dead letter as a bad line in a file. Predictions go to a table with the schema of
infra/modules/bigquery (created if needed), appended or truncated.

A row the table refuses (streaming inserts report each one) becomes a `sink_refused` dead letter
with BigQuery's error, and is no longer counted as predicted. Batch loads (FILE_LOADS) report no
per-row outcome: a load job loads all its rows or fails, and a failed load fails the run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np

from mnistkit.model_export.model import NUM_CLASSES, NUM_PIXELS
from mnistkit.pipeline import accounting
from mnistkit.pipeline.choices import BIGQUERY_READ_METHODS, BIGQUERY_WRITES
from mnistkit.pipeline.io.reference import MAX_RECORD_BYTES
from mnistkit.pipeline.rows import DEAD_LETTERS, MAX_RAW_CHARS, DeadLetter, PredictionBatch, RawBatch, Reason

__all__ = [
    "BigQueryError",
    "INPUT_SCHEMA",
    "PREDICTIONS_SCHEMA",
    "ReadFromBigQueryTable",
    "SCHEME",
    "SOURCE_FORMAT",
    "SinkResult",
    "TableRef",
    "WritePredictionsToBigQuery",
    "is_bigquery",
    "parse_table",
    "prediction_rows",
    "refused_row",
    "rows_to_raw",
    "screen_size",
    "write_rows",
]

SCHEME = "bq://"
# The input format of the rows a BigQuery source emits (parsing.PARSERS key).
SOURCE_FORMAT = "text"

# Same columns and modes as infra/modules/bigquery: appending to a table whose modes differ fails.
_KEY = {"name": "key", "type": "INTEGER", "mode": "REQUIRED"}
INPUT_SCHEMA = {"fields": [_KEY, {"name": "image", "type": "STRING", "mode": "REQUIRED"}]}
PREDICTIONS_SCHEMA = {
    "fields": [
        _KEY,
        {"name": "class", "type": "INTEGER", "mode": "REQUIRED"},
        {"name": "confidence", "type": "FLOAT", "mode": "REQUIRED"},
        *({"name": f"pred{d}", "type": "FLOAT", "mode": "NULLABLE"} for d in range(NUM_CLASSES)),
    ]
}

_NAME = re.compile(r"^(?:([a-z][-a-z0-9:.]*[a-z0-9])\.)?(\w+)\.([\w$-]+)$", re.IGNORECASE)


class BigQueryError(ValueError):
    """A bq:// URI that names no table, or a write the chosen method cannot do."""


@dataclass(frozen=True)
class TableRef:
    project: str
    dataset: str
    table: str

    @property
    def spec(self) -> str:
        """`project:dataset.table`, the form Beam's BigQuery transforms take."""
        return f"{self.project}:{self.dataset}.{self.table}"

    @property
    def dotted(self) -> str:
        """`project.dataset.table`, the form the google-cloud-bigquery client and Terraform use."""
        return f"{self.project}.{self.dataset}.{self.table}"

    @property
    def uri(self) -> str:
        return SCHEME + self.dotted


def is_bigquery(uri: str | None) -> bool:
    return bool(uri) and uri.startswith(SCHEME)


def parse_table(name: str, default_project: str | None = None) -> TableRef:
    """`bq://project.dataset.table`, `project.dataset.table` or `dataset.table` (+ default project)."""
    text = name.removeprefix(SCHEME)
    match = _NAME.match(text)
    project = match and (match.group(1) or default_project)
    if not match or not project:
        raise BigQueryError(
            f"{name!r} is not a BigQuery table: use bq://project.dataset.table"
            + ("" if default_project else " (or set project_id for bq://dataset.table)")
        )
    return TableRef(project, match.group(2), match.group(3))


def rows_to_raw(rows: list[dict[str, Any]], source: str) -> Iterator[RawBatch | beam.pvalue.TaggedOutput]:
    """BigQuery rows → one RawBatch of text records (`key:v1,...`) plus dead letters.

    STRING images are taken as they are, so the text parser judges them exactly as it judges a
    line of a file; BYTES images (784 uint8 pixels) are written out as text values.
    """
    from mnistkit.pipeline.io.formats import encode_text

    accounting.count_read(len(rows))
    records: list[bytes] = []
    pixel_keys: list[int] = []
    pixel_rows: list[bytes] = []
    for row in rows:
        key, image = row.get("key"), row.get("image")
        if _OVERSIZED in row:
            raw = f"{'' if key is None else key}:{row[_OVERSIZED][1]}"
            detail = f"{row[_OVERSIZED][0]} image bytes or characters, at most {MAX_RECORD_BYTES}"
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, DeadLetter.of(source, raw, Reason.OVERSIZED_LINE, detail))
            continue
        if isinstance(image, bytes):
            reason = _bytes_problem(key, image)
            if reason:
                raw = f"{'' if key is None else key}:<{len(image)} bytes>"
                yield beam.pvalue.TaggedOutput(DEAD_LETTERS, DeadLetter.of(source, raw, *reason))
            else:
                pixel_keys.append(key)
                pixel_rows.append(image)
            continue
        records.append(f"{'' if key is None else key}:{image or ''}".encode())
    if pixel_rows:
        pixels = np.frombuffer(b"".join(pixel_rows), np.uint8).reshape(-1, NUM_PIXELS)
        records += encode_text(np.asarray(pixel_keys, np.int64), pixels).splitlines()
    if records:
        yield RawBatch(source, records)


# Marks a row whose image was cut off before batching: (its length, its first characters).
_OVERSIZED = "_oversized"


def screen_size(row: dict[str, Any]) -> dict[str, Any]:
    """`row`, or for an image beyond MAX_RECORD_BYTES, the row without it (rows_to_raw rejects it).

    Runs before rows are batched, so a table of multi-megabyte STRING values is never held a
    batch at a time. An image of at most MAX_RECORD_BYTES characters may still make a record
    over MAX_RECORD_BYTES bytes: the parser rejects that one, with the same reason.
    """
    image = row.get("image")
    if isinstance(image, (str, bytes)) and len(image) > MAX_RECORD_BYTES:
        head = image[:MAX_RAW_CHARS] if isinstance(image, str) else f"<{len(image)} bytes>"
        return {"key": row.get("key"), _OVERSIZED: (len(image), head)}
    return row


def _bytes_problem(key: Any, image: bytes) -> tuple[Reason, str] | None:
    if key is None:
        return Reason.MISSING_KEY, "the key is NULL"
    if len(image) != NUM_PIXELS:
        return Reason.WRONG_VALUE_COUNT, f"{len(image)} image bytes, expected {NUM_PIXELS}"
    return None


class ReadFromBigQueryTable(beam.PTransform):
    """A table's rows → RawBatches in SOURCE_FORMAT (main) and dead letters (`DEAD_LETTERS`).

    `method` is DIRECT_READ (the Storage Read API) unless the deployment grants no read sessions
    (Terraform output bigquery_read_method = EXPORT: an export job to the temp location).
    `temp_dataset` is handed to Beam even though a table read creates no temp table: without it,
    Beam's cleanup looks for the temp dataset it would have created by listing datasets, and on a
    BigQuery that ignores the label filter (the emulator) it deletes every dataset of the project.
    """

    def __init__(
        self, table: TableRef, batch_rows: int, method: str = "DIRECT_READ", temp_dataset: str | None = None
    ) -> None:
        super().__init__()
        if method not in BIGQUERY_READ_METHODS:
            raise BigQueryError(f"BigQuery read method must be one of {BIGQUERY_READ_METHODS}, got {method!r}")
        self._table = table
        self._batch_rows = batch_rows
        self._method = method
        self._temp_dataset = temp_dataset or table.dataset

    def read(self) -> beam.io.ReadFromBigQuery:
        from apache_beam.io.gcp.internal.clients.bigquery import DatasetReference

        return beam.io.ReadFromBigQuery(
            table=self._table.spec,
            method=self._method,
            selected_fields=["key", "image"],
            temp_dataset=DatasetReference(projectId=self._table.project, datasetId=self._temp_dataset),
        )

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        return (
            pbegin
            | "Read" >> self.read()
            | "ScreenSize" >> beam.Map(screen_size)
            | "Batch" >> beam.BatchElements(min_batch_size=self._batch_rows, max_batch_size=self._batch_rows)
            | "ToRecords" >> beam.FlatMap(rows_to_raw, self._table.uri).with_outputs(DEAD_LETTERS, main="main")
        )


def prediction_rows(batch: PredictionBatch) -> list[dict[str, Any]]:
    """A PredictionBatch as rows of the predictions table (counted as predicted, as they are sent)."""
    accounting.count_predicted(len(batch))
    confidences = batch.confidences.tolist()
    probabilities = batch.probabilities.tolist()
    return [
        {"key": key, "class": cls, "confidence": conf, **{f"pred{d}": p[d] for d in range(NUM_CLASSES)}}
        for key, cls, conf, p in zip(
            batch.keys.tolist(), batch.classes.tolist(), confidences, probabilities, strict=True
        )
    ]


@dataclass
class SinkResult:
    """What a BigQuery sink gives back: dead letters of the rows the table refused, and a
    collection that is complete once the sink has sent its last row (it holds no elements)."""

    dead_letters: beam.PCollection
    done: beam.PCollection


def refused_row(failed: tuple[str, dict[str, Any], list[dict[str, Any]]], source: str) -> DeadLetter:
    """A row BigQuery refused (`(table, row, errors)` from Beam) as a dead letter; no longer predicted."""
    _, row, errors = failed
    accounting.count_refused_by_sink(1)
    detail = "; ".join(f"{e.get('reason', '')}: {e.get('message', '')}".strip(": ") for e in errors or [])
    return DeadLetter.of(source, json.dumps(row), Reason.SINK_REFUSED, detail or "refused by BigQuery")


def _nothing(_: Any) -> Iterator[str]:
    return iter(())


def write_rows(
    rows: beam.PCollection, table: TableRef, schema: dict, truncate: bool = False, gcs_temp: str | None = None
) -> SinkResult:
    """Apply, as step `Write` (plus `Refused` and `Done` after it), a write of row dicts to `table`
    (created with `schema` if needed); call it inside a sink's expand.

    Streaming inserts retry transient errors only: a row the table refuses for good (a schema
    that does not fit, a missing REQUIRED value) comes back at once as a dead letter instead of
    being retried forever. Batch loads (FILE_LOADS, with a gs:// `gcs_temp`) have no per-row
    outcome: a load job that fails fails the run.
    """
    from apache_beam.io.gcp.bigquery_tools import RetryStrategy

    disposition = beam.io.BigQueryDisposition
    method = beam.io.WriteToBigQuery.Method
    result = rows | "Write" >> beam.io.WriteToBigQuery(
        table=table.spec,
        schema=schema,
        create_disposition=disposition.CREATE_IF_NEEDED,
        write_disposition=disposition.WRITE_TRUNCATE if truncate else disposition.WRITE_APPEND,
        method=method.FILE_LOADS if gcs_temp else method.STREAMING_INSERTS,
        custom_gcs_temp_location=gcs_temp,
        insert_retry_strategy=RetryStrategy.RETRY_ON_TRANSIENT_ERROR,
    )
    if gcs_temp:
        # Emitted as the load jobs are started; Beam exposes no step after they have ended.
        done = result.destination_load_jobid_pairs | "Done" >> beam.FlatMap(_nothing)
        return SinkResult(rows.pipeline | "Refused" >> beam.Create([]), done)
    dead = result.failed_rows_with_errors | "Refused" >> beam.Map(refused_row, table.uri)
    return SinkResult(dead, dead | "Done" >> beam.FlatMap(_nothing))


class WritePredictionsToBigQuery(beam.PTransform):
    """PredictionBatches → rows of `table`, created if needed, appended or truncated; returns a
    SinkResult (dead letters of refused rows).

    Batch loads (FILE_LOADS) need a gs:// temp location and can truncate; without one, rows are
    streamed in (STREAMING_INSERTS), which can only append.
    """

    def __init__(self, table: TableRef, write: str = "append", gcs_temp: str | None = None) -> None:
        super().__init__()
        if write not in BIGQUERY_WRITES:
            raise BigQueryError(f"write must be one of {BIGQUERY_WRITES}, got {write!r}")
        if write == "truncate" and not (gcs_temp or "").startswith("gs://"):
            raise BigQueryError(
                f"truncating {table.uri} needs a batch load, which stages files on GCS: "
                "set temp_location to a gs:// path (mnistkit config) or append instead"
            )
        self._table = table
        self._write = write
        self._gcs_temp = gcs_temp if (gcs_temp or "").startswith("gs://") else None

    def expand(self, predictions: beam.PCollection) -> SinkResult:
        rows = predictions | "ToRows" >> beam.FlatMap(prediction_rows)
        return write_rows(rows, self._table, PREDICTIONS_SCHEMA, self._write == "truncate", self._gcs_temp)
