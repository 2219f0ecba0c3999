"""Pipeline fixtures: the MNIST sample's test split written in every format, and the model's own answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from oracle import keras_probabilities
from outputs import read_json_lines

from mnistkit.pipeline.batch import PredictConfig, run_predict
from mnistkit.pipeline.runners import RunnerConfig

# Most tests run the pipeline in-process (FnApiRunner, one worker): the same runner and fused
# stages as a multi-process run, without paying a TensorFlow import per worker process.
IN_PROCESS = RunnerConfig(workers=1, running_mode="in_memory")


@pytest.fixture(scope="session")
def test_rows(mnist_test_set) -> tuple[np.ndarray, np.ndarray]:
    """(keys, uint8 pixels [1000, 784]); the keys are the row indices, as `convert` writes them."""
    images, _ = mnist_test_set
    return np.arange(len(images), dtype=np.int64), images.reshape(len(images), -1)


@pytest.fixture(scope="session")
def inputs(tmp_path_factory, test_rows) -> dict[str, str]:
    """The test split as text, JSON lines and TFRecord (two shards, read as a glob)."""
    from mnistkit.pipeline.io.formats import write_rows

    directory = tmp_path_factory.mktemp("inputs")
    write_rows(str(directory / "test.txt"), "text", [test_rows])
    write_rows(str(directory / "test.jsonl"), "jsonl", [test_rows])
    write_rows(str(directory / "test.tfrecord"), "tfrecord", [test_rows], shards=2)
    return {
        "text": str(directory / "test.txt"),
        "jsonl": str(directory / "test.jsonl"),
        "tfrecord": str(directory / "test-*-of-00002.tfrecord"),
    }


@pytest.fixture(scope="session")
def direct_probabilities(exported_model, test_rows) -> np.ndarray:
    """The model's probabilities for the test split from its Keras file, called by Keras on raw
    pixels scaled here: an oracle independent of the kit's model loading and input scaling."""
    (version,) = [p for p in exported_model.iterdir() if p.name.isdigit()]
    return keras_probabilities(version, test_rows[1])


@pytest.fixture(scope="session")
def run_pipeline():
    """Run the batch pipeline (in-process unless `runner` is given); returns (summary, predictions
    by key, dead letters), and fails if a key is predicted twice."""

    def run(model: Path | str, input_uri: str, output: Path, **overrides) -> tuple:
        overrides.setdefault("runner", IN_PROCESS)
        config = PredictConfig(model=str(model), input=input_uri, output=str(output), **overrides)
        summary = run_predict(config)
        predictions: dict[int, dict] = {}
        for row in read_json_lines(config.predictions_pattern):
            assert row["key"] not in predictions, f"key {row['key']} predicted twice"
            predictions[row["key"]] = row
        return summary, predictions, list(read_json_lines(config.errors_pattern))

    return run
