"""How a stream's model follows its export dir, on tiny real SavedModels (no training): which
versions are swapped in, how long a refused one waits, and what the canary refuses.

Written for the survivors of the mutation run (docs/RELIABILITY.md, "Mutation score"); the
trained-model versions of the main cases are in test_stream_model.py and test_stream_model_faults.py.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from tiny_models import save_model

from mnistkit.pipeline.inference import hot_swap
from mnistkit.pipeline.inference.hot_swap import LatestModel, StreamModelHandler, canary_problem
from mnistkit.pipeline.inference.savedmodel import ModelError, ServingModel
from mnistkit.pipeline.rows import ParsedBatch, StreamBatch


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch) -> None:
    """Model copies go to this test's own cache, not the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """One saved model of every variant, saved once and copied in as versions."""
    root = tmp_path_factory.mktemp("tiny")
    return {variant: save_model(root / variant, variant) for variant in ("sound", "nan", "class_out_of_range")}


def add(export_dir: Path, version: int, model: Path) -> Path:
    shutil.copytree(model, export_dir / str(version))
    return export_dir / str(version)


@pytest.fixture
def export_dir(tmp_path, saved) -> Path:
    add(tmp_path / "models", 100, saved["sound"])
    return tmp_path / "models"


class Clock:
    """The `time` module as hot_swap sees it: wall time as usual, a monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.time = time.time

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(hot_swap, "time", clock)
    return clock


def test_the_check_is_due_exactly_check_seconds_after_the_last(export_dir, saved, clock):
    model = LatestModel(str(export_dir), check_seconds=10)
    assert model.version == "100"
    add(export_dir, 101, saved["sound"])
    clock.now += 9
    assert model.current()[1] == "100"
    clock.now += 1
    assert model.current()[1] == "101"
    add(export_dir, 102, saved["sound"])
    clock.now += 9  # counted from the check that swapped, not from the start
    assert model.current()[1] == "101"


def test_a_check_that_finds_nothing_new_restarts_the_period(export_dir, saved, clock):
    model = LatestModel(str(export_dir), check_seconds=10)
    clock.now += 10
    assert model.current()[1] == "100"  # checked: nothing new
    add(export_dir, 101, saved["sound"])
    clock.now += 5
    assert model.current()[1] == "100"
    clock.now += 5
    assert model.current()[1] == "101"


def test_the_swapped_in_model_is_the_one_that_answers(export_dir, saved, clock, caplog):
    model = LatestModel(str(export_dir), check_seconds=0)
    first, _ = model.current()
    add(export_dir, 101, saved["sound"])
    with caplog.at_level(logging.WARNING):
        serving, version = model.current()
    assert version == "101" and serving is not first
    assert f"Now serving model version {export_dir / '101'}" in caplog.text
    probabilities, classes = serving.predict(np.array([7]), np.eye(1, 784, 3, dtype=np.float32))
    assert probabilities.shape == (1, 10) and classes.tolist() == [3]


def test_a_refused_version_waits_a_back_off_that_doubles_up_to_an_hour(export_dir, saved, clock, caplog):
    model = LatestModel(str(export_dir), check_seconds=0, retry_seconds=60)
    add(export_dir, 101, saved["nan"])
    waits = []
    for _ in range(9):
        caplog.clear()
        assert model.current()[1] == "100"
        assert "Not serving" in caplog.text and "keeping" in caplog.text
        retry_at, backoff = model._retry_at[str(export_dir / "101")]
        assert retry_at == clock.now + backoff
        waits.append(backoff)
        clock.now += backoff - 1
        caplog.clear()
        assert model.current()[1] == "100"
        assert "Not serving" not in caplog.text  # not yet due: not even loaded
        clock.now += 1
    assert waits == [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]


def test_a_version_that_becomes_sound_is_served_and_forgotten_as_a_failure(export_dir, saved, clock):
    model = LatestModel(str(export_dir), check_seconds=0, retry_seconds=60)
    broken = add(export_dir, 101, saved["nan"])
    assert model.current()[1] == "100"
    shutil.rmtree(broken)
    add(export_dir, 101, saved["sound"])  # the upload completed
    clock.now += 60
    assert model.current()[1] == "101"
    assert model._retry_at == {}


def test_an_export_dir_that_cannot_be_listed_keeps_the_current_model(export_dir, clock, caplog, tmp_path):
    model = LatestModel(str(export_dir), check_seconds=0)
    served = export_dir.rename(tmp_path / "moved")
    with caplog.at_level(logging.WARNING):
        serving, version = model.current()
    assert version == "100" and serving is not None
    assert f"Keeping model {export_dir / '100'}" in caplog.text
    served.rename(export_dir)


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ("nan", "^canary batch: non-finite probabilities$"),
        ("class_out_of_range", "^canary batch: a class outside 0..9$"),
    ],
)
def test_the_canary_refuses_what_a_stream_could_not_emit(saved, variant, message):
    canary_problem(ServingModel(str(saved["sound"])))
    with pytest.raises(ModelError, match=message):
        canary_problem(ServingModel(str(saved[variant])))


class Shaped:
    """A model answering with fixed shapes, to test the canary's shape check on its own."""

    def __init__(self, probabilities: tuple, classes: tuple) -> None:
        self.shapes = probabilities, classes
        self.calls = []

    def predict(self, keys, images):
        self.calls.append((keys, images))
        return np.full(self.shapes[0], 0.1, np.float32), np.zeros(self.shapes[1], np.int64)


