"""SavedModelHandler: batches bounded in rows, poisoned rows isolated, results split back per element."""

from __future__ import annotations

import numpy as np

from mnistkit.model_export.model import NUM_CLASSES, NUM_PIXELS
from mnistkit.pipeline.inference.handler import SavedModelHandler, predict_rows
from mnistkit.pipeline.rows import ParsedBatch, Reason


class PoisonedModel:
    """Fails every call that contains a poisoned key; otherwise predicts class `key % 10` for sure."""

    def __init__(self, poisoned=(), nan_keys=()):
        self.poisoned, self.nan_keys, self.calls = set(poisoned), set(nan_keys), []

    def predict(self, keys, images):
        self.calls.append(len(keys))
        if self.poisoned & set(keys.tolist()):
            raise ValueError("poisoned")
        probabilities = np.eye(NUM_CLASSES, dtype=np.float32)[keys % NUM_CLASSES]
        probabilities[np.isin(keys, list(self.nan_keys))] = np.nan
        return probabilities, keys % NUM_CLASSES


def _batch(keys, source="in.txt") -> ParsedBatch:
    keys = np.asarray(keys, np.int64)
    return ParsedBatch(keys, np.full((len(keys), NUM_PIXELS), 0.5, np.float32), [source] * len(keys))


def test_model_calls_never_exceed_the_batch_bound():
    model = PoisonedModel()
    probabilities, classes, errors = predict_rows(model, _batch(range(1000)), max_rows=256)
    assert model.calls == [256, 256, 256, 232] and errors == {}
    np.testing.assert_array_equal(classes, np.arange(1000) % 10)
    np.testing.assert_array_equal(probabilities.argmax(axis=1), classes)


def test_a_failing_call_is_retried_row_by_row_so_only_the_bad_rows_fail():
    model = PoisonedModel(poisoned={13, 200}, nan_keys={50})
    probabilities, classes, errors = predict_rows(model, _batch(range(300)), max_rows=100)
    assert sorted(errors) == [13, 50, 200]
    assert errors[13] == "ValueError: poisoned" and "non-finite" in errors[50]
    ok = [i for i in range(300) if i not in errors]
    np.testing.assert_array_equal(classes[ok], np.asarray(ok) % 10)
    assert model.calls.count(1) == 200  # the two poisoned batches of 100, row by row


def test_run_inference_returns_one_result_per_element_with_its_failures():
    handler = SavedModelHandler("unused", max_batch_size=4)
    parts = [_batch([1, 2, 3], "a.txt"), _batch([4, 5], "b.txt"), _batch([6], "c.txt")]
    results = handler.run_inference(parts, PoisonedModel(poisoned={5}))
    assert [r.keys.tolist() for r in results] == [[1, 2, 3], [4], [6]]
    [failure] = results[1].failures
    assert failure.source == "b.txt" and failure.reason == Reason.INFERENCE_ERROR
    assert failure.raw.startswith("5:0.5,0.5") and "poisoned" in failure.detail
    assert results[0].failures == [] and results[0].to_json_lines().count("\n") == 2
    assert handler.get_num_bytes(parts) == sum(p.images.nbytes + p.keys.nbytes for p in parts)


def test_batching_bounds_are_rows_whatever_the_element_size():
    kwargs = SavedModelHandler("unused", min_batch_size=8, max_batch_size=64).batch_elements_kwargs()
    assert kwargs["min_batch_size"] == 8 and kwargs["max_batch_size"] == 64
    assert kwargs["element_size_fn"](_batch(range(40))) == 40
    streaming = SavedModelHandler("unused", max_batch_size=10, max_batch_duration_secs=0.5)
    assert streaming.batch_elements_kwargs()["max_batch_duration_secs"] == 0.5


def test_the_handler_loads_the_export_and_follows_model_updates(exported_model, test_rows, direct_probabilities):
    from mnistkit.model_export.model import to_model_input

    handler = SavedModelHandler(str(exported_model / "missing"))
    handler.update_model_path(str(exported_model))
    keys, pixels = test_rows
    batch = ParsedBatch(keys[:10], to_model_input(pixels[:10]), ["x"] * 10)
    [result] = handler.run_inference([batch], handler.load_model())
    np.testing.assert_allclose(result.probabilities, direct_probabilities[:10], atol=1e-6)
    np.testing.assert_array_equal(result.classes, direct_probabilities[:10].argmax(axis=1))


def test_batch_runs_call_each_runtime_with_its_own_rows_by_default(exported_model):
    """OpenVINO scores a whole read batch per call, TensorFlow 256 rows, an endpoint 256 per request;
    --max-batch and --min-batch override them, and the smallest call defaults to the largest."""
    from mnistkit.pipeline.inference.factory import batch_handler
    from mnistkit.pipeline.inference.runtimes import RuntimeOptions, call_rows

    def bounds(uri, runtime="auto", min_batch=None, max_batch=None, here=True):
        handler = batch_handler(
            uri, min_batch=min_batch, max_batch=max_batch, runtime=RuntimeOptions(runtime), here=here
        ).handler
        kwargs = handler.batch_elements_kwargs()
        return kwargs["min_batch_size"], kwargs["max_batch_size"]

    model = str(exported_model)
    assert bounds(model, "openvino") == (2048, 2048) == (call_rows("openvino"),) * 2
    assert bounds(model, "auto") == (2048, 2048)  # auto is OpenVINO on this CPU
    assert bounds(model, "tensorflow") == (256, 256)
    assert bounds(model, "auto", here=False) == (2048, 2048)  # left to the workers: the largest
    assert bounds(model, "openvino", min_batch=64, max_batch=512) == (64, 512)
    assert bounds(model, "tensorflow", max_batch=1024) == (1024, 1024)
    assert bounds("http://127.0.0.1:9/v1/models/mnist:predict") == (256, 256)
