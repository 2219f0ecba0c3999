"""Beam coders of the row model's batch types, so Beam sizes them without serialising them.

Beam samples elements of every PCollection to estimate its bytes (the sizes Dataflow's UI
shows), and a coder's default estimate is the length of the element encoded. For the generic
coder that means pickling a 2,048-row batch (6–10 MB) each time an element is sampled: on 100k
seed-format rows, 830 MB pickled and thrown away (about a tenth of the pipeline's CPU over the
no-Beam ceiling). These batches are only ever sampled or, on Dataflow, shuffled: encoding stays
pickle (protocol 5, buffers kept whole), the estimate is the batch's array and record bytes.
"""

from __future__ import annotations

import pickle
from typing import Any

import apache_beam as beam

from mnistkit.pipeline.rows import ParsedBatch, PredictionBatch, RawBatch, ScoredBatch, StreamBatch

__all__ = ["BatchCoder", "BATCH_TYPES"]

BATCH_TYPES = (RawBatch, ParsedBatch, PredictionBatch, StreamBatch, ScoredBatch)


class BatchCoder(beam.coders.Coder):
    """Pickles a batch; estimates its size from its `nbytes` instead of pickling it."""

    def encode(self, value: Any) -> bytes:
        return pickle.dumps(value, protocol=5)

    def decode(self, encoded: bytes) -> Any:
        return pickle.loads(encoded)

    def is_deterministic(self) -> bool:
        return False

    def estimate_size(self, value: Any) -> int:
        return value.nbytes

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


for _batch_type in BATCH_TYPES:
    beam.coders.registry.register_coder(_batch_type, BatchCoder)
