"""Row accounting: Beam counters every pipeline increments, and the run summary built from them.

Every row read is counted once where it is read, and once more where it ends: predicted, or
rejected with a reason. Both ends are counted in the same fused steps that write the outputs, so
`rows_read == rows_predicted + rows_rejected` holds for any runner that reports committed metrics.
A row sent to a sink that can refuse single rows (BigQuery streaming inserts) is counted as
predicted when sent and taken back, as a dead letter, if the sink refuses it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter

__all__ = [
    "LATENCY_MS",
    "NAMESPACE",
    "ProgressSnapshot",
    "ROWS_PREDICTED",
    "ROWS_READ",
    "Summary",
    "count_precision_check",
    "count_predicted",
    "count_read",
    "count_refused_by_sink",
    "count_rejected",
    "local_counters",
    "local_latency",
    "progress",
    "query_counters",
    "record_latency",
    "start_local_counts",
    "start_progress",
]

NAMESPACE = "mnistkit"
ROWS_READ = "rows_read"
ROWS_PREDICTED = "rows_predicted"
# A distribution of end-to-end stream latencies (event time → prediction), in ms.
LATENCY_MS = "latency_ms"
_REJECTED_PREFIX = "rejected_"
# A reduced-precision run's check against f32: rows scored both ways, and those whose class agreed.
_CHECKED_ROWS = "precision_check_rows"
_AGREEING_ROWS = "precision_check_agreeing"


def count_read(n: int, nbytes: int = 0) -> None:
    """`n` rows read (`nbytes` of input consumed with them, for the progress display)."""
    Metrics.counter(NAMESPACE, ROWS_READ).inc(n)
    _TALLY.add(ROWS_READ, n)
    _PROGRESS.add(n, nbytes)


def count_predicted(n: int) -> None:
    Metrics.counter(NAMESPACE, ROWS_PREDICTED).inc(n)
    _TALLY.add(ROWS_PREDICTED, n)


def count_refused_by_sink(n: int) -> None:
    """`n` rows counted as predicted when they were sent, which the sink then refused: they are
    predicted no longer (their dead letters count them as rejected)."""
    Metrics.counter(NAMESPACE, ROWS_PREDICTED).dec(n)
    _TALLY.add(ROWS_PREDICTED, -n)


def count_rejected(reason: str) -> None:
    Metrics.counter(NAMESPACE, _REJECTED_PREFIX + reason).inc()
    _TALLY.add(_REJECTED_PREFIX + reason, 1)


def count_precision_check(rows: int, agreeing: int) -> None:
    """`rows` scored at the run's precision and in f32, `agreeing` of them with the same class."""
    Metrics.counter(NAMESPACE, _CHECKED_ROWS).inc(rows)
    Metrics.counter(NAMESPACE, _AGREEING_ROWS).inc(agreeing)


def record_latency(ms: float) -> None:
    Metrics.distribution(NAMESPACE, LATENCY_MS).update(int(ms))
    _TALLY.latency(int(ms))


class _Tally:
    """The same counts as the Beam metrics, kept in this process.

    Beam's BundleBasedDirectRunner (the local runner of Pub/Sub streams) reuses a DoFn's metrics
    container from its first bundle in streaming mode, so every later bundle's counter updates
    are lost: 10 of 50 rows counted in a TestStream of five bundles. That runner runs every step
    in this process, so the streams it runs are counted here instead (see local_counters).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._counters: dict[str, int] = {}
            self._latency: list[int] = []  # count, sum, min, max

    def add(self, name: str, n: int) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + n

    def latency(self, ms: int) -> None:
        with self._lock:
            if self._latency:
                count, total, low, high = self._latency
                self._latency = [count + 1, total + ms, min(low, ms), max(high, ms)]
            else:
                self._latency = [1, ms, ms, ms]

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counters)

    def latency_summary(self) -> dict[str, float]:
        with self._lock:
            if not self._latency:
                return {}
            count, total, low, high = self._latency
            return {"min": low, "mean": round(total / count, 1), "max": high, "count": count}


_TALLY = _Tally()


def start_local_counts() -> None:
    """Start counting this process's rows afresh (before a run whose counts local_counters reads)."""
    _TALLY.reset()


def local_counters() -> dict[str, int]:
    """The counters of this process's runs since start_local_counts, as query_counters names them."""
    return _TALLY.counters()


def local_latency() -> dict[str, float]:
    """min/mean/max/count of the latencies recorded in this process since start_local_counts."""
    return _TALLY.latency_summary()


