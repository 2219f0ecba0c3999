"""Vectorised parsers: a batch of raw records in, a ParsedBatch plus dead letters out.

Each format has a fast path that decodes the whole batch in one C-level call (pyarrow's CSV or
JSON reader, TensorFlow's `parse_example`). Cheap per-record checks (emptiness, size, key, value
count) run first so the common kinds of bad rows never reach it. When the fast path still fails,
the batch is split in halves until each failing record stands alone (`_isolate`), so one bad row
costs a few extra parses, not a per-row fallback for the whole batch; a record that fails alone
is classified by a slow, exact per-row check that names the reason.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from functools import cache
from typing import TypeVar

import numpy as np

from mnistkit.model_export.model import NUM_PIXELS, to_model_input
from mnistkit.pipeline.io import textparse
from mnistkit.pipeline.rows import DeadLetter, ParsedBatch, RawBatch, Reason

__all__ = [
    "MAX_RECORD_BYTES",
    "PARSERS",
    "ParseResult",
    "parse",
    "parse_jsonl",
    "parse_text",
    "parse_tfrecord",
]

# A valid row is at most ~12 KiB in any format; anything far beyond is garbage (or a file that is
# not line-oriented), and is rejected before it costs parse time or memory.
MAX_RECORD_BYTES = 64 * 1024
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

ParseResult = tuple[ParsedBatch, list[DeadLetter]]
# Rows parsed by one fast-path call: their indices in the batch, keys and images.
_Part = tuple[np.ndarray, np.ndarray, np.ndarray]
T = TypeVar("T")
R = TypeVar("R")


def parse_text(records: Sequence[bytes], source: str) -> ParseResult:
    """Parse `key:v1,...,v784` lines (floats in 0..1).

    textparse's compiled scanner decides the rows it can in one pass; the rest go through
    `_parse_text_records`, in groups bisected until each group's survivors are known by index.
    """
    scan = textparse.scan_text(records)
    if scan is None:
        return _parse_text_records(records, source)
    if scan.ok.all():
        return ParsedBatch(scan.keys, scan.images, [source] * len(records)), []
    parts: list[_Part] = [(np.flatnonzero(scan.ok), scan.keys[scan.ok], scan.images[scan.ok])]
    dead: list[DeadLetter] = []
    pending = [np.flatnonzero(~scan.ok)] if not scan.ok.all() else []
    while pending:
        indices = pending.pop()
        batch, letters = _parse_text_records([records[i] for i in indices], source)
        if len(batch) == len(indices) or len(indices) == 1:
            dead += letters
            parts.append((indices[: len(batch)], batch.keys, batch.images))
        else:
            pending += [indices[len(indices) // 2 :], indices[: len(indices) // 2]]
    return _checked_batch(list(records), parts, source, dead)


def _parse_text_records(records: Sequence[bytes], source: str) -> ParseResult:
    """The per-record text parser: checks each line, names each rejected line's reason."""
    dead: list[DeadLetter] = []
    keys: list[int] = []
    kept: list[bytes] = []
    value_parts: list[bytes] = []
    for line in records:
        reason, detail, key, values = _split_text_row(line)
        if reason is not None:
            dead.append(DeadLetter.of(source, line, reason, detail))
            continue
        keys.append(key)
        kept.append(line)
        value_parts.append(values)
    key_array = np.asarray(keys, np.int64)
    parsed, bad = _isolate(value_parts, _csv_values, _arrow_errors())
    dead += [DeadLetter.of(source, kept[i], Reason.NON_NUMERIC, "a value is not a number") for i in bad]
    parts = [(indices, key_array[indices], images) for indices, images in parsed]
    return _checked_batch(kept, parts, source, dead)


def _split_text_row(line: bytes) -> tuple[Reason | None, str, int, bytes]:
    reason = _size_problem(line)
    if reason is not None:
        return reason, "", 0, b""
    key_text, sep, values = line.partition(b":")
    if not sep or not key_text.strip():
        return Reason.MISSING_KEY, "expected `key:v1,...,v784`", 0, b""
    key = _int64(key_text)
    if key is None:
        return Reason.BAD_KEY, "the key must be an integer (int64)", 0, b""
    count = values.count(b",") + 1
    if count != NUM_PIXELS:
        return Reason.WRONG_VALUE_COUNT, f"{count} values, expected {NUM_PIXELS}", 0, b""
    return None, "", key, values


def _size_problem(record: bytes) -> Reason | None:
    if len(record) > MAX_RECORD_BYTES:
        return Reason.OVERSIZED_LINE
    if not record.strip():
        return Reason.EMPTY_LINE
    return None


def _int64(text: bytes) -> int | None:
    text = text.strip()
    digits = text[1:] if text[:1] in (b"-", b"+") else text
    if not digits.isdigit():
        return None
    value = int(text)
    return value if _INT64_MIN <= value <= _INT64_MAX else None


