"""The watched-folder stream end to end, for real: rows written into a folder while the pipeline
runs (FnApiRunner), a new model exported mid-stream, and the stream stopping by itself."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from oracle import keras_probabilities, rolled_classes
from streamtest import read_outputs

from mnistkit.model_export.export import export_saved_model
from mnistkit.pipeline.inference.savedmodel import resolve_model
from mnistkit.pipeline.io.streams import StreamInputError
from mnistkit.pipeline.streaming.pipeline import StreamConfig, run_stream
from mnistkit.pipeline.streaming.simulate import FolderSink, dataset_rows

# The stream stops once no file has arrived for this long; the test's longest pause (a model
# export, mid-stream) is well below it.
IDLE_STOP = 8.0
DEADLINE = 90.0


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_rows_dropped_in_a_folder_are_scored_as_they_arrive_and_a_new_model_takes_over(
    exported_model, trained_model, mnist_test_set, tmp_path
):
    models, incoming, out = tmp_path / "models", tmp_path / "incoming", tmp_path / "out"
    shutil.copytree(exported_model, models)
    incoming.mkdir()
    first_version = Path(resolve_model(str(models)))
    images = mnist_test_set[0].reshape(-1, 784)
    config = StreamConfig(
        model=str(models),
        input=f"watch://{incoming}",
        output=str(out),
        max_batch=8,
        window_seconds=0.3,
        poll_seconds=0.2,
        model_check_seconds=0.2,
        idle=IDLE_STOP,
    )
    results = []
    stream = threading.Thread(target=lambda: results.append(run_stream(config)), daemon=True)
    stream.start()

    sink = FolderSink(str(incoming))
    before = list(dataset_rows(images[:40], 40, bad_every=20))
    sink.send(before[:10])
    wait_for(lambda: len(read_outputs(out).rows) == 10, "the stream to start")
    for start in range(10, 40, 10):
        sink.send(before[start : start + 10])
        time.sleep(0.1)
    wait_for(lambda: len(read_outputs(out).rows) == 38, "the rows sent before the export")

    # v2 has other weights (the output classes rolled by one), so every prediction changes at the swap.
    second_version = export_saved_model(
        rolled_classes(trained_model.model), models, {"note": "v2"}, int(first_version.name) + 1
    )
    after = list(dataset_rows(images[40:60], 20, key_start=40))
    time.sleep(0.5)  # a model check is due by now; the next micro-batch loads the new version
    sink.send(after[:10])
    sink.send(after[10:])
    stream.join(IDLE_STOP + DEADLINE)
    assert not stream.is_alive(), "the stream did not stop when the folder went idle"

    outputs = read_outputs(out)
    rows = {row["key"]: row for row in outputs.rows}
    assert len(outputs.rows) == len(rows) == 58  # every good row exactly once
    assert sorted(rows) == [k for k in range(60) if k not in (19, 39)]
    # One dead letter per bad row; errors files are named by their rows' content, not in row order.
    letters = sorted((d["reason"], d["raw"][:10]) for d in outputs.dead)
    assert letters == [("wrong_value_count", '{"key": 19'), ("wrong_value_count", '{"key": 39')]
    assert {rows[k]["model_version"] for k in range(40) if k in rows} == {first_version.name}
    assert {rows[k]["model_version"] for k in range(40, 60)} == {second_version.name}

    # Predictions are each version's own (Keras on its model.keras), so a swap that changed only
    # the label would fail here: v2's classes are v1's plus one.
    keys = np.array(sorted(rows))
    by_version = {first_version.name: first_version, second_version.name: second_version}
    for name, version in by_version.items():
        served = [k for k in keys if rows[k]["model_version"] == name]
        probabilities = keras_probabilities(version, images[served])
        assert [rows[k]["class"] for k in served] == probabilities.argmax(axis=1).tolist()
        assert np.allclose([[rows[k][f"pred{d}"] for d in range(10)] for k in served], probabilities, atol=1e-5)
    v1_classes = keras_probabilities(first_version, images[40:60]).argmax(axis=1)
    assert [rows[k]["class"] for k in range(40, 60)] == ((v1_classes + 1) % 10).tolist()
    for row in rows.values():
        event = datetime.fromisoformat(row["event_time"]).timestamp()
        predicted = datetime.fromisoformat(row["prediction_time"]).timestamp()
        assert 0 <= row["latency_ms"] == pytest.approx((predicted - event) * 1000, abs=1.0)

    (result,) = results
    summary = result.summary
    assert (summary.rows_read, summary.rows_predicted, summary.rejected) == (60, 58, {"wrong_value_count": 2})
    assert summary.reconciled
    assert result.latency_ms["count"] == 58 and result.latency_ms["min"] <= result.latency_ms["max"]


def test_a_missing_folder_or_an_output_inside_the_watched_one_is_refused(exported_model, tmp_path):
    with pytest.raises(StreamInputError, match="no such folder"):
        run_stream(StreamConfig(str(exported_model), f"watch://{tmp_path / 'nope'}", str(tmp_path / "out")))
    with pytest.raises(StreamInputError, match="read its own outputs"):
        run_stream(StreamConfig(str(exported_model), f"watch://{tmp_path}", str(tmp_path / "out")))
