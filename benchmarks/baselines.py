"""The comparison points of bench_predict.py, each a command of its own so it runs in a fresh process.

  per-row   the original Dataflow sample's strategy: one Python float() per value, one model call per row
  stock     Beam's stock RunInference: KeyedModelHandler(TFModelHandlerNumpy) on the `.keras` file,
            default BatchElements, a per-row np.array(split) parse. Needs tensorflow_hub, so it runs
            in .venv-bench (see docs/BENCHMARKS.md), which does not have this project installed:
            keep this module's imports to Beam, TensorFlow and numpy.
  ceiling   no Beam at all: this kit's vectorised parser and model call, one thread per core in one
            process, writing the same JSON lines; what a pipeline could reach without overheads.

Usage: python benchmarks/baselines.py {per-row|stock|ceiling} --input TEXT --model DIR --output PREFIX [beam flags]
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


def per_row(args: argparse.Namespace, beam_args: list[str]) -> None:
    import apache_beam as beam
    import numpy as np
    from apache_beam.options.pipeline_options import PipelineOptions

    class PredictRow(beam.DoFn):
        def __init__(self, model_dir: str) -> None:
            self._model_dir = model_dir

        def setup(self) -> None:
            import tensorflow as tf

            self._serve = tf.saved_model.load(self._model_dir).signatures["serving_default"]

        def process(self, line: str):
            key, values = line.split(":")
            image = np.array([[float(v) for v in values.split(",")]], np.float32)
            out = self._serve(key=np.array([int(key)]), image=image)
            yield _json_row(int(key), out["probabilities"].numpy()[0])

    with beam.Pipeline(options=PipelineOptions(beam_args)) as p:
        _ = (
            p
            | beam.io.ReadFromText(args.input)
            | beam.ParDo(PredictRow(args.model))
            | beam.io.WriteToText(args.output, file_name_suffix=".jsonl")
        )


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

    from pipeline.files import plan_ranges, read_range
    from pipeline.handler import predict_rows
    from pipeline.model import ServingModel
    from pipeline.options import available_cores
    from pipeline.parsing import parse_text
    from pipeline.rows import PredictionBatch

    model = ServingModel(args.model)
    cores = available_cores()

    def work(part: int, file_range) -> int:
        rows = 0
        with open(f"{args.output}-{part:05d}.jsonl", "w") as out:
            for raw in read_range(file_range, "text", 2048):
                batch, _ = parse_text(raw.records, raw.source)
                probabilities, classes, _ = predict_rows(model, batch, 256)
                out.write(PredictionBatch(batch.keys, classes, probabilities).to_json_lines() + "\n")
                rows += len(batch)
        return rows

    ranges = plan_ranges(args.input, "text", cores)
    with ThreadPoolExecutor(cores) as pool:
        rows = sum(pool.map(work, range(len(ranges)), ranges))
    print(f"ceiling: {rows} rows")


VARIANTS = {"per-row": per_row, "stock": stock, "ceiling": ceiling}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("--input", required=True)
    parser.add_argument("--model", required=True, help="a version dir (SavedModel + model.keras)")
    parser.add_argument("--output", required=True)
    args, beam_args = parser.parse_known_args()
    started = time.monotonic()
    VARIANTS[args.variant](args, beam_args)
    print(f"{args.variant}: {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