@dataclass(frozen=True)
class ProgressSnapshot:
    """How far the input has been read, as this process sees it."""

    rows: int
    bytes: int
    total_bytes: int
    elapsed_s: float

    @property
    def fraction(self) -> float | None:
        return min(self.bytes / self.total_bytes, 1.0) if self.total_bytes else None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the rate so far, judged by bytes (the row total is unknown up front)."""
        fraction = self.fraction
        if not fraction or fraction >= 1:
            return None
        return self.elapsed_s * (1 - fraction) / fraction


class _Progress:
    """Rows and bytes read by the workers of this process: the local runner's threads report here,
    so a display thread can follow a run that Beam's metrics only report once it has finished.
    Workers in other processes (multi_processing, Dataflow) are not seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset(0)

    def reset(self, total_bytes: int) -> None:
        with self._lock:
            self._rows = self._bytes = 0
            self._total = total_bytes
            self._started = time.monotonic()

    def add(self, rows: int, nbytes: int) -> None:
        with self._lock:
            self._rows += rows
            self._bytes += nbytes

    def snapshot(self) -> ProgressSnapshot:
        with self._lock:
            return ProgressSnapshot(self._rows, self._bytes, self._total, time.monotonic() - self._started)


_PROGRESS = _Progress()


def start_progress(total_bytes: int) -> None:
    """Start following a run that reads `total_bytes` of input."""
    _PROGRESS.reset(total_bytes)


def progress() -> ProgressSnapshot:
    return _PROGRESS.snapshot()


def query_counters(result: Any, committed: bool = True) -> dict[str, int]:
    """The mnistkit counters of a pipeline, summed over steps: committed values where the runner
    has them (a finished run), else, or when `committed` is False (a running one), attempted ones."""
    totals: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        try:
            value = counter.committed if committed else counter.attempted
        except NotImplementedError:
            value = counter.attempted
        name = counter.key.metric.name
        totals[name] = totals.get(name, 0) + (value or 0)
    return totals


@dataclass
class Summary:
    """What a run did; written as `<output>-summary.json` and printed by the CLI."""

    input: str
    output: str
    model: str
    format: str
    rows_read: int
    rows_predicted: int
    rejected: dict[str, int]
    wall_time_s: float
    outputs: dict[str, str] = field(default_factory=dict)
    # The inference runtime and precision that scored the rows; for a reduced precision, its
    # class agreement with f32 on the first batch each worker scored (rows checked, fraction).
    runtime: str = ""
    precision: str = "f32"
    precision_check: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_counters(cls, counters: dict[str, int], **fields: Any) -> Summary:
        rejected = {
            name[len(_REJECTED_PREFIX) :]: value
            for name, value in sorted(counters.items())
            if name.startswith(_REJECTED_PREFIX) and value
        }
        checked = counters.get(_CHECKED_ROWS, 0)
        if checked:
            agreement = round(counters.get(_AGREEING_ROWS, 0) / checked, 6)
            fields.setdefault("precision_check", {"rows": checked, "class_agreement_with_f32": agreement})
        return cls(
            rows_read=counters.get(ROWS_READ, 0),
            rows_predicted=counters.get(ROWS_PREDICTED, 0),
            rejected=rejected,
            **fields,
        )

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected.values())

    @property
    def reconciled(self) -> bool:
        return self.rows_read == self.rows_predicted + self.rows_rejected

    @property
    def error_rate(self) -> float:
        return self.rows_rejected / self.rows_read if self.rows_read else 0.0

    @property
    def rows_per_s(self) -> float:
        return self.rows_read / self.wall_time_s if self.wall_time_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            rows_rejected=self.rows_rejected,
            error_rate=round(self.error_rate, 6),
            rows_per_s=round(self.rows_per_s, 1),
            reconciled=self.reconciled,
            wall_time_s=round(self.wall_time_s, 3),
        )
        return out

    def write(self, path: str) -> None:
        """Write the summary where readers only ever see a whole one (a temp name, then a rename)."""
        data = json.dumps(self.to_dict(), indent=2).encode() + b"\n"
        temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with FileSystems.create(
                temporary, mime_type="application/json", compression_type=CompressionTypes.UNCOMPRESSED
            ) as f:
                f.write(data)
            # os.rename replaces a local file atomically; a GCS rename is a copy over the old object.
            FileSystems.rename([temporary], [path])
        except BaseException:
            # A full disk fails the write or the close: leave the previous summary, not a stray temp.
            if FileSystems.exists(temporary):
                FileSystems.delete([temporary])
            raise
