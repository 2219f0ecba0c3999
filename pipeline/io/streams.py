"""Where a stream comes from and where its rows go: `pubsub://` and `watch://` inputs, folder
(local or gs://) and `bq://` outputs.

Sources yield `(payload, source, format)` elements timestamped with their event time: the publish time
of a Pub/Sub message, the last-modified time of a watched file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from mnistkit.pipeline import accounting
from mnistkit.pipeline.accounting import LATENCY_MS
from mnistkit.pipeline.io.bigquery import PREDICTIONS_SCHEMA, TableRef, prediction_rows, write_rows
from mnistkit.pipeline.io.watch import StopPolicy, WatchFolder, folder_pattern
from mnistkit.pipeline.rows import DEAD_LETTERS, DeadLetter, PredictionBatch, Reason, ScoredBatch

__all__ = [
    "ERRORS_PREFIX",
    "MESSAGE_FORMAT",
    "PREDICTIONS_PREFIX",
    "PUBSUB",
    "STREAM_PREDICTIONS_SCHEMA",
    "StreamInput",
    "StreamInputError",
    "WATCH",
    "WriteStreamBigQuery",
    "WriteStreamFiles",
    "iso_time",
    "output_rows",
    "parse_input",
    "read_stream",
    "write_dead_letters",
    "write_jsonl",
]

PUBSUB = "pubsub://"
# A Pub/Sub message holds one JSON row, {"key": int, "image": [784 numbers]}.
MESSAGE_FORMAT = "jsonl"
WATCH = "watch://"
# The names of a stream's output files: PREFIX-<time>-<content id>.jsonl.
PREDICTIONS_PREFIX = "predictions"
ERRORS_PREFIX = "errors"
_PUBSUB_PATH = re.compile(r"^projects/([^/]+)/(subscriptions|topics)/([^/]+)$")


class StreamInputError(ValueError):
    """An input URI the stream cannot read; the message shows the accepted forms."""


@dataclass(frozen=True)
class StreamInput:
    """A parsed `--input`: Pub/Sub (a subscription or a topic) or a watched folder."""

    kind: str
    path: str

    @property
    def is_pubsub(self) -> bool:
        return self.kind in ("subscription", "topic")


def parse_input(uri: str) -> StreamInput:
    """`pubsub://projects/P/subscriptions/S`, `pubsub://projects/P/topics/T` or `watch://DIR`."""
    if uri.startswith(PUBSUB):
        path = uri[len(PUBSUB) :]
        match = _PUBSUB_PATH.match(path)
        if not match:
            raise StreamInputError(
                f"{uri}: expected pubsub://projects/PROJECT/subscriptions/NAME or pubsub://projects/PROJECT/topics/NAME"
            )
        kind = match.group(2)[:-1]
        from apache_beam.io.gcp import pubsub

        try:
            # Beam's own checks of project and resource names, before a pipeline is built.
            (pubsub.parse_topic if kind == "topic" else pubsub.parse_subscription)(path)
        except ValueError as exc:
            raise StreamInputError(f"{uri}: {exc}") from exc
        return StreamInput(kind, path)
    if uri.startswith(WATCH):
        folder = uri[len(WATCH) :]
        if not folder:
            raise StreamInputError(f"{uri}: name the folder to watch, e.g. watch://incoming/ or watch://gs://b/in/")
        return StreamInput("folder", folder)
    raise StreamInputError(
        f"{uri}: a stream reads pubsub://projects/P/subscriptions/S, pubsub://projects/P/topics/T "
        "or watch://DIR (a local folder or gs://bucket/prefix)"
    )


def _message_record(message: Any) -> tuple[bytes, str, str]:
    return message.data, f"pubsub:{message.message_id}", MESSAGE_FORMAT


def read_stream(
    pbegin: beam.pvalue.PBegin, source: StreamInput, poll_seconds: float = 1.0, stop: StopPolicy | None = None
) -> tuple[beam.PCollection, beam.PCollection | None]:
    """The `(payload, source, format)` elements of a StreamInput, and the source's own dead letters if any.

    Reading a topic makes the runner create (and later delete) a subscription of its own; read a
    subscription to share the load between jobs or to keep messages while no job runs.
    """
    if source.is_pubsub:
        records = (
            pbegin
            | "ReadFromPubSub" >> beam.io.ReadFromPubSub(with_attributes=True, **{source.kind: source.path})
            | "Payload" >> beam.Map(_message_record)
        )
        return records, None
    watched = pbegin | "WatchFolder" >> WatchFolder(folder_pattern(source.path), poll_seconds, stop)
    return watched.main, watched.dead_letters


def _content_id(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()[:12]


def write_jsonl(folder: str, prefix: str, first_event: float, content_id: str, lines: list[str]) -> str:
    """Write `lines` to `folder/PREFIX-<UTC time of first_event>-<content_id>.jsonl`, atomically.

    With a time and an id that depend only on the rows, a retried bundle rewrites the same file
    instead of adding a copy.
    The file is written under a hidden name and renamed, so a reader never sees half of it.
    """
    name = f"{prefix}-{datetime.fromtimestamp(first_event, UTC):%Y%m%dT%H%M%S.%f}-{content_id}.jsonl"
    final = FileSystems.join(folder, name)
    hidden = FileSystems.join(folder, f".{name}.tmp")
    with FileSystems.create(hidden, mime_type="application/json", compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(("\n".join(lines) + "\n").encode())
    FileSystems.rename([hidden], [final])
    return final


def iso_time(seconds: float) -> str:
    """Epoch seconds as an ISO-8601 UTC timestamp with milliseconds (BigQuery TIMESTAMP-ready)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def output_rows(scored: ScoredBatch) -> tuple[list[dict[str, Any]], list[DeadLetter]]:
    """The output rows of a scored micro-batch (counted as predicted), and dead letters for the rows
    the model failed on.

    A row: key, class, confidence, pred0..pred9 (the predictions table's columns), then
    event_time, prediction_time, latency_ms and model_version.
    """
    rows, times = scored.batch.rows, scored.batch.event_times
    ok = np.ones(len(rows), bool)
    ok[list(scored.errors)] = False
    scored_ok = PredictionBatch(rows.keys[ok], scored.classes[ok], scored.probabilities[ok])
    latencies = ((scored.predicted_at - times[ok]) * 1000).tolist()
    predicted_at = iso_time(scored.predicted_at)
    out = [
        {
            **row,
            "event_time": iso_time(event_time),
            "prediction_time": predicted_at,
            LATENCY_MS: round(latency, 3),
            "model_version": scored.model_version,
        }
        for row, event_time, latency in zip(prediction_rows(scored_ok), times[ok].tolist(), latencies, strict=True)
    ]
    dead = [
        DeadLetter.of(rows.sources[i], rows.row_text(i), Reason.INFERENCE_ERROR, message)
        for i, message in sorted(scored.errors.items())
    ]
    return out, dead


