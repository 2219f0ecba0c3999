"""A streaming source that needs no cloud: new files in a folder (local or gs://), row by row.

Built on Beam's `Watch` transform (the polling splittable DoFn behind `fileio.MatchContinuously`),
with two things `MatchContinuously` does not offer:

- a stop policy: after a total duration, or once no new file has appeared for a while, so a
  local run, a test or a benchmark ends by itself and the pipeline drains cleanly;
- a poll that never runs more often than its interval. Dataflow honours the resume delay a
  polling DoFn asks for, but the local FnApiRunner resumes it at once, which would turn every
  poll loop into a busy loop listing the folder as fast as it can.

Each record of a new file becomes one `(payload, source, format)` element whose event time is
the file's last-modified time: the moment the row "arrived", like a Pub/Sub publish time. A
file is read exactly as `mnistkit predict` reads it: its format told by its name (text
`key:v1,...`, JSON lines, TFRecord, each possibly compressed), its records cut by the batch
pipeline's reader, so the same parsers judge them downstream. Files are
expected to appear atomically (written under a hidden name, then renamed, as `simulate-stream`
does; a GCS upload is atomic) and never to change afterwards; names starting with "." or "_"
are skipped.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import apache_beam as beam
from apache_beam import coders
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.watch import PollFn, PollResult, TerminationCondition, Watch
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from mnistkit.pipeline import accounting
from mnistkit.pipeline.io.files import FileRange, read_range
from mnistkit.pipeline.io.formats import FormatError, detect_format
from mnistkit.pipeline.rows import DEAD_LETTERS, DeadLetter, Reason

__all__ = [
    "StopPolicy",
    "WatchFolder",
    "folder_pattern",
]

# Lines read from a file per RawBatch; streamed files are small, this only bounds memory.
_READ_BATCH_ROWS = 1024


@dataclass(frozen=True)
class StopPolicy:
    """When a watcher stops polling: `duration` seconds after it started, or after `idle` seconds
    without a new file (counted from the start until the first file arrives); None = never."""

    duration: float | None = None
    idle: float | None = None


def folder_pattern(folder: str) -> str:
    """The glob of files to watch: `folder` itself when it holds a wildcard, else every file in it."""
    if any(c in folder for c in "*?["):
        return folder
    return FileSystems.join(folder.rstrip("/"), "*")


class _PollFiles(PollFn):
    """Lists the files matching the pattern, each timestamped with its last-modified time."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._last_poll = 0.0
        self._lock = threading.Lock()

    def __call__(self, pattern: str) -> PollResult:
        with self._lock:
            wait = self._last_poll + self._interval - time.time()
            if wait > 0:
                time.sleep(wait)
            previous, self._last_poll = self._last_poll, time.time()
        found = FileSystems.match([pattern])[0].metadata_list
        outputs = [
            TimestampedValue(m.path, Timestamp.of(m.last_updated_in_seconds))
            for m in found
            if not os.path.basename(m.path).startswith((".", "_"))
        ]
        # A file renamed into place since the previous poll was written after that poll began, so
        # its time is the watermark; an older file (copied with its mtime kept) is merely late,
        # and the scoring pipeline never drops late rows.
        return PollResult.incomplete(outputs).with_watermark(Timestamp.of(previous or self._last_poll))

    def default_output_coder(self) -> coders.Coder:
        return coders.StrUtf8Coder()


class _StopAfter(TerminationCondition):
    """Watch's per-input stop rule for a StopPolicy; state = (started, last new output)."""

    def __init__(self, policy: StopPolicy) -> None:
        self._policy = policy

    def for_new_input(self, now: Timestamp, element: str) -> tuple[Timestamp, Timestamp]:
        return now, now

    def on_seen_new_output(self, now: Timestamp, state: tuple[Timestamp, Timestamp]) -> tuple:
        return state[0], now

    def can_stop_polling(self, now: Timestamp, state: tuple[Timestamp, Timestamp]) -> bool:
        started, last_new = state
        duration, idle = self._policy.duration, self._policy.idle
        return (duration is not None and now - started >= Duration.of(duration)) or (
            idle is not None and now - last_new >= Duration.of(idle)
        )

    def state_coder(self) -> coders.Coder:
        return coders.TupleCoder([coders.TimestampCoder(), coders.TimestampCoder()])


def _file_records(path: str) -> Iterator[tuple[bytes, str, str] | beam.pvalue.TaggedOutput]:
    try:
        fmt = detect_format(path)
        if fmt == "idx":
            raise FormatError(f"{path} is an IDX file; convert it first (mnistkit convert)")
    except FormatError as exc:
        # The whole file is one dead letter: nothing in it can be read as rows.
        accounting.count_read(1)
        yield beam.pvalue.TaggedOutput(DEAD_LETTERS, DeadLetter.of(path, b"", Reason.UNKNOWN_FORMAT, str(exc)))
        return
    for item in read_range(FileRange(path), fmt, _READ_BATCH_ROWS):
        if isinstance(item, DeadLetter):
            accounting.count_read(1)
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, item)
        else:
            for record in item.records:
                yield record, path, fmt


class WatchFolder(beam.PTransform):
    """New files matching a pattern → `(record, path, format)` elements, timestamped by the file's mtime.

    Polls every `poll_seconds`; the output is unbounded until `stop` ends the polling. Files
    already present when the pipeline starts are read too (a restarted stream catches up).
    The main output holds the records; `DEAD_LETTERS` holds what cannot be cut into records
    (lines too long to be a row, corrupt TFRecord framing, files of no known format).
    """

    def __init__(self, pattern: str, poll_seconds: float = 1.0, stop: StopPolicy | None = None) -> None:
        super().__init__()
        if poll_seconds <= 0:
            raise ValueError("poll_seconds must be positive")
        self._pattern = pattern
        self._poll_seconds = poll_seconds
        self._stop = stop or StopPolicy()

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        never_stops = self._stop.duration is None and self._stop.idle is None
        return (
            pbegin
            | "Pattern" >> beam.Create([self._pattern])
            | "Poll"
            >> Watch(
                _PollFiles(self._poll_seconds),
                poll_interval=self._poll_seconds,
                termination=None if never_stops else _StopAfter(self._stop),
            )
            | "Path" >> beam.Map(lambda pattern_and_path: pattern_and_path[1])
            | "ReadRecords" >> beam.FlatMap(_file_records).with_outputs(DEAD_LETTERS, main="main")
        )
