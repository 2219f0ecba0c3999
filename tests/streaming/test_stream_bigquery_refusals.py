"""A Pub/Sub stream into a BigQuery table that refuses its rows, on the emulators: every refused
row is a `sink_refused` dead letter with BigQuery's error, and the run's counts reconcile."""

from __future__ import annotations

import re
import time

from emulators import DATASET, PROJECT
from streamtest import read_outputs

from mnistkit.pipeline import accounting
from mnistkit.pipeline.accounting import Summary
from mnistkit.pipeline.io.streams import STREAM_PREDICTIONS_SCHEMA
from mnistkit.pipeline.streaming.pipeline import StreamConfig, start_stream
from mnistkit.pipeline.streaming.simulate import PubSubSink, dataset_rows, simulate


def test_rows_a_stream_table_refuses_are_dead_letters_and_counts_reconcile(
    pubsub, bigquery, exported_model, mnist_test_set, tmp_path
):
    from google.cloud import bigquery as bq

    images = mnist_test_set[0].reshape(-1, 784)
    topic, subscription = pubsub.topic_with_subscription()
    simulate(dataset_rows(images[:20], 20, bad_every=10), 20, 1000, PubSubSink(topic))
    table = f"{PROJECT}.{DATASET}.refusing_stream_predictions"
    # A table whose `confidence` column is BYTES: no number the stream writes fits it.
    fields = [{**f, "type": "BYTES"} if f["name"] == "confidence" else f for f in STREAM_PREDICTIONS_SCHEMA["fields"]]
    client = bigquery.client()
    client.create_table(bq.Table(table, schema=[bq.SchemaField(f["name"], f["type"], mode=f["mode"]) for f in fields]))
    errors = tmp_path / "errors"
    config = StreamConfig(
        model=str(exported_model),
        input=f"pubsub://{subscription}",
        output=f"bq://{table}",
        errors_output=str(errors),
        max_batch=8,
        window_seconds=0.5,
    )
    # Counted in this process, as run_stream counts a local Pub/Sub stream (accounting._Tally).
    accounting.start_local_counts()
    run = start_stream(config)
    try:
        deadline = time.monotonic() + 120
        while len(read_outputs(errors).dead) < 20 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        run.result.cancel()

    dead = read_outputs(errors).dead
    refused = sorted(int(re.match(r'\{"key": (\d+),', d["raw"])[1]) for d in dead if d["reason"] == "sink_refused")
    assert refused == [k for k in range(20) if k % 10 != 9]
    assert all(d["detail"].startswith("invalid:") for d in dead if d["reason"] == "sink_refused")
    assert sorted(d["reason"] for d in dead if d["reason"] != "sink_refused") == ["wrong_value_count"] * 2
    assert list(client.query(f"SELECT key FROM `{table}`").result()) == []
    summary = Summary.from_counters(
        accounting.local_counters(), input=config.input, output=config.output, model="", format="", wall_time_s=0
    )
    assert summary.rows_read == 20 and summary.rows_predicted == 0, summary.to_dict()
    assert summary.rejected == {"sink_refused": 18, "wrong_value_count": 2} and summary.reconciled
