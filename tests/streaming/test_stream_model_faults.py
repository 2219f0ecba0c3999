"""A stream's model under faults: an incomplete or failing new version keeps the old one serving
and is tried again later; a version answering a canary batch with NaN is never swapped in."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from test_stream_model import add_version, first_version

from mnistkit.pipeline.inference.hot_swap import LatestModel, canary_problem
from mnistkit.pipeline.inference.savedmodel import ModelError


@pytest.fixture
def export_dir(exported_model, tmp_path) -> Path:
    target = tmp_path / "models"
    shutil.copytree(exported_model, target)
    return target


def save_nan_model(path: Path) -> None:
    """A SavedModel with the serving signature whose probabilities are all NaN."""
    import tensorflow as tf

    class NaNModel(tf.Module):
        @tf.function(
            input_signature=[tf.TensorSpec([None], tf.int64, "key"), tf.TensorSpec([None, 784], tf.float32, "image")]
        )
        def serve(self, key, image):
            probabilities = image[:, :10] * float("nan")
            return {"key": key, "probabilities": probabilities, "class": tf.argmax(probabilities, axis=1)}

    module = NaNModel()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


def test_an_incomplete_version_is_retried_and_served_once_complete(export_dir, caplog):
    model = LatestModel(str(export_dir), check_seconds=0, retry_seconds=0.4)
    v1 = first_version(export_dir)
    new = add_version(export_dir, v1 + 1)
    # saved_model.pb landed, its weights not yet: variables/ and the OpenVINO IR export wrote beside.
    held_back = [name for name in ("variables", "openvino") if (new / name).exists()]
    for name in held_back:
        shutil.move(new / name, export_dir / f"{name}-held-back")
    assert model.current()[1] == str(v1)
    assert f"Not serving {new}" in caplog.text
    for name in held_back:
        shutil.move(export_dir / f"{name}-held-back", new / name)
    assert model.current()[1] == str(v1)  # the retry is not due yet
    time.sleep(0.45)
    assert model.current()[1] == str(v1 + 1)


def test_a_version_with_non_finite_output_is_not_swapped_in(export_dir, caplog, tmp_path):
    model = LatestModel(str(export_dir), check_seconds=0, retry_seconds=3600)
    v1 = first_version(export_dir)
    save_nan_model(export_dir / str(v1 + 1))
    serving, version = model.current()
    assert version == str(v1)
    assert "non-finite" in caplog.text
    probabilities, _ = serving.predict(np.arange(3), np.full((3, 784), 0.5, np.float32))
    assert np.isfinite(probabilities).all()


def test_the_canary_passes_a_sound_model_and_refuses_a_nan_one(export_dir, tmp_path):
    from mnistkit.pipeline.inference.savedmodel import ServingModel

    canary_problem(ServingModel(str(export_dir / str(first_version(export_dir)))))
    save_nan_model(tmp_path / "nan")
    with pytest.raises(ModelError, match="non-finite"):
        canary_problem(ServingModel(str(tmp_path / "nan")))
