"""Finding, checking and loading a model, on tiny real SavedModels (no training): which version a
URI names, what validation reads, the private cache, refused object names, and the batch handler.

Written for the survivors of the mutation run (docs/RELIABILITY.md, "Mutation score"); the
trained-model cases are in test_model.py and test_handler.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from tiny_models import save_model

from mnistkit.pipeline.inference import runtimes, savedmodel
from mnistkit.pipeline.inference.handler import SavedModelHandler
from mnistkit.pipeline.inference.runtimes import RuntimeOptions
from mnistkit.pipeline.inference.savedmodel import (
    ModelError,
    copy_to_cache,
    local_copy,
    resolve_model,
    validate_model,
)
from mnistkit.pipeline.rows import ParsedBatch, Reason


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch) -> None:
    """Copies go to this test's own cache, not the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def export_dir(tmp_path, tiny) -> Path:
    for version in ("9", "10", "2"):
        shutil.copytree(tiny, tmp_path / "models" / version)
    (tmp_path / "models" / "99-partial").mkdir()  # not a version: its name is not a number
    shutil.copytree(tiny, tmp_path / "models" / "11-copy")
    return tmp_path / "models"


def test_a_uri_names_its_version_dir_its_saved_model_pb_or_its_newest_version(export_dir):
    newest = str(export_dir / "10")
    assert resolve_model(str(export_dir)) == newest
    assert resolve_model(str(export_dir) + "/") == newest
    assert resolve_model(str(export_dir / "9")) == str(export_dir / "9")
    assert resolve_model(str(export_dir / "9") + "/") == str(export_dir / "9")
    assert resolve_model(str(export_dir / "2" / "saved_model.pb")) == str(export_dir / "2")


def test_an_export_dir_without_versions_says_what_it_expected(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError) as error:
        resolve_model(str(tmp_path / "empty"))
    where = tmp_path / "empty"
    assert str(error.value) == (
        f"No exported model at {where}: expected {where}/<saved_model.pb or model.pt> (a version directory) or "
        f"{where}/<version>/<saved_model.pb or model.pt> (an export directory). Create one with `mnistkit export` "
        "or `mnistkit export --from-pytorch`."
    )


def test_an_unknown_scheme_is_a_model_error_not_a_crash():
    with pytest.raises(ModelError, match="nosuchscheme://x"):
        resolve_model("nosuchscheme://x")


def test_validation_returns_the_version_and_its_metadata(export_dir):
    (export_dir / "10" / "model.json").write_text(json.dumps({"dataset": "mnist"}))
    info = validate_model(str(export_dir))
    expected = {"dataset": "mnist", "framework": "tensorflow"}  # the framework told by the version's marker
    assert (info.uri, info.version, info.metadata) == (str(export_dir / "10"), "10", expected)
    assert validate_model(str(export_dir / "9")).metadata == {"framework": "tensorflow"}


