"""`mnistkit train | evaluate | export` through Click's CliRunner, on the real MNIST sample."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner

from mnistkit.cli.main import cli


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory, mnist_sample_dir):
    out = tmp_path_factory.mktemp("cli-train")
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "--data-dir", str(mnist_sample_dir),
            "--epochs", "1",
            "--max-train-samples", "1500",
            "--output-dir", str(out / "train"),
            "--export-dir", str(out / "models"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Test accuracy" in result.output and "Exported SavedModel" in result.output
    return out


def test_train_writes_every_artefact(trained_dir):
    train_dir = trained_dir / "train"
    metrics = json.loads((train_dir / "metrics.json").read_text())
    assert metrics["train_samples"] == 1500 and metrics["test_samples"] == 1000
    assert len(metrics["epochs"]) == 1 and metrics["epochs"][0]["seconds"] > 0
    assert 0 < metrics["test"]["accuracy"] <= 1 and metrics["timings"]["train_seconds"] > 0
    assert (train_dir / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any((train_dir / "tensorboard").rglob("events.out.tfevents.*"))
    (version,) = (trained_dir / "models").iterdir()
    assert (version / "saved_model.pb").is_file() and (version / "model.json").is_file()


def test_evaluate_reports_per_class_numbers(trained_dir):
    out = trained_dir / "eval"
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "--model",
            str(trained_dir / "models"),
            "--data-dir",
            str(trained_dir.parent),
            "--output-dir",
            str(out),
        ],
    )
    # The MNIST sample is not where --data-dir points: a clean message, not a traceback.
    assert result.exit_code == 1 and "holds no mnist data" in result.output and "Traceback" not in result.output


def test_evaluate_saved_model_and_keras_file_agree(trained_dir, mnist_sample_dir):
    reports = {}
    for name, model in (("saved", trained_dir / "models"), ("keras", trained_dir / "train" / "model.keras")):
        out = trained_dir / f"eval-{name}"
        result = CliRunner().invoke(
            cli, ["evaluate", "--model", str(model), "--data-dir", str(mnist_sample_dir), "--output-dir", str(out)]
        )
        assert result.exit_code == 0, result.output
        assert (out / "confusion_matrix.png").is_file()
        reports[name] = json.loads((out / "evaluation.json").read_text())
    assert reports["saved"]["accuracy"] == pytest.approx(reports["keras"]["accuracy"])
    assert sum(map(sum, reports["saved"]["confusion_matrix"])) == 1000
    assert [c["support"] for c in reports["saved"]["per_class"]] == [
        sum(row) for row in reports["saved"]["confusion_matrix"]
    ]


def test_export_command_adds_a_new_version(trained_dir):
    result = CliRunner().invoke(
        cli,
        ["export", "--model", str(trained_dir / "train" / "model.keras"), "--export-dir", str(trained_dir / "models")],
    )
    assert result.exit_code == 0, result.output
    versions = sorted(p for p in (trained_dir / "models").iterdir())
    assert len(versions) == 2
    info = json.loads((versions[-1] / "model.json").read_text())
    assert info["dataset"] == "mnist" and info["train_samples"] == 1500


def test_env_vars_set_options(monkeypatch, tmp_path):
    from mnistkit.model_export import datasets

    spec = datasets.DATASETS["fashion-mnist"]
    monkeypatch.setitem(datasets.DATASETS, "fashion-mnist", dataclasses.replace(spec, system_dir=None))
    monkeypatch.setenv("MNISTKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MNISTKIT_DATASET_MIRROR", "http://127.0.0.1:9/")
    monkeypatch.setenv("MNISTKIT_TRAIN_DATASET", "fashion-mnist")
    result = CliRunner().invoke(cli, ["train", "--output-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "fashion-mnist dataset is not available locally" in result.output
    assert "--data-dir" in result.output and "Traceback" not in result.output


def _write_predictions(path, classes):
    path.write_text("".join(json.dumps({"key": k, "class": int(c), "confidence": 0.9}) + "\n" for k, c in classes))


def test_evaluate_scores_prediction_files_by_key(tmp_path, mnist_sample_dir, mnist_test_set):
    _, labels = mnist_test_set
    wrong = [(k, (labels[k] + 1) % 10 if k % 10 == 0 else labels[k]) for k in range(len(labels))]
    # Two shards in shuffled order, as Beam writes them.
    _write_predictions(tmp_path / "out-00000-of-00002.jsonl", wrong[1::2][::-1])
    _write_predictions(tmp_path / "out-00001-of-00002.jsonl", wrong[::2])
    result = CliRunner().invoke(
        cli,
        ["evaluate", "--predictions", str(tmp_path / "out-*.jsonl"), "--data-dir", str(mnist_sample_dir),
         "--output-dir", str(tmp_path / "report")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Accuracy 0.9000 on 1000 test images" in result.output


def test_evaluate_rejects_incomplete_predictions(tmp_path, mnist_sample_dir, mnist_test_set):
    _, labels = mnist_test_set
    _write_predictions(tmp_path / "out-00000-of-00001.jsonl", list(enumerate(labels))[:-1])
    result = CliRunner().invoke(
        cli, ["evaluate", "--predictions", str(tmp_path / "out-*.jsonl"), "--data-dir", str(mnist_sample_dir)]
    )
    assert result.exit_code == 1 and "1 of 1000 keys have no prediction (first: 999)" in result.output
    result = CliRunner().invoke(cli, ["evaluate", "--data-dir", str(mnist_sample_dir)])
    assert result.exit_code == 2 and "exactly one of --model or --predictions" in result.output
