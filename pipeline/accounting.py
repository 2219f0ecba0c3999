"""Row accounting: Beam counters every pipeline increments, and the run summary built from them.

Every row read is counted once where it is read, and once more where it ends: predicted, or
rejected with a reason. Both ends are counted in the same fused steps that write the outputs, so
`rows_read == rows_predicted + rows_rejected` holds for any runner that reports committed metrics.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter

NAMESPACE = "mnistkit"
ROWS_READ = "rows_read"
ROWS_PREDICTED = "rows_predicted"
_REJECTED_PREFIX = "rejected_"


def count_read(n: int) -> None:
    Metrics.counter(NAMESPACE, ROWS_READ).inc(n)


def count_predicted(n: int) -> None:
    Metrics.counter(NAMESPACE, ROWS_PREDICTED).inc(n)


def count_rejected(reason: str) -> None:
    Metrics.counter(NAMESPACE, _REJECTED_PREFIX + reason).inc()


def query_counters(result: Any) -> dict[str, int]:
    """The mnistkit counters of a finished pipeline, summed over steps (committed where supported)."""
    totals: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        try:
            value = counter.committed
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

    @classmethod
    def from_counters(cls, counters: dict[str, int], **fields: Any) -> Summary:
        rejected = {
            name[len(_REJECTED_PREFIX) :]: value
            for name, value in sorted(counters.items())
            if name.startswith(_REJECTED_PREFIX) and value
        }
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
        with FileSystems.create(
            path, mime_type="application/json", compression_type=CompressionTypes.UNCOMPRESSED
        ) as f:
            f.write(json.dumps(self.to_dict(), indent=2).encode() + b"\n")
