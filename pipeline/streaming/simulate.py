"""`simulate-stream`: send dataset rows at a fixed rate to a Pub/Sub topic or into a watched folder.

Row i is due `i / rate` seconds after the start and is sent no earlier. Rows that fall due
together leave together: one Pub/Sub publish burst, or one file (so a folder gets at most
`1 / min_send_seconds` files a second, whatever the rate). A file is written under a hidden name
and renamed into place, so a watcher never reads half of it, and its last-modified time, the
event time the stream reads, is the moment its rows arrived.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from mnistkit.pipeline.io.formats import encode_jsonl
from mnistkit.pipeline.io.streams import PUBSUB, WATCH, StreamInputError, parse_input

__all__ = [
    "BAD_ROW",
    "FolderSink",
    "PubSubSink",
    "RowSink",
    "SimulationResult",
    "dataset_rows",
    "open_sink",
    "simulate",
]

# A row the stream must reject (3 values instead of 784): what --bad-every sends.
BAD_ROW = b'{"key": %d, "image": [0.0, 0.5, 1.0]}'


class RowSink(Protocol):
    def send(self, rows: Sequence[bytes]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SimulationResult:
    rows: int
    sends: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def dataset_rows(pixels: np.ndarray, count: int, key_start: int = 0, bad_every: int | None = None) -> Iterator[bytes]:
    """`count` JSON rows cycling over uint8 images [n, 784]; keys count up from `key_start`.

    Every `bad_every`-th row (if set) is a malformed one, for dead-letter demos.
    """
    pixels = pixels.reshape(len(pixels), -1)
    for start in range(0, count, len(pixels)):
        n = min(len(pixels), count - start)
        keys = np.arange(key_start + start, key_start + start + n, dtype=np.int64)
        for key, line in zip(keys.tolist(), encode_jsonl(keys, pixels[:n]).splitlines(), strict=True):
            position = key - key_start + 1
            yield BAD_ROW % key if bad_every and position % bad_every == 0 else line


class FolderSink:
    """Each send becomes one file `rows-<run>-<sequence>.jsonl` in `folder` (local or gs://)."""

    def __init__(self, folder: str) -> None:
        self._folder = folder.rstrip("/")
        self._run = uuid.uuid4().hex[:8]
        self._sequence = itertools.count()
        if not FileSystems.exists(self._folder):
            FileSystems.mkdirs(self._folder)

    def send(self, rows: Sequence[bytes]) -> None:
        name = f"rows-{self._run}-{next(self._sequence):08d}.jsonl"
        hidden = FileSystems.join(self._folder, f".{name}")
        with FileSystems.create(hidden, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            f.write(b"\n".join(rows) + b"\n")
        FileSystems.rename([hidden], [FileSystems.join(self._folder, name)])

    def close(self) -> None:
        pass


class PubSubSink:
    """Each row becomes one message on `topic` (projects/P/topics/T); close waits for them all."""

    def __init__(self, topic: str, client: Any = None) -> None:
        if client is None:
            from google.cloud import pubsub_v1

            # Publish at once: the client's default 10 ms batching delay would add to the latency.
            client = pubsub_v1.PublisherClient(pubsub_v1.types.BatchSettings(max_latency=0.001))
        self._client = client
        self._topic = topic
        self._futures: list[Any] = []

    def send(self, rows: Sequence[bytes]) -> None:
        self._futures += [self._client.publish(self._topic, row) for row in rows]

    def close(self) -> None:
        for future in self._futures:
            future.result()


def open_sink(uri: str) -> RowSink:
    """A folder (`watch://DIR` or a plain path, local or gs://) or `pubsub://projects/P/topics/T`."""
    if uri.startswith(PUBSUB):
        target = parse_input(uri)
        if target.kind != "topic":
            raise StreamInputError(f"{uri}: publish to a topic (pubsub://projects/P/topics/T)")
        return PubSubSink(target.path)
    return FolderSink(uri[len(WATCH) :] if uri.startswith(WATCH) else uri)


def simulate(
    rows: Iterator[bytes],
    count: int,
    rate: float,
    sink: RowSink,
    min_send_seconds: float = 0.05,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> SimulationResult:
    """Send `count` rows to `sink` at `rate` rows/s, no send sooner than `min_send_seconds` after
    the previous one."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    started = clock()
    sent = sends = 0
    last_send = -min_send_seconds
    while sent < count:
        due = max(sent / rate, last_send + min_send_seconds)
        wait = started + due - clock()
        if wait > 0:
            sleep(wait)
        elapsed = clock() - started
        # Every row due by now goes out with this send (at least the one we waited for).
        ready = min(count, max(sent + 1, int(elapsed * rate) + 1))
        sink.send(list(itertools.islice(rows, ready - sent)))
        sends += 1
        sent = ready
        last_send = elapsed
    sink.close()
    return SimulationResult(sent, sends, clock() - started)
