"""The batch types travel with BatchCoder: Beam sizes them from `nbytes` and never pickles them
just to estimate their size (a 2,048-row batch is 6–10 MB; see pipeline/coders.py)."""

from __future__ import annotations

import pickle

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.coders import registry

from mnistkit.pipeline import coders
from mnistkit.pipeline.batch import PredictConfig, build_pipeline
from mnistkit.pipeline.coders import BATCH_TYPES, BatchCoder
from mnistkit.pipeline.inference.handler import SavedModelHandler
from mnistkit.pipeline.inference.runtimes import RuntimeOptions
from mnistkit.pipeline.rows import DeadLetter, ParsedBatch, PredictionBatch, RawBatch, Reason, ScoredBatch, StreamBatch


def _batches(rows: int = 256) -> list:
    rng = np.random.default_rng(3)
    images = rng.random((rows, 784), dtype=np.float32)
    parsed = ParsedBatch(np.arange(rows, dtype=np.int64), images, ["s"] * rows)
    probabilities = rng.random((rows, 10), dtype=np.float32)
    failure = DeadLetter.of("s", b"1:bad", Reason.INFERENCE_ERROR, "boom")
    stream = StreamBatch(parsed, np.linspace(0, 1, rows))
    return [
        RawBatch("s", [b"%d:%s" % (i, b"0.5," * 783 + b"0.5") for i in range(rows)]),
        parsed,
        PredictionBatch(parsed.keys, probabilities.argmax(1), probabilities, [failure]),
        stream,
        ScoredBatch(stream, probabilities, probabilities.argmax(1), {1: "boom"}, "7", 1.5),
    ]


@pytest.mark.parametrize("batch", _batches(), ids=lambda b: type(b).__name__)
def test_every_batch_type_round_trips_and_is_sized_from_its_bytes(batch):
    coder = registry.get_coder(type(batch))
    assert isinstance(coder, BatchCoder)
    assert type(batch) in BATCH_TYPES
    decoded = coder.decode(coder.encode(batch))
    assert type(decoded) is type(batch)
    assert pickle.dumps(decoded, protocol=5) == pickle.dumps(batch, protocol=5)
    assert coder.estimate_size(batch) == batch.nbytes > 0
    # The estimate is close to what encoding really takes.
    assert 0.5 < batch.nbytes / len(coder.encode(batch)) <= 1.0


def test_nbytes_counts_the_arrays():
    raw, parsed, predicted, stream, scored = _batches(rows=5)
    assert raw.nbytes == sum(len(r) + 1 for r in raw.records)
    assert parsed.nbytes == 5 * 8 + 5 * 784 * 4
    assert predicted.nbytes == 5 * 8 + 5 * 8 + 5 * 10 * 4 + len(b"1:bad")
    assert stream.nbytes == parsed.nbytes + 5 * 8
    assert scored.nbytes == stream.nbytes + 5 * 10 * 4 + 5 * 8


def test_the_batch_pipeline_declares_its_batch_types(tmp_path, exported_model):
    (tmp_path / "in.txt").write_text("")
    config = PredictConfig(model=str(exported_model), input=str(tmp_path / "in.txt"), output=str(tmp_path / "out"))
    handler = SavedModelHandler(str(exported_model), runtime=RuntimeOptions())
    pipeline = beam.Pipeline()
    build_pipeline(pipeline, config, "text", handler)
    produced: dict[str, object] = {}

    class Outputs(beam.pipeline.PipelineVisitor):
        def visit_transform(self, node) -> None:
            for tag, value in node.outputs.items():
                produced[f"{node.full_label}[{tag}]"] = value.element_type

    pipeline.visit(Outputs())
    expected = {
        "ReadFiles/Read/ParDo(_ReadRangeFn)[None]": RawBatch,
        "ParseRecords/Parse/ParDo(_ParseFn)[None]": ParsedBatch,
        "Predict/SplitFailures/FlatMap(_split_failures)[None]": PredictionBatch,
    }
    for label, batch_type in expected.items():
        assert produced.get(label) is batch_type, (label, produced.get(label))
        assert isinstance(registry.get_coder(produced[label]), BatchCoder)
    run_inference = [label for label in produced if label.startswith("Predict/RunInference/")]
    assert PredictionBatch in {produced[label] for label in run_inference}


def test_a_local_run_sizes_batches_without_encoding_them(monkeypatch, tmp_path, exported_model, inputs, run_pipeline):
    calls = {"encode": 0, "estimate": 0}
    real_estimate = BatchCoder.estimate_size

    def encode(self, value):
        calls["encode"] += 1
        return coders.pickle.dumps(value, protocol=5)

    def estimate(self, value):
        calls["estimate"] += 1
        return real_estimate(self, value)

    monkeypatch.setattr(BatchCoder, "encode", encode)
    monkeypatch.setattr(BatchCoder, "estimate_size", estimate)
    summary, predictions, _ = run_pipeline(exported_model, inputs["text"], tmp_path / "out")
    assert len(predictions) == summary.rows_predicted > 0
    assert calls["estimate"] > 0 and calls["encode"] == 0
