"""Micro-batch parsing (each row keeps its own source and event time) and output rows."""

from __future__ import annotations

import numpy as np
from streamtest import payload

from mnistkit.pipeline.io.streams import output_rows
from mnistkit.pipeline.rows import ParsedBatch, Reason, ScoredBatch, StreamBatch, StreamRecord
from mnistkit.pipeline.streaming.pipeline import parse_micro_batch


def records(*items: tuple[bytes, float]) -> list[StreamRecord]:
    return [StreamRecord(data, f"src{i}", t) for i, (data, t) in enumerate(items)]


def test_a_clean_micro_batch_keeps_every_rows_source_and_time():
    batch, dead = parse_micro_batch(records((payload(5), 1.5), (payload(6), 2.5), (payload(7), 3.5)))
    assert dead == []
    assert batch.rows.keys.tolist() == [5, 6, 7]
    assert batch.rows.sources == ["src0", "src1", "src2"]
    assert batch.event_times.tolist() == [1.5, 2.5, 3.5]
    assert np.allclose(batch.rows.images, 128 / 255)


def test_bad_rows_leave_the_good_ones_aligned_with_their_times():
    batch, dead = parse_micro_batch(
        records((b"{", 1.0), (payload(6), 2.0), (b'{"key": 1, "image": []}', 3.0), (payload(8), 4.0))
    )
    assert batch.rows.keys.tolist() == [6, 8]
    assert batch.event_times.tolist() == [2.0, 4.0]
    assert batch.rows.sources == ["src1", "src3"]
    assert [(d.source, d.reason) for d in dead] == [
        ("src0", Reason.INVALID_JSON),
        ("src2", Reason.WRONG_VALUE_COUNT),
    ]


def test_a_micro_batch_of_bad_rows_only_yields_dead_letters():
    batch, dead = parse_micro_batch(records((b"", 1.0), (b"nope", 2.0)))
    assert batch is None
    assert [d.reason for d in dead] == [Reason.EMPTY_LINE, Reason.INVALID_JSON]


def test_output_rows_carry_timing_fields_and_model_failures_become_dead_letters():
    rows = ParsedBatch(np.array([10, 11, 12]), np.full((3, 784), 0.5, np.float32), ["a", "b", "c"])
    probabilities = np.tile(np.eye(10, dtype=np.float32)[[3]], (3, 1))
    scored = ScoredBatch(
        StreamBatch(rows, np.array([100.0, 100.5, 101.0])),
        probabilities,
        np.array([3, 3, 3]),
        {1: "ValueError: boom"},
        "1700000000",
        101.25,
    )
    out, dead = output_rows(scored)
    assert [r["key"] for r in out] == [10, 12]
    first = out[0]
    assert first["class"] == 3 and first["confidence"] == 1.0 and first["pred3"] == 1.0 and first["pred0"] == 0.0
    assert first["event_time"] == "1970-01-01T00:01:40.000+00:00"
    assert first["prediction_time"] == "1970-01-01T00:01:41.250+00:00"
    assert [r["latency_ms"] for r in out] == [1250.0, 250.0]
    assert {r["model_version"] for r in out} == {"1700000000"}
    assert [(d.source, d.reason, d.detail) for d in dead] == [("b", Reason.INFERENCE_ERROR, "ValueError: boom")]
    assert dead[0].raw.startswith("11:0.5,0.5")
