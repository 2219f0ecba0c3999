"""Pub/Sub streams for real, on Google's Pub/Sub emulator: `simulate-stream` publishes, `stream`
reads the subscription (BundleBasedDirectRunner), and the rows land in a folder or, by streaming
inserts, in a BigQuery table on bqemulator."""

from __future__ import annotations

import time
from datetime import datetime

import numpy as np
import pytest
from click.testing import CliRunner
from emulators import DATASET, PROJECT
from oracle import keras_probabilities
from streamtest import payload, read_outputs

from mnistkit.cli.main import cli
from mnistkit.pipeline.inference.savedmodel import resolve_model
from mnistkit.pipeline.streaming.pipeline import StreamConfig, start_stream
from mnistkit.pipeline.streaming.simulate import PubSubSink, dataset_rows, simulate

DEADLINE = 120.0


def _pull_nothing(subscription: str) -> bool:
    """True when the subscription has nothing left to deliver (every message was acked)."""
    from google.api_core.exceptions import DeadlineExceeded
    from google.cloud import pubsub_v1

    with pubsub_v1.SubscriberClient() as subscriber:
        try:
            response = subscriber.pull(subscription=subscription, max_messages=10, timeout=3)
        except DeadlineExceeded:
            return True
    return not response.received_messages


def _assert_predictions_are_the_models(rows: list[dict], model: str, images: np.ndarray) -> None:
    version = resolve_model(model)
    keys = [row["key"] for row in rows]
    probabilities = keras_probabilities(version, images[keys])
    assert [row["class"] for row in rows] == probabilities.argmax(axis=1).tolist()
    got = np.asarray([[row[f"pred{d}"] for d in range(10)] for row in rows])
    np.testing.assert_allclose(got, probabilities, atol=1e-6)
    assert {row["model_version"] for row in rows} == {version.rsplit("/", 1)[-1]}


def test_simulated_rows_on_pubsub_are_scored_once_each_and_bad_messages_dead_lettered(
    pubsub, exported_model, mnist_sample_dir, mnist_test_set, tmp_path
):
    from google.cloud import pubsub_v1

    images = mnist_test_set[0].reshape(-1, 784)
    topic, subscription = pubsub.topic_with_subscription(ack_deadline_seconds=10)
    before = time.time()
    simulate_args = ["simulate-stream", "--to", f"pubsub://{topic}", "--rate", "400", "--count", "30"]
    result = CliRunner().invoke(cli, [*simulate_args, "--bad-every", "10", "--data-dir", str(mnist_sample_dir)])
    assert result.exit_code == 0, result.output
    assert "Sent 30 rows" in result.output
    # Attributes are not part of the row: a row with some is scored, a message of attributes only
    # (empty data) is a dead letter named by its message id.
    publisher = pubsub_v1.PublisherClient()
    publisher.publish(topic, payload(30, images[30]), origin="scanner-7").result()
    empty_id = publisher.publish(topic, b"", origin="scanner-7").result()
    published = time.time()

    # One message goes to a consumer that dies before acking it: Pub/Sub redelivers it to the stream.
    with pubsub_v1.SubscriberClient() as subscriber:
        (received,) = subscriber.pull(subscription=subscription, max_messages=1, timeout=10).received_messages
        subscriber.modify_ack_deadline(subscription=subscription, ack_ids=[received.ack_id], ack_deadline_seconds=0)
    redelivered_key = int(received.message.data.split(b",", 1)[0].split(b":")[1])

    # The stream runs past the ack deadline: a message it failed to ack would come back to it.
    out, errors = tmp_path / "out", tmp_path / "errors"
    stream_args = ["stream", "--model", str(exported_model), "--input", f"pubsub://{subscription}"]
    options = ["--output", str(out), "--errors-output", str(errors), "--max-batch", "8", "--window-seconds", "0.5"]
    result = CliRunner().invoke(cli, [*stream_args, *options, "--duration", "20"])
    assert result.exit_code == 0, result.output
    rows = read_outputs(out).rows
    keys = [row["key"] for row in rows]
    assert sorted(keys) == [k for k in range(31) if k % 10 != 9]  # each good row exactly once
    assert keys.count(redelivered_key) == (0 if redelivered_key % 10 == 9 else 1)
    _assert_predictions_are_the_models(rows, str(exported_model), images)
    for row in rows:  # event time is the publish time
        assert before - 1 <= datetime.fromisoformat(row["event_time"]).timestamp() <= published + 1

    dead = read_outputs(errors).dead
    wrong = sorted((d for d in dead if d["reason"] == "wrong_value_count"), key=lambda d: d["raw"])
    assert [d["raw"][:11] for d in wrong] == ['{"key": 19,', '{"key": 29,', '{"key": 9, ']
    assert all(d["source"].startswith("pubsub:") for d in dead)
    (empty,) = [d for d in dead if d["source"] == f"pubsub:{empty_id}"]
    assert empty["raw"] == "" and empty["reason"] != "wrong_value_count"
    assert len(dead) == 4
    assert _pull_nothing(subscription)
    # What the run reports must be what it wrote: 32 messages read, 28 predicted, 4 rejected.
    assert "Predicted 28 of 32 rows" in result.output, result.output


def _wait_for_rows(client, table: str, count: int) -> list[dict]:
    deadline = time.monotonic() + DEADLINE
    from google.api_core.exceptions import NotFound

    while True:
        try:
            rows = [dict(row) for row in client.query(f"SELECT * FROM `{table}` ORDER BY key").result()]
        except NotFound:  # the sink creates the table with its first rows
            rows = []
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def test_a_pubsub_stream_into_bigquery_streams_every_row_into_the_table(
    pubsub, bigquery, exported_model, mnist_test_set, tmp_path
):
    images = mnist_test_set[0].reshape(-1, 784)
    topic, subscription = pubsub.topic_with_subscription()
    simulate(dataset_rows(images[:20], 20, bad_every=10), 20, 1000, PubSubSink(topic))
    table = f"{PROJECT}.{DATASET}.stream_predictions"
    errors = tmp_path / "errors"
    config = StreamConfig(
        model=str(exported_model),
        input=f"pubsub://{subscription}",
        output=f"bq://{table}",
        errors_output=str(errors),
        max_batch=8,
        window_seconds=0.5,
    )
    run = start_stream(config)
    try:
        rows = _wait_for_rows(bigquery.client(), table, 18)
        deadline = time.monotonic() + DEADLINE
        while len(read_outputs(errors).dead) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        run.result.cancel()

    assert [row["key"] for row in rows] == [k for k in range(20) if k % 10 != 9]
    _assert_predictions_are_the_models(rows, str(exported_model), images)
    for row in rows:
        assert row["event_time"] <= row["prediction_time"]
        latency = (row["prediction_time"] - row["event_time"]).total_seconds() * 1000
        assert row["latency_ms"] == pytest.approx(latency, abs=1.0)
    assert sorted(d["raw"][:11] for d in read_outputs(errors).dead) == ['{"key": 19,', '{"key": 9, ']
