"""The streaming pipeline's logic under TestStream (BundleBasedDirectRunner, the runner TestStream
needs): micro-batch bounds, late data, dead letters and the timing fields of every row."""

from __future__ import annotations

import time
from datetime import datetime

import numpy as np
import pytest
from apache_beam.testing.test_stream import TestStream as EventStream
from oracle import keras_probabilities
from streamtest import arrival, payload, run_test_stream

from mnistkit.pipeline.inference.savedmodel import resolve_model

WINDOW = 2.0


@pytest.fixture(scope="module")
def model(exported_model) -> str:
    return str(exported_model)


def test_a_batch_leaves_when_full(model, tmp_path):
    stream = EventStream().advance_watermark_to(0).add_elements([arrival(k, 1 + k / 10) for k in range(7)])
    out = run_test_stream(stream.advance_watermark_to_infinity(), model, tmp_path, max_batch=3, window=WINDOW)
    # No processing time passes: only the count closes a batch, and the end of the stream the last.
    assert out.keys() == [[0, 1, 2], [3, 4, 5], [6]]


def test_a_batch_leaves_when_its_first_row_has_waited_window_seconds(model, tmp_path):
    stream = (
        EventStream()
        .advance_watermark_to(0)
        .add_elements([arrival(0, 1.0)])
        .advance_processing_time(WINDOW / 2)  # not yet due: the next row joins the batch
        .add_elements([arrival(1, 1.5)])
        .advance_processing_time(WINDOW / 2)  # due: [0, 1] leaves before it is full
        .add_elements([arrival(2, 2.0)])
        .advance_watermark_to_infinity()
    )
    out = run_test_stream(stream, model, tmp_path, max_batch=3, window=WINDOW)
    assert out.keys() == [[0, 1], [2]]


def test_max_batch_one_scores_every_row_on_its_own(model, tmp_path):
    stream = EventStream().advance_watermark_to(0).add_elements([arrival(k, 1.0 + k) for k in range(4)])
    out = run_test_stream(stream.advance_watermark_to_infinity(), model, tmp_path, max_batch=1, window=WINDOW)
    assert out.keys() == [[0], [1], [2], [3]]


def test_late_rows_are_scored_with_their_own_event_time(model, tmp_path):
    stream = (
        EventStream()
        .advance_watermark_to(0)
        .add_elements([arrival(1, 50.0)])
        .advance_watermark_to(1000)  # every window up to t=1000 s has closed...
        .add_elements([arrival(2, 10.0)])  # ...and then a row from t=10 s arrives
        .advance_watermark_to_infinity()
    )
    out = run_test_stream(stream, model, tmp_path, max_batch=5, window=WINDOW)
    by_key = {row["key"]: row for row in out.rows}
    assert sorted(by_key) == [1, 2]
    assert by_key[2]["event_time"] == "1970-01-01T00:00:10.000+00:00"


def test_every_row_carries_event_time_prediction_time_latency_and_model_version(model, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 784), dtype=np.uint8)
    stream = (
        EventStream()
        .advance_watermark_to(0)
        .add_elements([arrival(payload(k, images[k]), 100.0 + k * 0.25, f"m{k}") for k in range(5)])
        .advance_watermark_to_infinity()
    )
    started = time.time()
    out = run_test_stream(stream, model, tmp_path, max_batch=5, window=WINDOW)
    finished = time.time()
    version = resolve_model(model)
    probabilities = keras_probabilities(version, images)
    assert [row["key"] for row in out.rows] == [0, 1, 2, 3, 4]
    for row in out.rows:
        event = datetime.fromisoformat(row["event_time"]).timestamp()
        predicted = datetime.fromisoformat(row["prediction_time"]).timestamp()
        assert event == 100.0 + row["key"] * 0.25
        assert started - 0.001 <= predicted <= finished + 0.001
        assert row["latency_ms"] == pytest.approx((predicted - event) * 1000, abs=1.0)
        assert row["model_version"] == version.rsplit("/", 1)[-1]
        assert row["class"] == probabilities[row["key"]].argmax()
        assert [row[f"pred{d}"] for d in range(10)] == pytest.approx(probabilities[row["key"]].tolist(), abs=1e-5)
        assert row["confidence"] == max(row[f"pred{d}"] for d in range(10))


def test_bad_rows_go_to_dead_letters_and_their_batch_mates_keep_their_own_times(model, tmp_path):
    bad = {
        "bad:json": b'{"key": 7, "image": [0.5,',
        "bad:count": b'{"key": 8, "image": [0.5, 0.5]}',
        "bad:key": b'{"image": [' + b",".join([b"0.5"] * 784) + b"]}",
        "bad:range": b'{"key": 9, "image": [' + b",".join([b"2.0"] * 784) + b"]}",
        "bad:empty": b"",
    }
    arrivals = [arrival(0, 1.0, "good:0")]
    arrivals += [arrival(raw, 2.0 + i, source) for i, (source, raw) in enumerate(bad.items())]
    arrivals += [arrival(1, 9.0, "good:1")]
    stream = EventStream().advance_watermark_to(0).add_elements(arrivals).advance_watermark_to_infinity()
    out = run_test_stream(stream, model, tmp_path, max_batch=10, window=WINDOW)
    assert out.keys() == [[0, 1]]
    assert [row["event_time"][17:23] for row in out.rows] == ["01.000", "09.000"]
    reasons = {letter["source"]: letter["reason"] for letter in out.dead}
    assert reasons == {
        "bad:json": "invalid_json",
        "bad:count": "wrong_value_count",
        "bad:key": "missing_key",
        "bad:range": "out_of_range",
        "bad:empty": "empty_line",
    }
    assert all(letter["raw"] == bad[letter["source"]].decode()[:200] for letter in out.dead)
