"""The streaming model handler: micro-batches of rows with their event times, and a model that
follows its export dir while the stream runs.

Model replacement without a restart. Beam's own mechanism is a side input of ModelMetadata
(`RunInference(model_metadata_pcoll=...)`, fed by `WatchFilePattern`). Neither local runner can
serve it: the FnApiRunner materialises a side input completely before the stage that reads it
runs, so an unbounded watcher stalls the whole stream until the watcher stops, and the
BundleBasedDirectRunner (the one that runs Pub/Sub and TestStream) cannot run the polling
splittable DoFn that WatchFilePattern is built on. So the loaded model itself follows the
export dir: `LatestModel` re-resolves the newest version at most every `check_seconds` and
swaps it in, on every runner alike. Rows of one model call always share one version, and every
output row names it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from mnistkit.model_export.model import NUM_CLASSES, NUM_PIXELS
from mnistkit.pipeline.inference.handler import predict_rows
from mnistkit.pipeline.inference.runtimes import (
    Runtime,
    RuntimeOptions,
    RuntimeUnavailable,
    choose_runtime,
    load_runtime,
)
from mnistkit.pipeline.inference.savedmodel import ModelError, local_copy, resolve_model, validate_model
from mnistkit.pipeline.rows import ScoredBatch, StreamBatch

__all__ = [
    "LatestModel",
    "canary_problem",
    "StreamModelHandler",
]

_LOGGER = logging.getLogger(__name__)


class LatestModel:
    """The newest valid version under a model URI, loaded, and re-resolved every `check_seconds`.

    A version dir as the URI pins that version. A newer export that fails to copy or load,
    breaks the serving contract, or answers a canary batch with non-finite or malformed output is
    logged and not swapped in: the current model keeps serving, and the version is tried again
    later (after `retry_seconds`, doubling up to an hour), since a version still being uploaded
    looks the same as a broken one until it is complete. A version the chosen runtime cannot
    serve (a PyTorch export under `--runtime tensorflow`) is skipped for good, with one warning.
    """

    def __init__(
        self, uri: str, check_seconds: float, runtime: RuntimeOptions = RuntimeOptions(), retry_seconds: float = 60.0
    ) -> None:
        self._uri = uri
        self._check_seconds = check_seconds
        self._runtime = runtime
        self._retry_seconds = retry_seconds
        self._version_uri = resolve_model(uri)
        self._model = load_runtime(local_copy(self._version_uri), runtime)
        self._checked_at = time.monotonic()
        # Versions that failed: when each may be tried again, and its current back-off.
        self._retry_at: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return os.path.basename(self._version_uri)

    def current(self) -> tuple[Runtime, str]:
        """The model to use for the next call, and its version."""
        with self._lock:
            due = time.monotonic() - self._checked_at >= self._check_seconds
            if due:
                self._checked_at = time.monotonic()
        # Loading a new version takes a second or so; other threads keep serving the old one.
        if due:
            self._refresh()
        with self._lock:
            return self._model, self.version

    def _refresh(self) -> None:
        try:
            newest = resolve_model(self._uri)
        except ModelError as exc:
            _LOGGER.warning("Keeping model %s: %s", self._version_uri, exc)
            return
        if newest == self._version_uri:
            return
        retry_at, backoff = self._retry_at.get(newest, (0.0, self._retry_seconds / 2))
        if time.monotonic() < retry_at:
            return
        try:
            choose_runtime(self._runtime, validate_model(newest).metadata["framework"])
            model = load_runtime(local_copy(newest), self._runtime)
            canary_problem(model)
        except RuntimeUnavailable as exc:
            # Not a version still uploading: this runtime will never serve it.
            self._retry_at[newest] = (float("inf"), 0.0)
            _LOGGER.warning("Skipping model version %s (keeping %s): %s", newest, self._version_uri, exc)
            return
        except Exception as exc:  # ModelError, or TensorFlow's zoo of types for unreadable SavedModels
            backoff = min(backoff * 2, 3600.0)
            self._retry_at[newest] = (time.monotonic() + backoff, backoff)
            _LOGGER.error("Not serving %s (keeping %s, retry in %.0f s): %s", newest, self._version_uri, backoff, exc)
            return
        self._retry_at.pop(newest, None)
        with self._lock:
            self._model, self._version_uri = model, newest
        _LOGGER.warning("Now serving model version %s", newest)


def canary_problem(model: Runtime) -> None:
    """Raise ModelError unless `model` answers a small fixed batch with finite probabilities."""
    rng = np.random.default_rng(0)
    images = np.concatenate([np.zeros((1, NUM_PIXELS)), np.ones((1, NUM_PIXELS)), rng.random((6, NUM_PIXELS))])
    probabilities, classes = model.predict(np.arange(8, dtype=np.int64), images.astype(np.float32))
    probabilities, classes = np.asarray(probabilities), np.asarray(classes)
    if probabilities.shape != (8, NUM_CLASSES) or classes.shape != (8,):
        raise ModelError(f"canary batch: outputs of shape {probabilities.shape} and {classes.shape}")
    if not np.isfinite(probabilities).all():
        raise ModelError("canary batch: non-finite probabilities")
    if ((classes < 0) | (classes >= NUM_CLASSES)).any():
        raise ModelError("canary batch: a class outside 0..9")


# One LatestModel per export dir (and check period) and process. Beam's own cache (`Shared`)
# holds models weakly, and the BundleBasedDirectRunner makes a new RunInference DoFn for every
# bundle: with nothing else holding the model, every micro-batch there would load it again.
_LOADED: dict[tuple[str, float, RuntimeOptions], LatestModel] = {}
_LOADED_LOCK = threading.Lock()


class StreamModelHandler(ModelHandler[StreamBatch, ScoredBatch, LatestModel]):
    """Scores one StreamBatch per model call (calls of at most `max_batch` rows).

    The micro-batches are formed before RunInference, with the rows' event times alongside, so
    RunInference's own batching is off: it would only join micro-batches that share a bundle.
    """

    def __init__(
        self, model_uri: str, *, max_batch: int, check_seconds: float = 10.0, runtime: RuntimeOptions = RuntimeOptions()
    ) -> None:
        super().__init__()
        self._model_uri = model_uri
        self._max_batch = max_batch
        self._check_seconds = check_seconds
        self._runtime = runtime

    def load_model(self) -> LatestModel:
        key = (self._model_uri, self._check_seconds, self._runtime)
        with _LOADED_LOCK:
            if key not in _LOADED:
                _LOADED[key] = LatestModel(self._model_uri, self._check_seconds, self._runtime)
            return _LOADED[key]

    def should_skip_batching(self) -> bool:
        return True

    def run_inference(
        self,
        batch: StreamBatch,
        model: LatestModel,
        inference_args: dict[str, Any] | None = None,
    ) -> list[ScoredBatch]:
        serving, version = model.current()
        probabilities, classes, errors = predict_rows(serving, batch.rows, self._max_batch)
        return [ScoredBatch(batch, probabilities, classes, errors, version, time.time())]

    def get_num_bytes(self, batch: StreamBatch) -> int:
        return batch.rows.nbytes

    def get_metrics_namespace(self) -> str:
        return "mnistkit_RunInference"
