"""The rows of a stream: arriving records, parsed micro-batches, scored micro-batches, output rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np

from pipeline.bigquery import prediction_rows
from pipeline.parsing import parse_jsonl
from pipeline.rows import DeadLetter, ParsedBatch, PredictionBatch, Reason

LATENCY_MS = "latency_ms"


class StreamRecord(NamedTuple):
    """One arriving row: its raw JSON payload, where it came from, and its event time (epoch s)."""

    payload: bytes
    source: str
    event_time: float


@dataclass(frozen=True)
class StreamBatch:
    """Parsed rows of one micro-batch and, per row, its event time (seconds since the epoch)."""

    rows: ParsedBatch
    event_times: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class ScoredBatch:
    """A StreamBatch after its model call: outputs for every row, errors for rows that failed.

    `errors` maps a row index to why the model failed on it (its outputs are then meaningless).
    """

    batch: StreamBatch
    probabilities: np.ndarray
    classes: np.ndarray
    errors: dict[int, str]
    model_version: str
    predicted_at: float


def parse_micro_batch(records: Sequence[StreamRecord]) -> tuple[StreamBatch | None, list[DeadLetter]]:
    """The rows of a micro-batch parsed in one call, each keeping its source and event time.

    When the batch holds a bad row, the parser's output no longer tells which rows survived, so
    the batch is parsed again row by row: slower, but only for batches with bad rows in them.
    """
    rows, dead = parse_jsonl([r.payload for r in records], "stream")
    if not dead:
        sources = [r.source for r in records]
        times = np.fromiter((r.event_time for r in records), np.float64, len(records))
        return StreamBatch(ParsedBatch(rows.keys, rows.images, sources), times), []
    parts: list[ParsedBatch] = []
    times_kept: list[float] = []
    dead = []
    for record in records:
        one, bad = parse_jsonl([record.payload], record.source)
        dead += bad
        if len(one):
            parts.append(one)
            times_kept.append(record.event_time)
    if not parts:
        return None, dead
    return StreamBatch(ParsedBatch.concat(parts), np.asarray(times_kept, np.float64)), dead


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
