"""`mnistkit convert` and `mnistkit predict` through Click's CliRunner."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mnistkit.cli.main import cli
from mnistkit.cli.predict_cmds import EXIT_TOO_MANY_ERRORS

# Options from the environment, as a user or CI would set them; in-process keeps the tests quick.
ENV = {"MNISTKIT_PREDICT_RUNNING_MODE": "in_memory", "MNISTKIT_PREDICT_WORKERS": "1"}


@pytest.fixture(scope="module")
def text_input(tmp_path_factory, mnist_sample_dir):
    out = tmp_path_factory.mktemp("cli") / "test.txt"
    idx = mnist_sample_dir / "t10k-images-idx3-ubyte.gz"
    result = CliRunner().invoke(cli, ["convert", "--input", str(idx), "--output", str(out), "--limit", "200"])
    assert result.exit_code == 0, result.output
    assert "Wrote 200 rows" in result.output
    return out


def test_predict_prints_and_writes_the_summary(tmp_path, exported_model, text_input):
    env = {**ENV, "MNISTKIT_PREDICT_MODEL": str(exported_model)}
    args = ["predict", "--input", str(text_input), "--output", str(tmp_path / "p")]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    assert "Predicted 200 of 200 rows" in result.output and "rejected 0" in result.output
    summary = json.loads((tmp_path / "p-summary.json").read_text())
    assert summary["rows_predicted"] == 200 and summary["reconciled"]


def test_too_many_rejected_rows_fail_the_run(tmp_path, exported_model, text_input):
    noisy = tmp_path / "noisy.txt"
    noisy.write_bytes(text_input.read_bytes() + b"not a row\n" * 3)
    args = ["predict", "--model", str(exported_model), "--input", str(noisy), "--output", str(tmp_path / "p")]
    result = CliRunner().invoke(cli, [*args, "--max-error-rate", "0.01"], env=ENV)
    assert result.exit_code == EXIT_TOO_MANY_ERRORS, result.output
    assert "rejected 3: missing_key 3" in result.output and "above --max-error-rate" in result.output
    assert json.loads((tmp_path / "p-summary.json").read_text())["rejected"] == {"missing_key": 3}
    result = CliRunner().invoke(cli, [*args, "--max-error-rate", "0.02", "--overwrite"], env=ENV)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "{tmp}/missing"], "No exported model at"),
        (["--input", "{tmp}/none-*.txt"], "no input file matches"),
        (["--input", "{tmp}"], "Cannot tell the format"),
    ],
)
def test_bad_arguments_are_one_clear_error_before_any_work(args, message, tmp_path, exported_model, text_input):
    base = {
        "--model": str(exported_model),
        "--input": str(text_input),
        "--output": str(tmp_path / "out" / "p"),
    }
    base.update(zip(args[::2], [a.format(tmp=tmp_path) for a in args[1::2]], strict=True))
    result = CliRunner().invoke(cli, ["predict", *[x for pair in base.items() for x in pair]], env=ENV)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_batch_bounds_are_checked(exported_model, text_input):
    args = ["predict", "--model", str(exported_model), "--input", str(text_input), "--output", "p"]
    result = CliRunner().invoke(cli, [*args, "--min-batch", "64", "--max-batch", "8"], env=ENV)
    assert result.exit_code == 2 and "--min-batch 64 exceeds --max-batch 8" in result.output
