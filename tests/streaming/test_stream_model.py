"""LatestModel: the model a stream serves follows its export dir, one check every check_seconds."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from mnistkit.pipeline.inference.hot_swap import LatestModel, StreamModelHandler
from mnistkit.pipeline.rows import ParsedBatch, StreamBatch


@pytest.fixture
def export_dir(exported_model, tmp_path) -> Path:
    """A private copy of the session's export dir (one version), free to add versions to."""
    target = tmp_path / "models"
    shutil.copytree(exported_model, target)
    return target


def add_version(export_dir: Path, version: int, broken: bool = False) -> Path:
    """A new version next to the first, appearing atomically like an export: copy, then rename."""
    (first,) = [p for p in export_dir.iterdir() if p.name.isdigit()]
    staging = export_dir / f".staging-{version}"
    shutil.copytree(first, staging)
    if broken:
        (staging / "saved_model.pb").write_bytes(b"not a model")
    os.rename(staging, export_dir / str(version))
    return export_dir / str(version)


def first_version(export_dir: Path) -> int:
    return int(next(p.name for p in export_dir.iterdir() if p.name.isdigit()))


def test_a_newer_export_is_served_once_the_check_is_due(export_dir):
    model = LatestModel(str(export_dir), check_seconds=0.3)
    v1 = first_version(export_dir)
    assert model.current()[1] == str(v1)
    add_version(export_dir, v1 + 1)
    assert model.current()[1] == str(v1)  # not checked yet
    time.sleep(0.35)
    serving, version = model.current()
    assert version == str(v1 + 1)
    probabilities, classes = serving.predict(np.array([1]), np.full((1, 784), 0.5, np.float32))
    assert probabilities.shape == (1, 10) and classes.shape == (1,)


def test_a_broken_export_is_skipped_and_the_current_model_keeps_serving(export_dir, caplog):
    model = LatestModel(str(export_dir), check_seconds=0)
    v1 = first_version(export_dir)
    add_version(export_dir, v1 + 5, broken=True)
    assert model.current()[1] == str(v1)
    assert f"Not serving {export_dir / str(v1 + 5)}" in caplog.text
    caplog.clear()
    assert model.current()[1] == str(v1)
    assert "Not serving" not in caplog.text  # remembered, not reloaded at every check


def test_a_version_dir_pins_its_version(export_dir):
    v1 = first_version(export_dir)
    model = LatestModel(str(export_dir / str(v1)), check_seconds=0)
    add_version(export_dir, v1 + 1)
    assert model.current()[1] == str(v1)


def test_the_handler_scores_one_micro_batch_per_call_with_the_version_it_used(export_dir):
    handler = StreamModelHandler(str(export_dir), max_batch=2, check_seconds=3600)
    assert handler.should_skip_batching()
    rows = ParsedBatch(np.arange(5), np.full((5, 784), 0.5, np.float32), ["s"] * 5)
    batch = StreamBatch(rows, np.arange(5, dtype=np.float64))
    before = time.time()
    (scored,) = handler.run_inference(batch, handler.load_model())
    assert scored.batch is batch and scored.errors == {}
    assert scored.probabilities.shape == (5, 10) and scored.classes.shape == (5,)
    assert scored.model_version == str(first_version(export_dir))
    assert before <= scored.predicted_at <= time.time()
    assert handler.get_num_bytes(batch) == rows.images.nbytes + rows.keys.nbytes


def test_handlers_share_one_loaded_model_per_export_dir(export_dir):
    # The BundleBasedDirectRunner builds a handler's DoFn anew for every bundle; the model must not
    # be loaded again each time.
    first = StreamModelHandler(str(export_dir), max_batch=4, check_seconds=5).load_model()
    assert StreamModelHandler(str(export_dir), max_batch=9, check_seconds=5).load_model() is first
    assert StreamModelHandler(str(export_dir), max_batch=4, check_seconds=6).load_model() is not first