def _make_local_folder(folder: str) -> None:
    if "://" not in folder:
        os.makedirs(folder, exist_ok=True)


def write_dead_letters(folder: str, dead: list[DeadLetter], event_time: float) -> None:
    """One `errors-*.jsonl` file for `dead` (counted as rejected, by reason), named by `event_time`
    (the event time of the rows they came from, not the time of writing) and their content, so a
    retried bundle rewrites the same file."""
    content = _content_id(*(f"{d.source}\0{d.reason}\0{d.detail}\0{d.raw}\0".encode() for d in dead))
    write_jsonl(folder, ERRORS_PREFIX, event_time, content, [d.to_json() for d in dead])
    for letter in dead:
        accounting.count_rejected(letter.reason)


class _WriteDeadLetters(beam.DoFn):
    """Lists of dead letters → one errors file each."""

    def __init__(self, folder: str) -> None:
        self._folder = folder

    def setup(self) -> None:
        _make_local_folder(self._folder)

    def process(self, dead: list[DeadLetter], timestamp=beam.DoFn.TimestampParam) -> None:
        write_dead_letters(self._folder, dead, _event_seconds(timestamp))


class _WritePredictions(beam.DoFn):
    """Scored micro-batches → one predictions file each (and an errors file for model failures)."""

    def __init__(self, folder: str, errors_folder: str) -> None:
        self._folder = folder
        self._errors_folder = errors_folder

    def setup(self) -> None:
        _make_local_folder(self._folder)
        _make_local_folder(self._errors_folder)

    def process(self, scored: ScoredBatch) -> None:
        rows, dead = output_rows(scored)
        if rows:
            batch = scored.batch
            content = _content_id(batch.rows.keys.tobytes(), batch.event_times.tobytes())
            lines = [json.dumps(row) for row in rows]
            write_jsonl(self._folder, PREDICTIONS_PREFIX, batch.event_times.min(), content, lines)
            for row in rows:
                accounting.record_latency(row[LATENCY_MS])
        if dead:
            write_dead_letters(self._errors_folder, dead, float(scored.batch.event_times.min()))


