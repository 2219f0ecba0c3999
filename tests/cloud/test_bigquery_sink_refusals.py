"""A predictions table that refuses rows, on bqemulator: each refused row is a `sink_refused` dead
letter carrying BigQuery's error, it is not counted as predicted, and the run reconciles."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from cloudtest import DATASET, PROJECT
from outputs import read_json_lines

from mnistkit.pipeline.batch import PredictConfig, run_predict
from mnistkit.pipeline.io.bigquery import PREDICTIONS_SCHEMA
from mnistkit.pipeline.io.formats import encode_text
from mnistkit.pipeline.runners import RunnerConfig

IN_PROCESS = RunnerConfig(workers=1, running_mode="in_memory")


def _create_table(client, name: str, fields: list[dict]) -> None:
    from google.cloud import bigquery

    schema = [bigquery.SchemaField(f["name"], f["type"], mode=f["mode"]) for f in fields]
    client.create_table(bigquery.Table(name, schema=schema))


def _with_type(column: str, type_: str) -> list[dict]:
    """The predictions table's columns, `column` declared `type_` instead."""
    return [{**f, "type": type_} if f["name"] == column else f for f in PREDICTIONS_SCHEMA["fields"]]


# Tables made for something else, whose columns cannot hold the kit's numbers. (bqemulator checks
# values against column types, not REQUIRED modes or unknown columns, which BigQuery also refuses.)
REFUSING = {"confidence-bytes": _with_type("confidence", "BYTES"), "key-bytes": _with_type("key", "BYTES")}


@pytest.mark.parametrize("fields", REFUSING.values(), ids=REFUSING.keys())
def test_rows_the_table_refuses_are_dead_letters_and_the_run_reconciles(
    bigquery, fields, exported_model, mnist_test_set, tmp_path
):
    images = mnist_test_set[0][:12].reshape(12, -1)
    source = tmp_path / "rows.txt"
    source.write_bytes(encode_text(np.arange(12), images) + b"12:not,a,row\n")
    table = f"{PROJECT}.{DATASET}.refusing_predictions"
    client = bigquery.client()
    _create_table(client, table, fields)
    config = PredictConfig(
        model=str(exported_model),
        input=str(source),
        output=f"bq://{table}",
        errors_output=str(tmp_path / "run"),
        runner=IN_PROCESS,
    )
    summary = run_predict(config)

    dead = list(read_json_lines(config.errors_pattern))
    # A dead letter's raw is the refused row's JSON (cut at 200 characters), key first.
    refused = sorted(int(re.match(r'\{"key": (\d+),', d["raw"])[1]) for d in dead if d["reason"] == "sink_refused")
    assert refused == list(range(12))
    assert all(
        d["source"] == f"bq://{table}" and d["detail"].startswith("invalid: Cannot convert")
        for d in dead
        if d["reason"] == "sink_refused"
    )
    assert list(client.query(f"SELECT key FROM `{table}`").result()) == []
    assert summary.rows_read == 13 and summary.rows_predicted == 0
    assert summary.rejected == {"sink_refused": 12, "wrong_value_count": 1} and summary.reconciled
    on_disk = json.loads((tmp_path / "run-summary.json").read_text())
    assert on_disk["rejected"] == summary.rejected and on_disk["reconciled"]
