"""The row model every part of the kit shares: raw, parsed and predicted batches, dead letters
and their reasons, and the records and micro-batches of a stream.

A pipeline moves *batches* of rows, never single rows: parsing, the model call and output
formatting are all vectorised over a batch, and Beam's per-element overhead is paid once per batch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

import numpy as np

from mnistkit.model_export.model import NUM_CLASSES, NUM_PIXELS

__all__ = [
    "DEAD_LETTERS",
    "DeadLetter",
    "MAX_RAW_CHARS",
    "ParsedBatch",
    "PredictionBatch",
    "RawBatch",
    "Reason",
    "ScoredBatch",
    "StreamBatch",
    "StreamRecord",
]

# Dead letters keep the start of the offending row only: enough to find and fix it, and a
# multi-megabyte garbage line must not make the errors file explode.
MAX_RAW_CHARS = 200
# The tag of every transform's dead-letter output (Beam's TaggedOutput name).
DEAD_LETTERS = "dead_letters"


class Reason(StrEnum):
    """Why a row was rejected; the values are the `reason` field of dead letters and summary keys."""

    EMPTY_LINE = "empty_line"
    OVERSIZED_LINE = "oversized_line"
    MISSING_KEY = "missing_key"
    BAD_KEY = "bad_key"
    WRONG_VALUE_COUNT = "wrong_value_count"
    NON_NUMERIC = "non_numeric"
    NON_FINITE = "non_finite"
    OUT_OF_RANGE = "out_of_range"
    INVALID_JSON = "invalid_json"
    BAD_TFRECORD = "bad_tfrecord"
    # A compressed file that is truncated or damaged: its rows before the damage were read.
    CORRUPT_FILE = "corrupt_file"
    UNKNOWN_FORMAT = "unknown_format"
    INFERENCE_ERROR = "inference_error"
    # The output (a BigQuery table) refused the predicted row; the detail is its error.
    SINK_REFUSED = "sink_refused"


@dataclass(frozen=True)
class DeadLetter:
    """One rejected row: where it came from, its (truncated) raw text, and why."""

    source: str
    raw: str
    reason: Reason
    detail: str = ""

    @classmethod
    def of(cls, source: str, raw: bytes | str, reason: Reason, detail: str = "") -> DeadLetter:
        if isinstance(raw, bytes):
            # backslashreplace keeps binary TFRecord payloads readable and lossless in a JSON string.
            raw = raw[: MAX_RAW_CHARS * 4].decode("utf-8", "backslashreplace")
        return cls(source, raw[:MAX_RAW_CHARS], reason, detail[:MAX_RAW_CHARS])

    def to_json(self) -> str:
        return json.dumps({"source": self.source, "reason": str(self.reason), "detail": self.detail, "raw": self.raw})


@dataclass(frozen=True)
class RawBatch:
    """Undecoded records of one source: text or JSON lines (no newline), or serialized tf.Examples."""

    source: str
    records: list[bytes]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def nbytes(self) -> int:
        """The bytes these records took in their file, about (one separator or frame each)."""
        return sum(map(len, self.records)) + len(self.records)


@dataclass(frozen=True)
class ParsedBatch:
    """Rows ready for the model: `keys` int64 [n], `images` float32 [n, 784] in 0..1, one source per row."""

    keys: np.ndarray
    images: np.ndarray
    sources: list[str]

    def __post_init__(self) -> None:
        if self.images.shape != (len(self.keys), NUM_PIXELS) or len(self.sources) != len(self.keys):
            raise ValueError(
                f"inconsistent batch: keys {self.keys.shape}, images {self.images.shape}, {len(self.sources)} sources"
            )

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        """The bytes of its arrays (sources are shared strings, not counted)."""
        return self.keys.nbytes + self.images.nbytes

    @classmethod
    def empty(cls) -> ParsedBatch:
        return cls(np.empty(0, np.int64), np.empty((0, NUM_PIXELS), np.float32), [])

    @classmethod
    def concat(cls, batches: Sequence[ParsedBatch]) -> ParsedBatch:
        if len(batches) == 1:
            return batches[0]
        if not batches:
            return cls.empty()
        return cls(
            np.concatenate([b.keys for b in batches]),
            np.concatenate([b.images for b in batches]),
            [s for b in batches for s in b.sources],
        )

    def slice(self, start: int, stop: int) -> ParsedBatch:
        return ParsedBatch(self.keys[start:stop], self.images[start:stop], self.sources[start:stop])

    def row_text(self, i: int) -> str:
        """Row `i` written back in the text format, for dead letters raised after parsing."""
        values = ",".join(f"{v:.9g}" for v in self.images[i][: MAX_RAW_CHARS // 2])
        return f"{self.keys[i]}:{values}"


# `%.9g` round-trips float32 exactly, and formatting all rows with one template is several
# times faster than json.dumps of a dict per row.
_PREDICTION_TEMPLATE = (
    '{"key": %d, "class": %d, "confidence": %.9g, ' + ", ".join(f'"pred{i}": %.9g' for i in range(NUM_CLASSES)) + "}"
)


@dataclass(frozen=True)
class PredictionBatch:
    """Model outputs for the rows of a ParsedBatch that succeeded, and dead letters for those that failed."""

    keys: np.ndarray
    classes: np.ndarray
    probabilities: np.ndarray
    failures: list[DeadLetter] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        """The bytes of its arrays and of its dead letters' raw records."""
        arrays = self.keys.nbytes + self.classes.nbytes + self.probabilities.nbytes
        return arrays + sum(len(letter.raw) for letter in self.failures)

    @property
    def confidences(self) -> np.ndarray:
        return self.probabilities[np.arange(len(self.keys)), self.classes]

    def to_json_lines(self) -> str:
        """All rows as JSON lines (no trailing newline): key, class, confidence, pred0..pred9."""
        floats = np.column_stack([self.confidences, self.probabilities]).tolist()
        return "\n".join(
            _PREDICTION_TEMPLATE % (key, cls, *values)
            for key, cls, values in zip(self.keys.tolist(), self.classes.tolist(), floats, strict=True)
        )


class StreamRecord(NamedTuple):
    """One arriving record: its raw payload in `format`, where it came from, its event time (epoch s)."""

    payload: bytes
    source: str
    event_time: float
    format: str = "jsonl"


@dataclass(frozen=True)
class StreamBatch:
    """Parsed rows of one micro-batch and, per row, its event time (seconds since the epoch)."""

    rows: ParsedBatch
    event_times: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def nbytes(self) -> int:
        return self.rows.nbytes + self.event_times.nbytes


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

    @property
    def nbytes(self) -> int:
        return self.batch.nbytes + self.probabilities.nbytes + self.classes.nbytes
