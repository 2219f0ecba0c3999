"""TFRecord's fast path: one compiled pass over a batch of serialized tf.train.Examples.

parsing.parse_tfrecord hands every batch here first, as parse_text hands text to textparse.py.
The scanner accepts a record only when it can decide it exactly, and leaves every other record
to the protobuf path, which names the reasons; this module only ever says "valid, and this is its
key and these are its pixels".

Accepted here: an Example whose only field is `features`, once, spanning the record; whose only
fields are map entries, each exactly `key` then `value`, spanning the entry; with a `key` feature
holding exactly one int64 (packed or not) and an `image` feature holding exactly one bytes value
of 784 bytes, each once; other features only with a name of printable ASCII and a value the
scanner checks the way protobuf does (one list of int64s, floats or bytes, well framed). Every
varint canonical (no redundant continuation bytes), at most 10 bytes, its 10th byte 0 or 1.
Anything else (duplicates, unknown fields, other wire types, unusual but valid encodings) goes
to the protobuf path, which may still accept it.

Why: protobuf's decoder plus the Python around it costs ~5.4 µs per record, parse_tfrecord with
the scanner ~1.1 (docs/BENCHMARKS.md).
Its start-up (`import numba` and loading the cached code, ~0.3–0.5 s) pays for itself only
after ~100k records, so a process switches to it after `SCANNER_AFTER_ROWS` records. Worker
images compile it at build time with `python -m mnistkit.pipeline.io.exampleparse`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mnistkit.model_export.model import NUM_PIXELS
from mnistkit.pipeline.io.compiled import LazyKernel, packed

__all__ = ["SCANNER_AFTER_ROWS", "load", "ExampleScan", "scan_examples", "warm_up"]

# Records a process parses through protobuf before it loads the scanner: ~4 µs saved per
# record against ~0.4 s of loading.
SCANNER_AFTER_ROWS = 50_000


@dataclass(frozen=True)
class ExampleScan:
    """One batch scanned: `ok[i]` says record i was decided here, with `keys[i]` and `pixels[i]` (uint8)."""

    ok: np.ndarray
    keys: np.ndarray
    pixels: np.ndarray


def _compile() -> Callable[..., None]:
    from mnistkit.pipeline.io.example_kernel import scan

    return scan


_SCANNER = LazyKernel(lambda: warm_up(), "TFRecord")


def warm_up() -> Callable[..., None]:
    """Compile (or load from the on-disk cache) the scanner and run it once; returns it."""
    from mnistkit.pipeline.io.example_proto import encode_example

    kernel = _compile()
    _run(kernel, [encode_example(1, bytes(NUM_PIXELS))])
    return kernel


def _run(kernel: Callable[..., None], records: Sequence[bytes]) -> ExampleScan:
    n = len(records)
    buf, starts, lengths = packed(records)
    keys = np.zeros(n, np.uint64)
    pixels = np.empty((n, NUM_PIXELS), np.uint8)
    ok = np.zeros(n, np.bool_)
    kernel(buf, starts, lengths, keys, pixels, ok)
    return ExampleScan(ok, keys.view(np.int64), pixels)


def scan_examples(records: Sequence[bytes]) -> ExampleScan | None:
    """Scan a batch of serialized Examples, or None while this process warms up (then use protobuf)."""
    kernel = _SCANNER.get(len(records), SCANNER_AFTER_ROWS)
    return _run(kernel, records) if kernel is not None and records else None


def load() -> None:
    """Load the scanner now, whatever this process has parsed so far (no-op without numba)."""
    _SCANNER.load_now()


if __name__ == "__main__":
    # Compile the scanner into numba's cache, e.g. while building a worker image.
    warm_up()
    print("TFRecord scanner compiled and cached")
