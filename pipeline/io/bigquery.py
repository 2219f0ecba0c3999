"""BigQuery as a source and a sink: `bq://project.dataset.table` inputs and outputs.

Input rows (`key INTEGER, image STRING` as in the original sample, or `image BYTES` with 784 raw
pixels) are read with the Storage Read API (DIRECT_READ: no export job, no temp files), written
back as text records and fed to the same parser as text files, so a bad row from BigQuery becomes
the same dead letter as a bad line in a file. Predictions go to a table with the schema of
infra/modules/bigquery (created if needed), appended or truncated.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np

from mnistkit.model_export.model import NUM_CLASSES, NUM_PIXELS
from mnistkit.pipeline import accounting
from mnistkit.pipeline.choices import BIGQUERY_READ_METHODS, BIGQUERY_WRITES
from mnistkit.pipeline.rows import DEAD_LETTERS, DeadLetter, PredictionBatch, RawBatch, Reason

__all__ = [
    "BigQueryError",
    "INPUT_SCHEMA",
    "PREDICTIONS_SCHEMA",
    "ReadFromBigQueryTable",
    "SCHEME",
    "SOURCE_FORMAT",
    "TableRef",
    "WritePredictionsToBigQuery",
    "is_bigquery",
    "parse_table",
    "prediction_rows",
    "rows_to_raw",
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
            | "Batch" >> beam.BatchElements(min_batch_size=self._batch_rows, max_batch_size=self._batch_rows)
            | "ToRecords" >> beam.FlatMap(rows_to_raw, self._table.uri).with_outputs(DEAD_LETTERS, main="main")
        )


def prediction_rows(batch: PredictionBatch) -> list[dict[str, Any]]:
    """A PredictionBatch as rows of the predictions table (counted as predicted)."""
    accounting.count_predicted(len(batch))
    confidences = batch.confidences.tolist()
    probabilities = batch.probabilities.tolist()
    return [
        {"key": key, "class": cls, "confidence": conf, **{f"pred{d}": p[d] for d in range(NUM_CLASSES)}}
        for key, cls, conf, p in zip(
            batch.keys.tolist(), batch.classes.tolist(), confidences, probabilities, strict=True
        )
    ]


class WritePredictionsToBigQuery(beam.PTransform):
    """PredictionBatches → rows of `table`, created if needed, appended or truncated.

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

    def expand(self, predictions: beam.PCollection) -> beam.pvalue.PDone:
        disposition = beam.io.BigQueryDisposition
        method = beam.io.WriteToBigQuery.Method
        return (
            predictions
            | "ToRows" >> beam.FlatMap(prediction_rows)
            | "Write"
            >> beam.io.WriteToBigQuery(
                table=self._table.spec,
                schema=PREDICTIONS_SCHEMA,
                create_disposition=disposition.CREATE_IF_NEEDED,
                write_disposition=disposition.WRITE_TRUNCATE if self._write == "truncate" else disposition.WRITE_APPEND,
                method=method.FILE_LOADS if self._gcs_temp else method.STREAMING_INSERTS,
                custom_gcs_temp_location=self._gcs_temp,
            )
        )