@pytest.mark.parametrize(("probabilities", "classes"), [((8, 9), (8,)), ((7, 10), (8,)), ((8, 10), (7,))])
def test_the_canary_refuses_outputs_of_the_wrong_shape(probabilities, classes):
    with pytest.raises(ModelError, match=r"canary batch: outputs of shape"):
        canary_problem(Shaped(probabilities, classes))


def test_the_canary_batch_is_eight_rows_of_blank_full_and_random_images():
    model = Shaped((8, 10), (8,))
    canary_problem(model)
    ((keys, images),) = model.calls
    assert keys.tolist() == list(range(8)) and keys.dtype == np.int64
    assert images.dtype == np.float32 and images.shape == (8, 784)
    assert (images[0] == 0).all() and (images[1] == 1).all()
    assert ((images[2:] >= 0) & (images[2:] < 1)).all() and len(np.unique(images[2:])) > 1000


def test_the_handler_scores_in_calls_of_at_most_max_batch_rows(export_dir, monkeypatch):
    hot_swap._LOADED.clear()
    handler = StreamModelHandler(str(export_dir), max_batch=2, check_seconds=3600)
    assert handler.get_metrics_namespace() == "mnistkit_RunInference" and handler.should_skip_batching()
    model = handler.load_model()
    sizes = []
    serving = model.current()[0]

    class Counting:
        name, precision = serving.name, serving.precision

        def predict(self, keys, images):
            sizes.append(len(keys))
            return serving.predict(keys, images)

    monkeypatch.setattr(model, "_model", Counting())
    rows = ParsedBatch(np.arange(5), np.eye(5, 784, dtype=np.float32), ["s"] * 5)
    batch = StreamBatch(rows, np.arange(5, dtype=np.float64))
    before = time.time()
    (scored,) = handler.run_inference(batch, model)
    assert sizes == [2, 2, 1]
    assert scored.classes.tolist() == [0, 1, 2, 3, 4] and scored.model_version == "100" and scored.errors == {}
    assert before <= scored.predicted_at <= time.time()
    assert handler.get_num_bytes(batch) == 5 * 784 * 4 + 5 * 8


def test_the_handler_keeps_the_check_period_it_was_given(export_dir, saved, clock):
    hot_swap._LOADED.clear()
    model = StreamModelHandler(str(export_dir), max_batch=4, check_seconds=30).load_model()
    add(export_dir, 101, saved["sound"])
    clock.now += 29
    assert model.current()[1] == "100"
    clock.now += 1
    assert model.current()[1] == "101"
    hot_swap._LOADED.clear()