@cache
def _csv_options():
    import pyarrow as pa
    import pyarrow.csv as pcsv

    names = [f"v{i}" for i in range(NUM_PIXELS)]
    # No quoting and no null spellings: every field must be a plain number, so "", "NA" or a quote
    # fail the batch (and are then isolated as non-numeric) instead of silently becoming NaN.
    return (
        names,
        pcsv.ParseOptions(quote_char=False),
        pcsv.ConvertOptions(
            column_types={name: pa.float32() for name in names},
            null_values=[],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


def _csv_values(parts: list[bytes]) -> np.ndarray:
    import pyarrow.csv as pcsv

    names, parse_options, convert_options = _csv_options()
    data = b"\n".join(parts)
    # One block, one thread: the batch is already the unit of parallelism (one per worker), and
    # a single block keeps every column in one chunk.
    read_options = pcsv.ReadOptions(column_names=names, block_size=len(data) + 1, use_threads=False)
    table = pcsv.read_csv(io.BytesIO(data), read_options, parse_options, convert_options)
    if table.num_rows != len(parts):
        raise ValueError(f"{table.num_rows} rows parsed from {len(parts)} lines")
    out = np.empty((len(parts), NUM_PIXELS), np.float32)
    for j, column in enumerate(table.columns):
        out[:, j] = column.chunk(0).to_numpy()
    return out


def parse_jsonl(records: Sequence[bytes], source: str) -> ParseResult:
    """Parse `{"key": int, "image": [784 numbers in 0..1]}` lines."""
    dead: list[DeadLetter] = []
    kept: list[bytes] = []
    for line in records:
        reason = _size_problem(line)
        if reason is None:
            kept.append(line)
        else:
            dead.append(DeadLetter.of(source, line, reason))
    parsed, bad = _isolate(kept, _json_rows, _arrow_errors())
    parts: list[_Part] = []
    for indices, (ok, keys, images, problems) in parsed:
        dead += [DeadLetter.of(source, kept[indices[i]], reason, detail) for i, reason, detail in problems]
        parts.append((indices[ok], keys, images))
    for i in bad:
        outcome = _json_row(kept[i])
        if isinstance(outcome[0], Reason):
            dead.append(DeadLetter.of(source, kept[i], outcome[0], outcome[1]))
        else:
            parts.append((np.asarray([i]), np.asarray([outcome[0]], np.int64), outcome[1][None, :]))
    return _checked_batch(kept, parts, source, dead)


@cache
def _json_schema():
    import pyarrow as pa

    return pa.schema([("key", pa.int64()), ("image", pa.list_(pa.float32()))])


def _json_rows(
    lines: list[bytes],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, Reason, str]]]:
    """Decode JSON lines with pyarrow: which rows are sound, their keys and images, and the problems."""
    import pyarrow.compute as pc
    import pyarrow.json as pj

    data = b"\n".join(lines)
    table = pj.read_json(
        io.BytesIO(data),
        read_options=pj.ReadOptions(use_threads=False, block_size=len(data) + 1),
        parse_options=pj.ParseOptions(explicit_schema=_json_schema(), unexpected_field_behavior="ignore"),
    )
    if table.num_rows != len(lines):
        raise ValueError(f"{table.num_rows} objects parsed from {len(lines)} lines")
    key = table.column("key").combine_chunks()
    image = table.column("image").combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(image), 0).to_numpy(zero_copy_only=False)
    missing_key = key.is_null().to_numpy(zero_copy_only=False)
    problems = [(int(i), Reason.MISSING_KEY, "no `key` field") for i in np.flatnonzero(missing_key)]
    no_image = image.is_null().to_numpy(zero_copy_only=False)
    problems += [
        (int(i), Reason.WRONG_VALUE_COUNT, "no `image` list" if no_image[i] else f"{lengths[i]} values")
        for i in np.flatnonzero((lengths != NUM_PIXELS) & ~missing_key)
    ]
    ok = ~missing_key & (lengths == NUM_PIXELS)
    values = image.filter(ok).flatten()
    if values.null_count:
        raise ValueError("null inside an image")
    keys = key.filter(ok).to_numpy()
    return ok, keys, values.to_numpy().reshape(-1, NUM_PIXELS), problems


def _json_row(line: bytes) -> tuple[int, np.ndarray] | tuple[Reason, str]:
    """The exact, slow path for one JSON line: its key and image, or why it is rejected."""
    try:
        obj = json.loads(line)
    except ValueError as exc:
        return Reason.INVALID_JSON, str(exc)
    if not isinstance(obj, dict):
        return Reason.INVALID_JSON, "not a JSON object"
    key = obj.get("key")
    if key is None:
        return Reason.MISSING_KEY, "no `key` field"
    if type(key) is not int or not _INT64_MIN <= key <= _INT64_MAX:
        return Reason.BAD_KEY, "the key must be an integer (int64)"
    image = obj.get("image")
    if not isinstance(image, list):
        return Reason.WRONG_VALUE_COUNT, "`image` is missing or not a list"
    if len(image) != NUM_PIXELS:
        return Reason.WRONG_VALUE_COUNT, f"{len(image)} values, expected {NUM_PIXELS}"
    if any(type(v) not in (int, float) for v in image):
        return Reason.NON_NUMERIC, "a value is not a number"
    return key, np.asarray(image, np.float32)


