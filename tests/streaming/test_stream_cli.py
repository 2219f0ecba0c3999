"""`mnistkit simulate-stream` and `mnistkit stream` through Click's CliRunner."""

from __future__ import annotations

from click.testing import CliRunner
from streamtest import read_outputs

from mnistkit.cli.main import cli


def test_simulate_then_stream_a_folder(tmp_path, exported_model, mnist_sample_dir):
    incoming, out = tmp_path / "incoming", tmp_path / "out"
    simulate = ["simulate-stream", "--to", str(incoming), "--rate", "400", "--count", "30", "--bad-every", "10"]
    result = CliRunner().invoke(cli, [*simulate, "--data-dir", str(mnist_sample_dir)])
    assert result.exit_code == 0, result.output
    assert "Sent 30 rows" in result.output
    assert sum(len(f.read_text().splitlines()) for f in incoming.iterdir()) == 30

    # The files are already there when the stream starts: it catches up, then goes idle and stops.
    errors = tmp_path / "errors"
    stream = ["stream", "--input", f"watch://{incoming}", "--output", str(out), "--errors-output", str(errors)]
    env = {"MNISTKIT_STREAM_MODEL": str(exported_model), "MNISTKIT_STREAM_POLL_SECONDS": "0.2"}
    result = CliRunner().invoke(cli, [*stream, "--idle-stop", "3", "--max-batch", "4"], env=env)
    assert result.exit_code == 0, result.output
    assert "Predicted 27 of 30 rows" in result.output and "rejected 3: wrong_value_count 3" in result.output
    assert "Latency ms: min" in result.output
    outputs = read_outputs(out)
    assert sorted(row["key"] for row in outputs.rows) == [k for k in range(30) if k % 10 != 9]
    assert max(len(batch) for batch in outputs.batches) == 4
    assert outputs.dead == []
    # One dead letter per bad row (errors files are named by content, so their order is not the rows').
    assert sorted(letter["raw"][:11] for letter in read_outputs(errors).dead) == [
        '{"key": 19,',
        '{"key": 29,',
        '{"key": 9, ',
    ]


def test_stream_refuses_an_input_it_cannot_read(tmp_path, exported_model):
    args = ["stream", "--model", str(exported_model), "--input", "kafka://rows", "--output", str(tmp_path)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "Error: kafka://rows: a stream reads pubsub://projects/P/subscriptions/S" in result.output


def test_stream_refuses_dataflow_options_locally_and_a_table_without_an_errors_folder(tmp_path, exported_model):
    base = ["stream", "--model", str(exported_model), "--input", f"watch://{tmp_path}"]
    result = CliRunner().invoke(cli, [*base, "--output", str(tmp_path / "out"), "--gpu", "t4:1"])
    assert result.exit_code == 2
    assert "--gpu only apply to --runner dataflow" in result.output
    result = CliRunner().invoke(cli, [*base, "--output", "bq://demo-project.mnist.stream"])
    assert result.exit_code == 1
    assert "name a folder for the dead letters (--errors-output)" in result.output