def test_an_unreadable_model_json_is_ignored_with_a_warning(export_dir, caplog):
    (export_dir / "10" / "model.json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert validate_model(str(export_dir)).metadata == {"framework": "tensorflow"}
    assert f"Ignoring unreadable {export_dir / '10' / 'model.json'}" in caplog.text


def test_a_model_of_the_wrong_width_breaks_the_contract(tmp_path):
    save_model(tmp_path / "5", "wrong_width")
    with pytest.raises(ModelError) as error:
        validate_model(str(tmp_path))
    assert str(error.value) == (
        f"Model {tmp_path / '5'} does not match the serving contract: output `probabilities` is "
        "float32 [None, 9], expected float32 [None, 10]. Re-export it with `mnistkit export`."
    )


def test_the_signature_is_read_from_saved_model_pb(tiny):
    inputs, outputs = savedmodel.read_signature(str(tiny))
    assert inputs == {"key": ("int64", [None]), "image": ("float32", [None, 784])}
    assert outputs == {"key": ("int64", [None]), "probabilities": ("float32", [None, 10]), "class": ("int64", [None])}


def test_protobuf_fields_are_walked_by_tag_and_wire_type():
    # field 1 varint 300 (two bytes), field 2 bytes "ab", field 3 bytes "c", field 2 bytes "" .
    data = bytes([0x08, 0xAC, 0x02, 0x12, 2]) + b"ab" + bytes([0x1A, 1]) + b"c" + bytes([0x12, 0])
    assert savedmodel._fields(data, 2) == [b"ab", b""]
    assert savedmodel._fields(data, 3) == [b"c"]
    assert savedmodel._varint(bytes([0xAC, 0x02]), 0) == (300, 2)
    assert savedmodel._varint(bytes([0x7F]), 0) == (127, 1)
    assert savedmodel._varint(bytes([0x80, 0x01]), 0) == (128, 2)  # 0x80: no payload bits, more to come
    with pytest.raises(ValueError, match="unexpected wire type 5"):
        savedmodel._fields(bytes([0x0D, 0, 0, 0, 0]), 1)


def test_a_local_version_is_served_in_place(tiny):
    assert local_copy(str(tiny)) == str(tiny)


def test_a_copy_is_whole_checked_and_reused(tiny, tmp_path):
    # The cache's copy path, run on a local version (local_copy itself serves those in place).
    copy = Path(copy_to_cache(str(tiny)))
    assert copy.parent == tmp_path / "xdg" / "mnistkit" / "models"
    names = sorted(str(p.relative_to(tiny)) for p in tiny.rglob("*") if p.is_file())
    manifest = json.loads((copy / ".mnistkit-manifest.json").read_text())
    assert sorted(manifest) == names
    for name in names:
        data = (tiny / name).read_bytes()
        assert (copy / name).read_bytes() == data and manifest[name] == [len(data), hashlib.sha256(data).hexdigest()]
    assert [p.name for p in copy.parent.iterdir()] == [copy.name]  # no staging dir left
    assert Path(copy_to_cache(str(tiny))) == copy
    (copy / "saved_model.pb").write_bytes(b"tampered")
    assert Path(copy_to_cache(str(tiny))) == copy
    assert (copy / "saved_model.pb").read_bytes() == (tiny / "saved_model.pb").read_bytes()


def test_the_cache_is_private_to_its_user(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = savedmodel.cache_root()
    assert root == str(tmp_path / "xdg" / "mnistkit" / "models")
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    os.chmod(root, 0o755)
    assert savedmodel.cache_root() == root and stat.S_IMODE(os.stat(root).st_mode) == 0o700
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert savedmodel.cache_root() == str(tmp_path / "home" / ".cache" / "mnistkit" / "models")


def test_a_cache_owned_by_another_user_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(savedmodel.os, "getuid", lambda: os.stat(tmp_path).st_uid + 1)
    with pytest.raises(ModelError, match="belongs to another user"):
        savedmodel.cache_root()


@pytest.mark.parametrize(
    "path",
    [
        "gs://b/m/1/../x",
        "gs://b/m/1/./x",
        "gs://b/m/1//etc/x",
        "gs://b/m/2/x",
        "gs://b/m/1/a\\b",
        "gs://b/m/1/a\0b",
        "gs://b/m/1/.mnistkit-manifest.json",
        "gs://b/m/1/",
    ],
)
def test_object_names_that_leave_the_copy_are_refused(path):
    with pytest.raises(ModelError, match="Refusing to copy"):
        savedmodel._relative_name("gs://b/m/1", path)


def test_object_names_inside_the_version_keep_their_folders():
    assert savedmodel._relative_name("gs://b/m/1/", "gs://b/m/1/variables/v.index") == os.path.join(
        "variables", "v.index"
    )
    assert savedmodel._relative_name("gs://b/m/1", "gs://b/m/1/saved_model.pb") == "saved_model.pb"


def test_a_copy_matches_its_manifest_only_while_every_file_is_whole(tmp_path):
    (tmp_path / "sub").mkdir()
    files = {"a": b"alpha", os.path.join("sub", "b"): b"x" * (5 << 20)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    manifest = {name: [len(data), hashlib.sha256(data).hexdigest()] for name, data in files.items()}
    (tmp_path / ".mnistkit-manifest.json").write_text(json.dumps(manifest))
    assert savedmodel._matches_manifest(str(tmp_path))
    (tmp_path / "sub" / "b").write_bytes(b"y" * (5 << 20))  # same size, other bytes
    assert not savedmodel._matches_manifest(str(tmp_path))
    (tmp_path / "sub" / "b").write_bytes(b"x" * 3)
    assert not savedmodel._matches_manifest(str(tmp_path))
    (tmp_path / "sub" / "b").unlink()
    assert not savedmodel._matches_manifest(str(tmp_path))
    (tmp_path / ".mnistkit-manifest.json").write_text("{not json")
    assert not savedmodel._matches_manifest(str(tmp_path))
    (tmp_path / ".mnistkit-manifest.json").unlink()
    assert not savedmodel._matches_manifest(str(tmp_path))


def test_a_manifest_that_is_not_an_object_does_not_match(tmp_path):
    (tmp_path / ".mnistkit-manifest.json").write_text("[1]")
    assert not savedmodel._matches_manifest(str(tmp_path))


def test_the_batch_handler_loads_the_newest_version_and_follows_updates(export_dir, tiny, tmp_path, monkeypatch):
    sized = []
    monkeypatch.setattr(runtimes, "configure_tf_threads", lambda *pools: sized.append(pools))
    tensorflow = RuntimeOptions("tensorflow")
    handler = SavedModelHandler(str(export_dir), max_batch_size=2, runtime=tensorflow)
    assert handler.get_metrics_namespace() == "mnistkit_RunInference"
    model = handler.load_model()
    assert sized == [(0, 0)]  # TensorFlow's own pool sizes unless asked
    SavedModelHandler(str(export_dir), runtime=RuntimeOptions("tensorflow", "f32", 3, 2)).load_model()
    assert sized[-1] == (3, 2)
    probabilities, classes = model.predict(np.array([1]), np.eye(1, 784, 4, dtype=np.float32))
    assert classes.tolist() == [4] and probabilities.shape == (1, 10)
    handler.update_model_path(None)
    handler.update_model_path("")
    assert handler._model_uri == str(export_dir)
    other = shutil.copytree(tiny, tmp_path / "other" / "3")
    handler.update_model_path(str(other))
    assert handler._model_uri == str(other)
    assert handler.load_model().predict(np.array([1]), np.eye(1, 784, 2, dtype=np.float32))[1].tolist() == [2]


def test_the_batch_handler_answers_each_part_with_its_own_rows_and_failures(tiny, caplog):
    handler = SavedModelHandler(str(tiny), max_batch_size=2)
    model = handler.load_model()

    class RefusingKey3:
        name, precision = model.name, model.precision

        def predict(self, keys, images):
            if 3 in keys.tolist():
                raise ValueError("key 3")
            return model.predict(keys, images)

    refusing_key_3 = RefusingKey3()

    parts = [
        ParsedBatch(np.arange(3), np.eye(3, 784, dtype=np.float32), ["a"] * 3),
        ParsedBatch(np.arange(3, 6), np.eye(3, 784, 3, dtype=np.float32), ["b"] * 3),
    ]
    with caplog.at_level(logging.WARNING):
        first, second = handler.run_inference(parts, refusing_key_3)
    # Calls of 2 rows: [0, 1], then [2, 3] fails and is retried row by row, then [4, 5].
    assert "Model call on 2 rows failed (key 3); retrying row by row" in caplog.text
    assert first.keys.tolist() == [0, 1, 2] and first.classes.tolist() == [0, 1, 2] and first.failures == []
    assert second.keys.tolist() == [4, 5] and second.classes.tolist() == [4, 5]
    assert second.probabilities.shape == (2, 10) and second.probabilities.dtype == np.float32
    (failure,) = second.failures
    assert failure.reason == Reason.INFERENCE_ERROR and failure.source == "b" and "ValueError: key 3" in failure.detail
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        (whole,) = handler.run_inference(parts[:1], model)
    assert whole.classes.tolist() == [0, 1, 2] and "retrying" not in caplog.text
    assert handler.get_num_bytes(parts) == sum(p.images.nbytes + p.keys.nbytes for p in parts)


def test_thread_pools_are_sized_only_when_asked(monkeypatch):
    import tensorflow as tf

    calls = []
    monkeypatch.setattr(tf.config.threading, "set_intra_op_parallelism_threads", lambda n: calls.append(("intra", n)))
    monkeypatch.setattr(tf.config.threading, "set_inter_op_parallelism_threads", lambda n: calls.append(("inter", n)))
    runtimes.configure_tf_threads(0, 0)
    runtimes.configure_tf_threads(3, 0)
    runtimes.configure_tf_threads(0, 2)
    assert calls == [("intra", 3), ("inter", 2)]

    def running(n):
        raise RuntimeError("already initialised")

    monkeypatch.setattr(tf.config.threading, "set_intra_op_parallelism_threads", running)
    runtimes.configure_tf_threads(1, 1)  # harmless once TensorFlow runs
