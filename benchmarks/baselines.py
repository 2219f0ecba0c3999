"""The comparison points of bench_predict.py, each a command of its own so it runs in a fresh process.

  per-row   the original Dataflow sample's strategy: one Python float() per value, one Keras model call
            per row (the 129 rows/s the issue measured)
  per-row-signature  the same with the SavedModel's serving signature, TensorFlow's cheapest per-row call
  stock     Beam's stock RunInference: KeyedModelHandler(TFModelHandlerNumpy) on the `.keras` file,
            default BatchElements, a per-row np.array(split) parse. Needs tensorflow_hub, so it runs
            in .venv-bench (see docs/BENCHMARKS.md), which does not have this project installed:
            keep this module's imports to Beam, TensorFlow and numpy.
  model-only  the model alone on in-memory images, one thread per core, timed after warm-up: the
            hardware's limit for this model, whatever the pipeline around it
  ceiling   no Beam at all: this kit's vectorised parser and model call, one thread per core in one
            process, writing the same JSON lines; what a pipeline could reach without overheads.

Usage: python benchmarks/baselines.py VARIANT --input TEXT --model DIR --output PREFIX [beam flags]
"""

from __future__ import annotations

import argparse
import json
import os
import time

FIELDS = ["key", "class", "confidence"] + [f"pred{i}" for i in range(10)]


def _json_row(key: int, probabilities) -> str:
    row = [key, int(probabilities.argmax()), float(probabilities.max())] + [float(p) for p in probabilities]
    return json.dumps(dict(zip(FIELDS, row, strict=True)))


def _per_row(args: argparse.Namespace, beam_args: list[str], keras_model: bool) -> None:
    import apache_beam as beam
    import numpy as np
    from apache_beam.options.pipeline_options import PipelineOptions

    class PredictRow(beam.DoFn):
        def __init__(self, model_dir: str) -> None:
            self._model_dir = model_dir

        def setup(self) -> None:
            if keras_model:
                import keras

                model = keras.saving.load_model(os.path.join(self._model_dir, "model.keras"))
                self._predict = lambda key, image: np.asarray(model(image, training=False))[0]
            else:
                import tensorflow as tf

                serve = tf.saved_model.load(self._model_dir).signatures["serving_default"]
                self._predict = lambda key, image: serve(key=key, image=image)["probabilities"].numpy()[0]

        def process(self, line: str):
            key, values = line.split(":")
            image = np.array([[float(v) for v in values.split(",")]], np.float32)
            yield _json_row(int(key), self._predict(np.array([int(key)]), image))

    with beam.Pipeline(options=PipelineOptions(beam_args)) as p:
        _ = (
            p
            | beam.io.ReadFromText(args.input)
            | beam.ParDo(PredictRow(args.model))
            | beam.io.WriteToText(args.output, file_name_suffix=".jsonl")
        )


def per_row(args: argparse.Namespace, beam_args: list[str]) -> None:
    _per_row(args, beam_args, keras_model=True)


def per_row_signature(args: argparse.Namespace, beam_args: list[str]) -> None:
    _per_row(args, beam_args, keras_model=False)


def stock(args: argparse.Namespace, beam_args: list[str]) -> None:
    import apache_beam as beam
    import numpy as np
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
    from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerNumpy
    from apache_beam.options.pipeline_options import PipelineOptions

    def parse(line: str):
        key, values = line.split(":")
        return int(key), np.array(values.split(","), dtype=np.float32)

    def to_json(keyed):
        key, result = keyed
        return _json_row(key, np.asarray(result.inference))

    handler = KeyedModelHandler(TFModelHandlerNumpy(os.path.join(args.model, "model.keras")))
    with beam.Pipeline(options=PipelineOptions(beam_args)) as p:
        _ = (
            p
            | beam.io.ReadFromText(args.input)
            | beam.Map(parse)
            | RunInference(handler)
            | beam.Map(to_json)
            | beam.io.WriteToText(args.output, file_name_suffix=".jsonl")
        )


def ceiling(args: argparse.Namespace, beam_args: list[str]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from mnistkit.pipeline.batch import READ_BATCH_ROWS
    from mnistkit.pipeline.inference.handler import predict_rows
    from mnistkit.pipeline.inference.runtimes import load_runtime, runtime_options
    from mnistkit.pipeline.io.files import match_files, plan_ranges, read_range
    from mnistkit.pipeline.io.formats import detect_format
    from mnistkit.pipeline.io.parsing import PARSERS, load_fast_path
    from mnistkit.pipeline.rows import PredictionBatch
    from mnistkit.pipeline.runners import RunnerConfig, available_cores

    # The engine's threads sized as for the pipeline's worker threads.
    model = load_runtime(args.model, runtime_options(RunnerConfig(), args.runtime))
    cores = available_cores()
    fmt = detect_format(args.input)

    # The pipeline's choices: compiled parsers loaded up front for a big input, one model call per read batch.
    load_fast_path(fmt, sum(size for _, size in match_files(args.input)))

    def work(part: int, file_range) -> int:
        rows = 0
        with open(f"{args.output}-{part:05d}.jsonl", "w") as out:
            for raw in read_range(file_range, fmt, READ_BATCH_ROWS):
                batch, _ = PARSERS[fmt](raw.records, raw.source)
                probabilities, classes, _ = predict_rows(model, batch, READ_BATCH_ROWS)
                out.write(PredictionBatch(batch.keys, classes, probabilities).to_json_lines() + "\n")
                rows += len(batch)
        return rows

    ranges = plan_ranges(args.input, fmt, cores)
    with ThreadPoolExecutor(cores) as pool:
        rows = sum(pool.map(work, range(len(ranges)), ranges))
    print(f"ceiling: {rows} rows")


def model_only(args: argparse.Namespace, beam_args: list[str]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from mnistkit.model_export.model import NUM_PIXELS
    from mnistkit.pipeline.inference.runtimes import load_runtime, runtime_options
    from mnistkit.pipeline.runners import RunnerConfig, available_cores

    model = load_runtime(args.model, runtime_options(RunnerConfig(), args.runtime))
    keys = np.arange(256)
    images = np.random.default_rng(0).random((256, NUM_PIXELS), dtype=np.float32)
    model.predict(keys, images)

    def calls(n: int) -> None:
        for _ in range(n):
            model.predict(keys, images)

    cores = available_cores()
    started = time.monotonic()
    with ThreadPoolExecutor(cores) as pool:
        list(pool.map(calls, [100] * cores))
    rate = 100 * cores * len(keys) / (time.monotonic() - started)
    print(f"model-only steady state: {rate:,.0f} rows/s")


VARIANTS = {
    "per-row": per_row,
    "per-row-signature": per_row_signature,
    "stock": stock,
    "model-only": model_only,
    "ceiling": ceiling,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("--input", required=True)
    parser.add_argument("--model", required=True, help="a version dir (SavedModel + model.keras)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--runtime", default="auto", help="model-only and ceiling: the mnistkit runtime")
    args, beam_args = parser.parse_known_args()
    started = time.monotonic()
    VARIANTS[args.variant](args, beam_args)
    print(f"{args.variant}: {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
