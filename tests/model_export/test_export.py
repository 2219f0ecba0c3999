"""The exported SavedModel is the contract with the pipeline: load it the way the pipeline does."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mnistkit.model_export.export import MODEL_JSON, SIGNATURE_NAME, export_saved_model, latest_version
from mnistkit.model_export.model import to_model_input


@pytest.fixture(scope="module")
def serving(exported_model):
    import tensorflow as tf

    return tf.saved_model.load(str(latest_version(exported_model))).signatures[SIGNATURE_NAME]


def test_signature_passes_keys_through_and_returns_distributions(serving, mnist_test_set, trained_model):
    import tensorflow as tf

    images, labels = mnist_test_set
    keys = np.array([9_000_000_000, -3, 0, 42, 7] * 40, dtype=np.int64)  # int64 range, unsorted, repeated
    x = to_model_input(images[: len(keys)])
    out = serving(key=tf.constant(keys), image=tf.constant(x))

    np.testing.assert_array_equal(out["key"].numpy(), keys)
    probabilities = out["probabilities"].numpy()
    assert probabilities.shape == (len(keys), 10) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(out["class"].numpy(), probabilities.argmax(axis=1))
    # Same numbers as the Keras model it came from.
    np.testing.assert_allclose(probabilities, trained_model.model.predict(x, verbose=0), atol=1e-5)
    # A really trained model, not an untrained one that happens to load.
    assert np.mean(out["class"].numpy() == labels[: len(keys)]) > 0.8


def test_signature_spec_matches_the_contract(serving):
    import tensorflow as tf

    inputs = serving.structured_input_signature[1]
    assert inputs["key"].dtype == tf.int64 and inputs["key"].shape.as_list() == [None]
    assert inputs["image"].dtype == tf.float32 and inputs["image"].shape.as_list() == [None, 784]
    outputs = serving.structured_outputs
    assert {k: (v.dtype, v.shape.as_list()) for k, v in outputs.items()} == {
        "key": (tf.int64, [None]),
        "probabilities": (tf.float32, [None, 10]),
        "class": (tf.int64, [None]),
    }


def test_model_json_describes_the_export(exported_model):
    info = json.loads((latest_version(exported_model) / MODEL_JSON).read_text())
    assert info["dataset"] == "mnist" and 0.8 < info["test_accuracy"] <= 1.0
    assert info["signature"]["inputs"]["image"] == {"dtype": "float32", "shape": [None, 784]}
    assert {"tensorflow", "keras", "numpy", "python"} <= set(info["frameworks"])
    assert info["version"] == int(latest_version(exported_model).name) and info["created"]


def test_versions_never_collide_and_latest_wins(trained_model, tmp_path):
    first = export_saved_model(trained_model.model, tmp_path, version=1700000000)
    second = export_saved_model(trained_model.model, tmp_path, version=1700000000)
    assert (first.name, second.name) == ("1700000000", "1700000001")
    assert latest_version(tmp_path) == second
    assert latest_version(second) == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1700000000", "1700000001"]  # no staging left


def test_latest_version_of_an_empty_dir_explains(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no exported model version"):
        latest_version(tmp_path)