def _event_seconds(timestamp: Any) -> float:
    """A Beam element timestamp in epoch seconds; 0 for the global window's bounds (no event time)."""
    seconds = timestamp.micros / 1e6
    return seconds if 0 <= seconds < 253402300800 else 0.0


def _write_dead_letter_lists(lists: list[beam.PCollection], folder: str) -> None:
    # One writer per input rather than one after a Flatten: the FnApiRunner holds back the
    # consumer of a Flatten until its slowest input (the polling source) has finished.
    for i, pcoll in enumerate(lists):
        _ = pcoll | f"WriteErrors{i}" >> beam.ParDo(_WriteDeadLetters(folder))


class WriteStreamFiles(beam.PTransform):
    """Scored micro-batches and dead-letter lists → `DIR/predictions-*.jsonl`, `ERRORS/errors-*.jsonl`.

    One file per micro-batch, written as soon as it is scored (rows are visible within
    milliseconds of their prediction), named `predictions-<UTC time of its first row's event>-
    <content hash>.jsonl`, so listing the folder in name order follows the stream.
    """

    def __init__(self, folder: str, errors_folder: str) -> None:
        super().__init__()
        self._folder = folder.rstrip("/")
        self._errors_folder = errors_folder.rstrip("/")

    def expand(self, outputs: tuple[beam.PCollection, ...]) -> None:
        scored, *dead_letters = outputs
        _ = scored | "WritePredictions" >> beam.ParDo(_WritePredictions(self._folder, self._errors_folder))
        _write_dead_letter_lists(dead_letters, self._errors_folder)


# The predictions table's columns, then the timing columns every streamed row carries.
STREAM_PREDICTIONS_SCHEMA = {
    "fields": [
        *PREDICTIONS_SCHEMA["fields"],
        {"name": "event_time", "type": "TIMESTAMP", "mode": "NULLABLE"},
        {"name": "prediction_time", "type": "TIMESTAMP", "mode": "NULLABLE"},
        {"name": LATENCY_MS, "type": "FLOAT", "mode": "NULLABLE"},
        {"name": "model_version", "type": "STRING", "mode": "NULLABLE"},
    ]
}


class _TableRows(beam.DoFn):
    """Scored micro-batches → table rows (main) and lists of dead letters (model failures)."""

    def process(self, scored: ScoredBatch) -> Iterator[dict[str, Any] | beam.pvalue.TaggedOutput]:
        rows, dead = output_rows(scored)
        for row in rows:
            accounting.record_latency(row[LATENCY_MS])
            yield row
        if dead:
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, dead)


class WriteStreamBigQuery(beam.PTransform):
    """Scored micro-batches → rows of `table` (created if needed, streamed in as they come);
    dead-letter lists → `errors_folder/errors-*.jsonl`.

    The table takes the predictions table's columns plus event_time, prediction_time,
    latency_ms and model_version: append to a table of its own, or add those (NULLABLE) columns
    to the batch predictions table first. A row the table refuses (a schema that does not fit)
    is a `sink_refused` dead letter with BigQuery's error, and not counted as predicted.
    """

    def __init__(self, table: TableRef, errors_folder: str) -> None:
        super().__init__()
        self._table = table
        self._errors_folder = errors_folder.rstrip("/")

    def expand(self, outputs: tuple[beam.PCollection, ...]) -> None:
        scored, *dead_letters = outputs
        rows = scored | "ToRows" >> beam.ParDo(_TableRows()).with_outputs(DEAD_LETTERS, main="main")
        written = write_rows(rows.main, self._table, STREAM_PREDICTIONS_SCHEMA)
        refused = written.dead_letters | "ListRefused" >> beam.Map(lambda letter: [letter])
        _write_dead_letter_lists([rows[DEAD_LETTERS], refused, *dead_letters], self._errors_folder)
