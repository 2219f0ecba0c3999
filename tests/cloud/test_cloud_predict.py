"""`mnistkit predict` on the emulators: gs:// model, input and output; BigQuery input and output."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from cloudtest import DATA_BUCKET, DATASET, PROJECT

from mnistkit.cli.main import cli
from mnistkit.pipeline.cloud.config import load_config
from mnistkit.pipeline.cloud.staging import stage
from mnistkit.pipeline.io.formats import encode_text

ROWS = 60


@pytest.fixture
def staged(cloud_env, gcs, bigquery, exported_model, mnist_test_set, tmp_path):
    """Model and a text input (with two bad rows) staged, and loaded into the input table."""
    images, _ = mnist_test_set
    path = tmp_path / "digits.txt"
    bad = b"1000:0.5,0.5\n1001:" + b"x," * 783 + b"1\n"
    path.write_bytes(encode_text(np.arange(ROWS), images[:ROWS].reshape(ROWS, -1)) + bad)
    return stage(load_config(), exported_model, [path], progress=False)


def _predict(*args: str):
    result = CliRunner().invoke(cli, ["predict", "--running-mode", "in_memory", *args])
    assert result.exit_code == 0, result.output
    return result


def _read(pattern: str) -> list[dict]:
    from outputs import read_json_lines

    return list(read_json_lines(pattern))


def _accuracy(predictions, labels) -> float:
    return float(np.mean([labels[row["key"]] == row["class"] for row in predictions]))


def test_gcs_model_input_and_output(staged, mnist_test_set):
    _, labels = mnist_test_set
    output = f"gs://{DATA_BUCKET}/predictions/run"
    _predict("--model", staged.model_uri, "--input", staged.input_uris[0], "--output", output)
    predictions = _read(f"{output}-[0-9]*-of-*.jsonl")
    assert sorted(row["key"] for row in predictions) == list(range(ROWS))
    assert _accuracy(predictions, labels) > 0.8
    assert sorted(row["reason"] for row in _read(f"{output}-errors-*.jsonl")) == ["non_numeric", "wrong_value_count"]
    summary = json.loads(_read_text(f"{output}-summary.json"))
    assert (summary["rows_read"], summary["rows_predicted"], summary["reconciled"]) == (ROWS + 2, ROWS, True)


def _read_text(uri: str) -> str:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(uri) as f:
        return f.read().decode()


@pytest.mark.parametrize("write", ["append", "truncate"])
def test_bigquery_input_and_output(staged, bigquery, mnist_test_set, write):
    _, labels = mnist_test_set
    table = f"{PROJECT}.{DATASET}.predictions"
    errors = f"gs://{DATA_BUCKET}/runs/bq"
    args = ["--model", staged.model_uri, "--input", f"bq://{PROJECT}.{DATASET}.images", "--output", f"bq://{table}"]
    _predict(*args, "--errors-output", errors, "--bigquery-write", write)
    _predict(*args, "--errors-output", errors, "--bigquery-write", write, "--overwrite")
    rows = list(bigquery.client().list_rows(table))
    assert len(rows) == (ROWS if write == "truncate" else 2 * ROWS)
    assert sorted({row["key"] for row in rows}) == list(range(ROWS))
    assert _accuracy(rows, labels) > 0.8
    # The bad rows came from BigQuery and became dead letters like file rows do.
    letters = _read(f"{errors}-errors-*.jsonl")
    assert sorted(row["reason"] for row in letters) == ["non_numeric", "wrong_value_count"]
    assert {row["source"] for row in letters} == {f"bq://{PROJECT}.{DATASET}.images"}
    summary = json.loads(_read_text(f"{errors}-summary.json"))
    assert (summary["rows_read"], summary["rows_predicted"], summary["reconciled"]) == (ROWS + 2, ROWS, True)


def test_a_bigquery_output_needs_an_errors_prefix(staged):
    result = CliRunner().invoke(
        cli, ["predict", "--model", staged.model_uri, "--input", staged.input_uris[0], "--output", "bq://p-1.d.t"]
    )
    assert result.exit_code == 1 and "--errors-output" in result.output


def test_dataflow_options_are_refused_on_the_local_runner(staged):
    args = ["predict", "--model", staged.model_uri, "--input", staged.input_uris[0], "--output", "out/x"]
    result = CliRunner().invoke(cli, [*args, "--gpu", "t4:1", "--dry-run"])
    assert result.exit_code == 2 and "--gpu, --dry-run only apply to --runner dataflow" in result.output
