"""Helpers shared by the streaming tests: rows, a TestStream runner, and reading a stream's outputs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream as EventStream
from apache_beam.transforms.window import TimestampedValue

from mnistkit.pipeline.inference.hot_swap import StreamModelHandler
from mnistkit.pipeline.io.formats import encode_jsonl
from mnistkit.pipeline.io.streams import WriteStreamFiles
from mnistkit.pipeline.streaming.pipeline import BUNDLE_BASED_RUNNER, ScoreStream


def frozen_clock() -> float:
    """The batching timer's clock under TestStream: a batch's timer is due at `window_seconds` of
    TestStream processing time, which starts at 0 and moves only with advance_processing_time.

    (A module function, not a lambda: the batcher keeps its clock in pickled state.)
    """
    return 0.0


def payload(key: int, pixels: np.ndarray | None = None) -> bytes:
    """One JSON row; a plain grey image unless `pixels` (uint8 [784]) is given."""
    pixels = np.full(784, 128, np.uint8) if pixels is None else pixels
    return encode_jsonl(np.asarray([key]), pixels.reshape(1, -1)).strip()


def arrival(key: int | bytes, event_time: float, source: str | None = None) -> TimestampedValue:
    """A TestStream element: a row (its key, or raw bytes) arriving with `event_time`."""
    data = payload(key) if isinstance(key, int) else key
    return TimestampedValue((data, source or f"test:{key!r}", "jsonl"), event_time)


@dataclass
class Outputs:
    """A stream's output folder: predictions per micro-batch (file) in event order, dead letters."""

    batches: list[list[dict]]
    dead: list[dict]

    @property
    def rows(self) -> list[dict]:
        return [row for batch in self.batches for row in batch]

    def keys(self) -> list[list[int]]:
        return [[row["key"] for row in batch] for batch in self.batches]


def read_outputs(folder: Path) -> Outputs:
    def load(pattern: str) -> list[list[dict]]:
        return [[json.loads(line) for line in path.read_text().splitlines()] for path in sorted(folder.glob(pattern))]

    return Outputs(load("predictions-*.jsonl"), [letter for f in load("errors-*.jsonl") for letter in f])


def run_test_stream(stream: EventStream, model: str, out: Path, *, max_batch: int, window: float) -> Outputs:
    """Score a TestStream with ScoreStream on the BundleBasedDirectRunner, write it to `out`."""
    options = PipelineOptions([f"--runner={BUNDLE_BASED_RUNNER}", "--streaming"])
    handler = StreamModelHandler(model, max_batch=max_batch, check_seconds=3600)
    with beam.Pipeline(options=options) as pipeline:
        scored = pipeline | stream | ScoreStream(handler, max_batch, window, clock=frozen_clock)
        _ = (scored.scored, scored.dead_letters) | WriteStreamFiles(str(out), str(out))
    return read_outputs(out)


def applied_transforms(pipeline: beam.Pipeline, kind: type) -> list:
    """The transforms of type `kind` in a built (not run) pipeline, composites included."""
    found = []

    class Visitor(beam.pipeline.PipelineVisitor):
        def enter_composite_transform(self, node):
            if isinstance(node.transform, kind):
                found.append(node.transform)

        def visit_transform(self, node):
            self.enter_composite_transform(node)

    pipeline.visit(Visitor())
    return found
