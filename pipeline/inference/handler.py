"""SavedModelHandler: Beam RunInference over the exported model's serving signature.

RunInference brings what a hand-written DoFn would have to rebuild: one model per worker process
shared by its threads, model-load and batch-latency metrics, and model updates from a side input
(WatchFilePattern) for streaming. Its examples are whole ParsedBatches, not single rows, so
parsing stays vectorised; its BatchElements step weighs each ParsedBatch by its row count, so
`min_batch_size`/`max_batch_size` are rows whether a batch pipeline feeds thousand-row batches or
a streaming one feeds one-row batches.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from mnistkit.model_export.model import NUM_CLASSES
from mnistkit.pipeline.inference.runtimes import Runtime, RuntimeOptions, load_runtime
from mnistkit.pipeline.inference.savedmodel import local_copy, resolve_model
from mnistkit.pipeline.rows import DeadLetter, ParsedBatch, PredictionBatch, Reason

__all__ = [
    "split_by_part",
    "SavedModelHandler",
    "predict_rows",
]

_LOGGER = logging.getLogger(__name__)


class SavedModelHandler(ModelHandler[ParsedBatch, PredictionBatch, Runtime]):
    """Runs ParsedBatches through an exported model on the runtime `runtime` picks (runtimes.py).

    Args:
      model_uri: export base dir (newest version), version dir or its saved_model.pb; local or gs://.
      min_batch_size, max_batch_size: bounds, in rows, of one model call.
      max_batch_duration_secs: for streaming: longest time a row waits for its batch to fill.
      runtime: the inference runtime and precision, and the engine's threads per worker process;
        0 threads keeps the engine's default (all cores), which oversubscribes the CPU when
        several worker processes share a machine.
    """

    def __init__(
        self,
        model_uri: str,
        *,
        min_batch_size: int = 1,
        max_batch_size: int = 256,
        max_batch_duration_secs: float | None = None,
        runtime: RuntimeOptions = RuntimeOptions(),
        **kwargs: Any,
    ) -> None:
        super().__init__(
            min_batch_size=min_batch_size,
            max_batch_size=max_batch_size,
            max_batch_duration_secs=max_batch_duration_secs,
            element_size_fn=len,
            **kwargs,
        )
        self._model_uri = model_uri
        self._max_rows = max_batch_size
        self._runtime = runtime

    def load_model(self) -> Runtime:
        return load_runtime(local_copy(resolve_model(self._model_uri)), self._runtime)

    def update_model_path(self, model_path: str | None = None) -> None:
        if model_path:
            self._model_uri = model_path

    def run_inference(
        self,
        batch: Sequence[ParsedBatch],
        model: Runtime,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionBatch]:
        """One PredictionBatch per ParsedBatch, from model calls of at most `max_batch_size` rows."""
        rows = ParsedBatch.concat(batch)
        probabilities, classes, errors = predict_rows(model, rows, self._max_rows)
        return split_by_part(batch, rows, probabilities, classes, errors)

    def get_num_bytes(self, batch: Sequence[ParsedBatch]) -> int:
        # The default pickles the whole batch just to measure it.
        return sum(part.nbytes for part in batch)

    def get_metrics_namespace(self) -> str:
        return "mnistkit_RunInference"


def split_by_part(
    batch: Sequence[ParsedBatch],
    rows: ParsedBatch,
    probabilities: np.ndarray,
    classes: np.ndarray,
    errors: dict[int, str],
) -> list[PredictionBatch]:
    """One PredictionBatch per part of `batch` (whose rows, concatenated, are `rows`): the outputs
    of its rows that succeeded, and a dead letter for each row in `errors` (index → why)."""
    failed = np.zeros(len(rows), bool)
    failed[list(errors)] = True
    results = []
    start = 0
    for part in batch:
        stop = start + len(part)
        ok = ~failed[start:stop]
        failures = [
            DeadLetter.of(rows.sources[i], rows.row_text(i), Reason.INFERENCE_ERROR, errors[i])
            for i in range(start, stop)
            if failed[i]
        ]
        keys, part_classes, part_probabilities = rows.keys[start:stop], classes[start:stop], probabilities[start:stop]
        results.append(PredictionBatch(keys[ok], part_classes[ok], part_probabilities[ok], failures))
        start = stop
    return results


def predict_rows(model: Runtime, rows: ParsedBatch, max_rows: int) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Probabilities [n, 10] and classes [n] for `rows`, and an error message by failed row index.

    A model call that raises is retried row by row, so one poisonous row costs itself only, not the
    rows that happened to share its batch. Non-finite probabilities count as failures too.
    """
    n = len(rows)
    probabilities = np.zeros((n, NUM_CLASSES), np.float32)
    classes = np.zeros(n, np.int64)
    errors: dict[int, str] = {}
    for start in range(0, n, max_rows):
        stop = min(start + max_rows, n)
        try:
            probabilities[start:stop], classes[start:stop] = model.predict(
                rows.keys[start:stop], rows.images[start:stop]
            )
        except Exception as exc:  # whatever the model raises, the rows decide who is to blame
            _LOGGER.warning("Model call on %d rows failed (%s); retrying row by row", stop - start, exc)
            for i in range(start, stop):
                try:
                    probabilities[i : i + 1], classes[i : i + 1] = model.predict(
                        rows.keys[i : i + 1], rows.images[i : i + 1]
                    )
                except Exception as row_exc:  # as above, for one row
                    errors[i] = f"{type(row_exc).__name__}: {row_exc}"
    for i in np.flatnonzero(~np.isfinite(probabilities).all(axis=1)):
        errors.setdefault(int(i), "the model returned non-finite probabilities")
    return probabilities, classes, errors
