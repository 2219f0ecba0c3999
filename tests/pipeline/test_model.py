"""Model resolution and the pre-flight check: one clear ModelError for every way a model can be wrong."""

from __future__ import annotations

import shutil

import pytest

from mnistkit.pipeline.inference.savedmodel import ModelError, read_signature, resolve_model, validate_model


def test_the_newest_numeric_version_is_served(tmp_path, exported_model):
    version = next(p for p in exported_model.iterdir() if p.name.isdigit())
    base = tmp_path / "models"
    for name in ("100", "20", "notes"):
        shutil.copytree(version, base / name)
    assert resolve_model(str(base)) == str(base / "100")
    assert resolve_model(str(base / "20")) == str(base / "20")
    assert resolve_model(str(base / "20" / "saved_model.pb")) == str(base / "20")


def test_a_valid_export_passes_with_its_metadata(exported_model):
    info = validate_model(str(exported_model))
    assert read_signature(info.uri)[0] == {"key": ("int64", [None]), "image": ("float32", [None, 784])}
    assert info.uri.startswith(str(exported_model)) and info.version.isdigit()
    assert info.metadata["dataset"] == "mnist"


def test_a_missing_model_says_where_it_looked(tmp_path):
    with pytest.raises(ModelError, match="No exported model at .*mnistkit export"):
        validate_model(str(tmp_path / "nowhere"))


def test_a_broken_saved_model_is_a_model_error(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"not a protobuf")
    with pytest.raises(ModelError, match="is not a SavedModel"):
        validate_model(str(tmp_path))


def test_a_wrong_signature_lists_every_difference(tmp_path):
    import tensorflow as tf

    class Wrong(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.float32, name="image")])
        def serve(self, image):
            return {"scores": tf.reduce_sum(image, axis=[1, 2])}

    module = Wrong()
    tf.saved_model.save(module, str(tmp_path / "7"), signatures={"serving_default": module.serve})
    with pytest.raises(ModelError) as error:
        validate_model(str(tmp_path))
    message = str(error.value)
    assert "input `key` is missing" in message
    assert "input `image` is float32 [None, 28, 28], expected float32 [None, 784]" in message
    assert "output `probabilities` is missing" in message and "output `class` is missing" in message
    tf.saved_model.save(module, str(tmp_path / "8"), signatures={"other": module.serve})
    with pytest.raises(ModelError, match="no `serving_default` signature"):
        validate_model(str(tmp_path / "8"))
