"""The Beam steps the batch pipeline is composed of: read files → parse → infer → format.

A file or BigQuery source feeds RawBatches into ParseRecords and Predict; the streaming pipeline
uses the same readers (io/files.py) and parsers (io/parsing.py) on its micro-batches. Every step
counts rows through accounting.py and sends what it rejects to its DEAD_LETTERS output. Steps
declare the batch types they emit, so Beam codes (and sizes) them with coders.py's BatchCoder.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference

from mnistkit.pipeline import accounting, coders  # noqa: F401  (coders: registers the batch types' coder)
from mnistkit.pipeline.inference.handler import SavedModelHandler
from mnistkit.pipeline.io.files import FileRange, is_compressed, plan_ranges, read_range
from mnistkit.pipeline.io.parsing import load_fast_path, parse
from mnistkit.pipeline.rows import DEAD_LETTERS, DeadLetter, ParsedBatch, PredictionBatch, RawBatch


class _ReadRangeFn(beam.DoFn):
    def __init__(self, fmt: str, batch_rows: int) -> None:
        self._fmt = fmt
        self._batch_rows = batch_rows

    def process(self, file_range: FileRange) -> Iterator[RawBatch | beam.pvalue.TaggedOutput]:
        # Progress is told in bytes of the input as stored: records' own bytes where the file is
        # stored as read, the range's size once it is done where it is compressed.
        compressed = is_compressed(file_range.path)
        for item in read_range(file_range, self._fmt, self._batch_rows):
            if isinstance(item, DeadLetter):
                accounting.count_read(1)
                yield beam.pvalue.TaggedOutput(DEAD_LETTERS, item)
            else:
                accounting.count_read(len(item), 0 if compressed else item.nbytes)
                yield item
        if compressed:
            accounting.count_read(0, file_range.size)


class ReadFiles(beam.PTransform):
    """Files matching a pattern → RawBatches of at most `batch_rows` records (+ dead letters).

    The pattern is expanded and cut into ranges when the pipeline runs; only the ranges cross the
    Reshuffle that spreads them over the workers.
    """

    def __init__(self, pattern: str, fmt: str, batch_rows: int, desired_splits: int) -> None:
        super().__init__()
        self._pattern = pattern
        self._fmt = fmt
        self._batch_rows = batch_rows
        self._desired_splits = desired_splits

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        return (
            pbegin
            | "Pattern" >> beam.Create([self._pattern])
            | "Plan" >> beam.FlatMap(plan_ranges, self._fmt, self._desired_splits)
            | "Spread" >> beam.Reshuffle()
            | "Read"
            >> beam.ParDo(_ReadRangeFn(self._fmt, self._batch_rows))
            .with_output_types(RawBatch)
            .with_outputs(DEAD_LETTERS, main="main")
        )


class _ParseFn(beam.DoFn):
    def __init__(self, fmt: str, input_bytes: int) -> None:
        self._fmt = fmt
        self._input_bytes = input_bytes

    def setup(self) -> None:
        load_fast_path(self._fmt, self._input_bytes)

    def process(self, raw: RawBatch) -> Iterator[ParsedBatch | beam.pvalue.TaggedOutput]:
        batch, dead = parse(raw, self._fmt)
        if len(batch):
            yield batch
        for letter in dead:
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)


class ParseRecords(beam.PTransform):
    """RawBatches → ParsedBatches (main output) and DeadLetters (`DEAD_LETTERS` output).

    `input_bytes`: how big the whole input is, when known; a big one has each worker load the
    format's compiled parser up front (parsing.load_fast_path).
    """

    def __init__(self, fmt: str, input_bytes: int = 0) -> None:
        super().__init__()
        self._fmt = fmt
        self._input_bytes = input_bytes

    def expand(self, raw: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        parse = beam.ParDo(_ParseFn(self._fmt, self._input_bytes)).with_output_types(ParsedBatch)
        return raw | "Parse" >> parse.with_outputs(DEAD_LETTERS, main="main")


def _split_failures(result: PredictionBatch) -> Iterator[PredictionBatch | beam.pvalue.TaggedOutput]:
    if len(result):
        yield result
    for letter in result.failures:
        yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)


class Predict(beam.PTransform):
    """ParsedBatches → PredictionBatches (main) and DeadLetters of rows the model failed on."""

    def __init__(self, handler: SavedModelHandler) -> None:
        super().__init__()
        self._handler = handler

    def expand(self, parsed: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return (
            parsed
            | "RunInference" >> RunInference(self._handler).with_output_types(PredictionBatch)
            | "SplitFailures"
            >> beam.FlatMap(_split_failures).with_output_types(PredictionBatch).with_outputs(DEAD_LETTERS, main="main")
        )


def predictions_to_json(result: PredictionBatch) -> str:
    """A PredictionBatch as one multi-line element: a text sink then writes all its rows at once."""
    accounting.count_predicted(len(result))
    return result.to_json_lines()


def dead_letter_to_json(letter: DeadLetter) -> str:
    accounting.count_rejected(letter.reason)
    return letter.to_json()
