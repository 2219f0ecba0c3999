"""pipeline/bigquery.py on bqemulator: DIRECT_READ rows into the parser, predictions into a table."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to
from cloudtest import DATA_BUCKET, DATASET, PROJECT

from mnistkit.pipeline.io.bigquery import (
    INPUT_SCHEMA,
    PREDICTIONS_SCHEMA,
    BigQueryError,
    ReadFromBigQueryTable,
    TableRef,
    WritePredictionsToBigQuery,
    parse_table,
)
from mnistkit.pipeline.io.parsing import parse
from mnistkit.pipeline.rows import DEAD_LETTERS, PredictionBatch
from mnistkit.pipeline.runners import RunnerConfig

# The in-process runner: the emulator patches live in this process only.
IN_PROCESS = RunnerConfig(running_mode="in_memory")


def _pipeline() -> beam.Pipeline:
    return beam.Pipeline(options=IN_PROCESS.pipeline_options())


def test_table_names():
    assert parse_table("bq://p-1.ds.t") == TableRef("p-1", "ds", "t")
    assert parse_table("ds.t", default_project="p") == TableRef("p", "ds", "t")
    assert parse_table("bq://domain.com:p.ds.t").spec == "domain.com:p:ds.t"
    assert parse_table("my-proj.ds.t").uri == "bq://my-proj.ds.t"
    with pytest.raises(BigQueryError, match="bq://project.dataset.table"):
        parse_table("bq://just-a-table")
    with pytest.raises(BigQueryError, match="set project_id"):
        parse_table("ds.t")


def _schema(schema: dict):
    from google.cloud import bigquery

    return [bigquery.SchemaField(f["name"], f["type"], mode=f["mode"]) for f in schema["fields"]]


def _text(key: int, pixels: np.ndarray) -> str:
    return ",".join(f"{v:.6g}" for v in pixels / 255)


def test_bigquery_rows_reach_the_parser_and_bad_rows_become_dead_letters(bigquery, mnist_test_set):
    images, _ = mnist_test_set
    pixels = images[:5].reshape(5, -1)
    client = bigquery.client()
    table = f"{PROJECT}.{DATASET}.images"
    client.create_table(_bq_table(table, INPUT_SCHEMA))
    rows = [{"key": k, "image": _text(k, pixels[k])} for k in range(5)]
    rows += [{"key": 100, "image": "0.5,0.5"}, {"key": 101, "image": "not,numbers" + ",1" * 782}]
    assert not client.insert_rows_json(table, rows)
    bytes_table = f"{PROJECT}.{DATASET}.images_bytes"
    bytes_schema = {"fields": [INPUT_SCHEMA["fields"][0], {"name": "image", "type": "BYTES", "mode": "REQUIRED"}]}
    client.create_table(_bq_table(bytes_table, bytes_schema))
    import base64

    byte_rows = [{"key": 10 + k, "image": base64.b64encode(pixels[k].tobytes()).decode()} for k in range(3)]
    byte_rows.append({"key": 13, "image": base64.b64encode(b"short").decode()})
    assert not client.insert_rows_json(bytes_table, byte_rows)

    def parsed_keys(raw_batches):
        return sorted(int(k) for raw in raw_batches for k in parse(raw, "text")[0].keys)

    def dead_reasons(letters):
        return sorted(letter.reason.value for letter in letters)

    with _pipeline() as p:
        text = p | "Text" >> ReadFromBigQueryTable(parse_table(table), batch_rows=4)
        binary = p | "Bytes" >> ReadFromBigQueryTable(parse_table(bytes_table), batch_rows=4)
        raw = (text.main, binary.main) | beam.Flatten()
        parsed = raw | "AllRaw" >> beam.combiners.ToList() | "Keys" >> beam.Map(parsed_keys)
        assert_that(parsed, equal_to([[0, 1, 2, 3, 4, 10, 11, 12]]), label="parsed")
        bad = raw | "Parse" >> beam.FlatMap(lambda r: parse(r, "text")[1])
        letters = (bad, text[DEAD_LETTERS], binary[DEAD_LETTERS]) | "All" >> beam.Flatten()
        reasons = letters | "AllDead" >> beam.combiners.ToList() | "Reasons" >> beam.Map(dead_reasons)
        assert_that(reasons, equal_to([["non_numeric", "wrong_value_count", "wrong_value_count"]]), label="dead")
    # The temp-dataset guard: Beam's cleanup left the project's datasets alone.
    assert [d.dataset_id for d in client.list_datasets()] == [DATASET]


def _bq_table(name: str, schema: dict):
    from google.cloud import bigquery

    return bigquery.Table(name, schema=_schema(schema))


def _predictions(keys) -> PredictionBatch:
    keys = np.asarray(keys, np.int64)
    probabilities = np.full((len(keys), 10), 0.05, np.float32)
    probabilities[:, 3] = 0.55
    return PredictionBatch(keys, np.full(len(keys), 3, np.int64), probabilities)


@pytest.mark.parametrize("gcs_temp", [None, f"gs://{DATA_BUCKET}/tmp"], ids=["streaming-inserts", "file-loads"])
def test_predictions_table_is_created_appended_and_truncated(bigquery, gcs, gcs_temp):
    table = parse_table(f"{PROJECT}.{DATASET}.predictions")
    client = bigquery.client()
    for keys, write in (([1, 2], "append"), ([3], "append")):
        with _pipeline() as p:
            _ = p | beam.Create([_predictions(keys)]) | WritePredictionsToBigQuery(table, write, gcs_temp)
    rows = sorted(client.list_rows(table.dotted), key=lambda r: r["key"])
    assert [r["key"] for r in rows] == [1, 2, 3]
    assert (
        rows[0]["class"] == 3
        and rows[0]["confidence"] == pytest.approx(0.55)
        and rows[0]["pred0"] == pytest.approx(0.05)
    )
    assert [f.name for f in client.get_table(table.dotted).schema] == [f["name"] for f in PREDICTIONS_SCHEMA["fields"]]
    if gcs_temp is None:
        with pytest.raises(BigQueryError, match="gs://"):
            WritePredictionsToBigQuery(table, "truncate", gcs_temp)
        return
    with _pipeline() as p:
        _ = p | beam.Create([_predictions([7])]) | WritePredictionsToBigQuery(table, "truncate", gcs_temp)
    assert [r["key"] for r in client.list_rows(table.dotted)] == [7]