def parse_tfrecord(records: Sequence[bytes], source: str) -> ParseResult:
    """Parse serialized tf.train.Examples with `key` (int64) and `image` (784 raw uint8 bytes)."""
    dead: list[DeadLetter] = []
    kept: list[bytes] = []
    for record in records:
        if len(record) > MAX_RECORD_BYTES:
            dead.append(DeadLetter.of(source, record, Reason.OVERSIZED_LINE))
        else:
            kept.append(record)
    import tensorflow as tf

    # A bad record can make TF fail while decoding its own error message, hence ValueError.
    parsed, bad = _isolate(kept, _examples, (tf.errors.OpError, ValueError))
    for i in bad:
        reason, detail = _example_problem(kept[i])
        dead.append(DeadLetter.of(source, kept[i], reason, detail))
    parts: list[_Part] = []
    for indices, (keys, blobs) in parsed:
        sizes = np.fromiter(map(len, blobs), np.int64, len(blobs))
        ok = sizes == NUM_PIXELS
        for i in np.flatnonzero(~ok):
            detail = f"{sizes[i]} image bytes, expected {NUM_PIXELS}"
            dead.append(DeadLetter.of(source, kept[indices[i]], Reason.WRONG_VALUE_COUNT, detail))
        pixels = np.frombuffer(b"".join(blobs[ok]), np.uint8).reshape(-1, NUM_PIXELS)
        parts.append((indices[ok], keys[ok], to_model_input(pixels)))
    return _checked_batch(kept, parts, source, dead)


def _examples(records: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf

    parsed = tf.io.parse_example(
        records,
        {"key": tf.io.FixedLenFeature([], tf.int64), "image": tf.io.FixedLenFeature([], tf.string)},
    )
    return parsed["key"].numpy(), parsed["image"].numpy()


def _example_problem(record: bytes) -> tuple[Reason, str]:
    """Why one serialized record is not a valid example (it already failed `parse_example`)."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    try:
        features = tf.train.Example.FromString(record).features.feature
    except DecodeError:
        return Reason.BAD_TFRECORD, "not a serialized tf.train.Example"
    if "key" not in features:
        return Reason.MISSING_KEY, "no `key` feature"
    key = features["key"]
    if key.WhichOneof("kind") != "int64_list" or len(key.int64_list.value) != 1:
        return Reason.BAD_KEY, "`key` must hold exactly one int64"
    return Reason.BAD_TFRECORD, "`image` must hold exactly one bytes value (784 raw uint8 pixels)"


def _checked_batch(kept: list[bytes], parts: list[_Part], source: str, dead: list[DeadLetter]) -> ParseResult:
    """Join the parsed parts back in input order, rejecting rows with non-finite or out-of-range values."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return ParsedBatch.empty(), dead
    indices, keys, images = (np.concatenate(column) for column in zip(*parts, strict=True))
    # min/max propagate NaN, so this one pass also flags non-finite rows.
    ok = (images.min(axis=1) >= 0) & (images.max(axis=1) <= 1)
    for i in np.flatnonzero(~ok):
        finite = bool(np.isfinite(images[i]).all())
        reason = Reason.OUT_OF_RANGE if finite else Reason.NON_FINITE
        detail = "values must lie in 0..1" if finite else "NaN or infinite value"
        dead.append(DeadLetter.of(source, kept[indices[i]], reason, detail))
    if not ok.all():
        indices, keys, images = indices[ok], keys[ok], images[ok]
    if len(parts) > 1:
        order = np.argsort(indices, kind="stable")
        keys, images = keys[order], images[order]
    return ParsedBatch(keys, images, [source] * len(keys)), dead


def _isolate(
    items: list[T], parse: Callable[[list[T]], R], errors: tuple[type[BaseException], ...]
) -> tuple[list[tuple[np.ndarray, R]], list[int]]:
    """Parse `items` in one call; on failure, bisect until every failing item stands alone.

    Returns the parsed parts as `(indices into items, parse result)` and the indices that failed.
    """
    parts: list[tuple[np.ndarray, R]] = []
    failed: list[int] = []
    pending = [np.arange(len(items))] if items else []
    while pending:
        indices = pending.pop()
        try:
            parts.append((indices, parse([items[i] for i in indices])))
        except errors:
            if len(indices) == 1:
                failed.append(int(indices[0]))
            else:
                middle = len(indices) // 2
                pending += [indices[middle:], indices[:middle]]
    return parts, sorted(failed)


@cache
def _arrow_errors() -> tuple[type[BaseException], ...]:
    import pyarrow as pa

    return (pa.ArrowInvalid, ValueError)


PARSERS: dict[str, Callable[[Sequence[bytes], str], ParseResult]] = {
    "text": parse_text,
    "jsonl": parse_jsonl,
    "tfrecord": parse_tfrecord,
}


def parse(batch: RawBatch, fmt: str) -> ParseResult:
    """Parse one RawBatch in the given format ("text", "jsonl" or "tfrecord")."""
    return PARSERS[fmt](batch.records, batch.source)
