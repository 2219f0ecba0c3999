"""The three input formats: detection from file names, writers, and `convert` between them (and from IDX).

All writers take uint8 pixels, the datasets' native form, and write the same float32 values:
text and JSON use the shortest decimal that reads back as exactly `pixel / 255` in float32, the
value TFRecord inputs are scaled to, so one image gives one prediction in every format.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from operator import itemgetter
from pathlib import Path

import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from mnistkit.model_export.model import NUM_PIXELS, to_model_input
from mnistkit.model_export.training_data import LABEL_FEATURE
from mnistkit.pipeline.choices import FORMATS
from mnistkit.pipeline.io.example_proto import encode_example
from mnistkit.pipeline.io.files import FileRange, frame_tfrecord, match_files, read_range
from mnistkit.pipeline.io.parsing import PARSERS
from mnistkit.pipeline.rows import DeadLetter

__all__ = [
    "ConvertResult",
    "ENCODERS",
    "FormatError",
    "convert",
    "dataset_rows",
    "detect_format",
    "encode_jsonl",
    "encode_text",
    "encode_tfrecord",
    "idx_rows",
    "image_rows",
    "keyed_rows",
    "shard_paths",
    "write_rows",
]

_EXTENSIONS = {
    ".txt": "text",
    ".text": "text",
    ".csv": "text",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".tfrecord": "tfrecord",
    ".tfrecords": "tfrecord",
    ".tfr": "tfrecord",
}
_CHUNK_ROWS = 4096


class FormatError(ValueError):
    """A file whose format cannot be told from its name, or a conversion that cannot be done."""


def detect_format(uri: str) -> str:
    """The format named by the extension of `uri` (a compression suffix such as .gz is skipped)."""
    name = os.path.basename(uri.rstrip("/"))
    if CompressionTypes.detect_compression_type(name) != CompressionTypes.UNCOMPRESSED:
        name = os.path.splitext(name)[0]
    if "idx" in name and "ubyte" in name:
        return "idx"
    fmt = _EXTENSIONS.get(os.path.splitext(name)[1].lower())
    if fmt is None:
        known = ", ".join(sorted(_EXTENSIONS))
        raise FormatError(
            f"Cannot tell the format of {uri} from its extension (known: {known}); pass --format ({'|'.join(FORMATS)})."
        )
    return fmt


@cache
def _pixel_text() -> tuple[bytes, ...]:
    every_level = np.zeros((1, NUM_PIXELS), np.uint8)
    every_level[0, :256] = np.arange(256)
    values = to_model_input(every_level)[0, :256]
    return tuple(np.format_float_positional(v, unique=True, trim="-").encode() for v in values)


def _pixel_values(row: list[int]) -> bytes:
    return b",".join(itemgetter(*row)(_pixel_text()))


def encode_text(keys: np.ndarray, pixels: np.ndarray) -> bytes:
    """Rows as `key:v1,...,v784` lines."""
    lines = [b"%d:%s" % (key, _pixel_values(row)) for key, row in zip(keys.tolist(), pixels.tolist(), strict=True)]
    return b"\n".join(lines) + b"\n" if lines else b""


def encode_jsonl(keys: np.ndarray, pixels: np.ndarray) -> bytes:
    """Rows as `{"key": k, "image": [784 numbers]}` lines."""
    lines = [
        b'{"key": %d, "image": [%s]}' % (key, _pixel_values(row))
        for key, row in zip(keys.tolist(), pixels.tolist(), strict=True)
    ]
    return b"\n".join(lines) + b"\n" if lines else b""


def encode_tfrecord(keys: np.ndarray, pixels: np.ndarray, labels: np.ndarray | None = None) -> bytes:
    """Rows as TFRecord frames of tf.train.Example with `key` int64 and `image` 784 raw bytes.

    With `labels`, each Example also gets `label` int64 (training shards); predict ignores it.
    """
    label_list = [None] * len(keys) if labels is None else labels.tolist()
    frames = [
        frame_tfrecord(encode_example(key, row.tobytes(), None if label is None else {LABEL_FEATURE: label}))
        for key, row, label in zip(keys.tolist(), pixels, label_list, strict=True)
    ]
    return b"".join(frames)


ENCODERS: dict[str, Callable[..., bytes]] = {
    "text": encode_text,
    "jsonl": encode_jsonl,
    "tfrecord": encode_tfrecord,
}


def shard_paths(output: str, shards: int) -> list[str]:
    """`out/test.tfrecord` → `out/test-00000-of-00004.tfrecord`, ... (the name itself when 1 shard)."""
    if shards == 1:
        return [output]
    stem, dot, extension = output.rpartition("/")[2].partition(".")
    head = output[: len(output) - len(stem + dot + extension)]
    return [f"{head}{stem}-{i:05d}-of-{shards:05d}{dot}{extension}" for i in range(shards)]


def write_rows(output: str, fmt: str, chunks: Iterable[tuple[np.ndarray, ...]], shards: int = 1) -> list[str]:
    """Write (keys, uint8 pixels [n, 784]) chunks as `fmt`, rows dealt round-robin over `shards` files.

    A chunk may carry more per-row columns after the pixels (a TFRecord's labels), passed on to
    the format's encoder.

    Each file appears only once complete (written under a temporary name, then renamed);
    a .gz name gets gzip compression.
    """
    encode = ENCODERS[fmt]
    paths = shard_paths(output, shards)
    temporary = [f"{path}.tmp-{uuid.uuid4().hex[:8]}" for path in paths]
    files = [
        FileSystems.create(tmp, compression_type=CompressionTypes.detect_compression_type(path))
        for tmp, path in zip(temporary, paths, strict=True)
    ]
    try:
        for keys, pixels, *columns in chunks:
            pixels = pixels.reshape(len(pixels), NUM_PIXELS)
            for shard, f in enumerate(files):
                f.write(encode(keys[shard::shards], pixels[shard::shards], *(c[shard::shards] for c in columns)))
    except BaseException:
        for f in files:
            f.close()
        FileSystems.delete(temporary)
        raise
    for f in files:
        f.close()
    FileSystems.rename(temporary, paths)
    return paths


def idx_rows(
    path: str, limit: int | None = None, key_start: int = 0, repeat: int = 1
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(keys, uint8 pixels) chunks of an IDX images file (see image_rows)."""
    from mnistkit.model_export.datasets import read_idx

    images = read_idx(Path(path))
    pixels = images.reshape(len(images), -1)
    if pixels.shape[1] != NUM_PIXELS:
        raise FormatError(f"{path} holds {pixels.shape[1]}-pixel images, expected {NUM_PIXELS}")
    return image_rows(pixels, limit, key_start, repeat)


def dataset_rows(
    dataset: str,
    split: str,
    data_dir: str | None = None,
    limit: int | None = None,
    key_start: int = 0,
    repeat: int = 1,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(keys, uint8 pixels) chunks of a dataset split, found the way `mnistkit train` finds it."""
    from mnistkit.model_export.datasets import load_dataset

    images, _ = load_dataset(dataset, split, data_dir)
    return image_rows(images.reshape(len(images), NUM_PIXELS), limit, key_start, repeat)


def image_rows(
    pixels: np.ndarray, limit: int | None = None, key_start: int = 0, repeat: int = 1
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(keys, uint8 pixels) chunks keyed `key_start + index`, so keys map back to labels.

    `repeat` yields the images that many times with fresh consecutive keys (for load tests).
    """
    pixels = pixels[:limit]
    for round_ in range(repeat):
        for start in range(0, len(pixels), _CHUNK_ROWS):
            chunk = pixels[start : start + _CHUNK_ROWS]
            first = key_start + round_ * len(pixels) + start
            yield np.arange(first, first + len(chunk), dtype=np.int64), chunk


def keyed_rows(
    input_uri: str, fmt: str, rejected: Counter, limit: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(keys, uint8 pixels) chunks of a text, JSONL or TFRecord input, keys as in the input.

    Rows the parsers reject are counted into `rejected` by reason and skipped. Pixel values are
    rounded to the nearest 1/255, the TFRecord format's resolution.
    """
    remaining = limit
    for path, _ in match_files(input_uri):
        for item in read_range(FileRange(path), fmt, _CHUNK_ROWS):
            if isinstance(item, DeadLetter):
                rejected[item.reason] += 1
                continue
            batch, dead = PARSERS[fmt](item.records, item.source)
            rejected.update(letter.reason for letter in dead)
            keys, pixels = batch.keys, np.rint(batch.images * 255).astype(np.uint8)
            if remaining is not None:
                keys, pixels = keys[:remaining], pixels[:remaining]
                remaining -= len(keys)
            yield keys, pixels
            if remaining == 0:
                return


@dataclass
class ConvertResult:
    rows: int = 0
    rejected: Counter = field(default_factory=Counter)
    files: list[str] = field(default_factory=list)


def convert(
    input_uri: str | None,
    output: str,
    fmt: str,
    input_format: str | None = None,
    limit: int | None = None,
    key_start: int = 0,
    repeat: int = 1,
    shards: int = 1,
    dataset: str | None = None,
    split: str = "test",
    data_dir: str | None = None,
) -> ConvertResult:
    """Convert a dataset split, an IDX images file or a text/JSONL/TFRecord input into `fmt`.

    Give either `input_uri` or `dataset` (with `split` and optionally `data_dir`); see image_rows
    and keyed_rows for how rows are keyed.
    """
    if (input_uri is None) == (dataset is None):
        raise FormatError("Give either an input file or a dataset to convert, not both.")
    if fmt not in FORMATS:
        raise FormatError(f"Cannot write {fmt!r}; choose one of {', '.join(FORMATS)}.")
    result = ConvertResult()
    input_format = "dataset" if dataset else input_format or detect_format(input_uri)
    if input_format == "dataset":
        rows = dataset_rows(dataset, split, data_dir, limit, key_start, repeat)
    elif input_format == "idx":
        rows = idx_rows(input_uri, limit, key_start, repeat)
    elif repeat != 1 or key_start:
        raise FormatError("--repeat and --key-start need an IDX or dataset input; other inputs keep their own keys.")
    else:
        rows = keyed_rows(input_uri, input_format, result.rejected, limit)

    def counted() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for keys, pixels in rows:
            result.rows += len(keys)
            yield keys, pixels

    result.files = write_rows(output, fmt, counted(), shards)
    return result
