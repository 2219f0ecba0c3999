"""Vectorised parsers: a batch of raw records in, a ParsedBatch plus dead letters out.

Each format has a fast path that decodes the whole batch in one C-level call (pyarrow's CSV or
JSON reader, TensorFlow's `parse_example`). Cheap per-record checks (emptiness, size, key, value
count) run first so the common kinds of bad rows never reach it. When the fast path still fails,
the batch is split in halves until each failing record stands alone (`_isolate`), so one bad row
costs a few extra parses, not a per-row fallback for the whole batch; a record that fails alone
goes to the exact per-record parser (reference.py), which decides it and names the reason.

Records that the fast path could misread are never given to it: a JSON line holding a line break
(the pyarrow reader splits on them) or nested beyond MAX_JSON_DEPTH goes to the per-record parser
directly. The entries of PARSERS are guarded: should a fast path raise anyway, or return other
than one outcome per record, the batch is parsed record by record instead, so no input can crash
a run, and every record ends as exactly one row or one dead letter.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from functools import cache
from typing import TypeVar

import numpy as np

from mnistkit.model_export.model import NUM_PIXELS, to_model_input
from mnistkit.pipeline.io import exampleparse, textparse
from mnistkit.pipeline.io.example_proto import Example
from mnistkit.pipeline.io.reference import (
    MAX_JSON_DEPTH,
    MAX_KEY_DIGITS,
    MAX_RECORD_BYTES,
    parse_per_record,
    reference_record,
    text_key,
)
from mnistkit.pipeline.rows import DeadLetter, ParsedBatch, RawBatch, Reason

__all__ = [
    "MAX_RECORD_BYTES",
    "PARSERS",
    "ParseResult",
    "parse",
    "parse_jsonl",
    "parse_text",
    "parse_tfrecord",
    "load_fast_path",
    "LOAD_FAST_PATH_BYTES",
]

_LOGGER = logging.getLogger(__name__)

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
    parsed, bad = _isolate(value_parts, _csv_values)
    parts = [(indices, key_array[indices], images) for indices, images in parsed]
    parts += _per_record(kept, bad, source, "text", dead)
    return _checked_batch(kept, parts, source, dead)


def _split_text_row(line: bytes) -> tuple[Reason | None, str, int, bytes]:
    reason = _size_problem(line)
    if reason is not None:
        return reason, "", 0, b""
    key_text, sep, values = line.partition(b":")
    if not sep or not key_text.strip():
        return Reason.MISSING_KEY, "expected `key:v1,...,v784`", 0, b""
    key = text_key(key_text)
    if key is None:
        return Reason.BAD_KEY, f"the key must be an integer (int64, at most {MAX_KEY_DIGITS} digits)", 0, b""
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
    # Only records the fast path cannot misread go to it. pyarrow reads a batch as one stream of
    # objects, so its row count matching the line count must imply one object per line: that
    # holds when no line holds a line break and each starts with `{` and ends with `}` (an object
    # left open at a `}` can only go on with `,` `}` or `]`, never the next line's `{`; so no line
    # yields 0 objects, and a line with 2 makes the counts differ). A valid row has one `{` and
    # one `[`, so a bracket count under the cap also bounds the depth.
    fast = [i for i, line in enumerate(kept) if _plain_json_line(line)]
    slow = sorted(set(range(len(kept))) - set(fast))
    parsed, bad = _isolate([kept[i] for i in fast], _json_rows)
    parts: list[_Part] = []
    for indices, (ok, keys, images, problems) in parsed:
        at = np.asarray(fast, np.int64)[indices]
        dead += [DeadLetter.of(source, kept[at[i]], reason, detail) for i, reason, detail in problems]
        parts.append((at[ok], keys, images))
    parts += _per_record(kept, sorted(slow + [fast[i] for i in bad]), source, "jsonl", dead)
    return _checked_batch(kept, parts, source, dead)


def _plain_json_line(line: bytes) -> bool:
    bare = line.strip(b" \t")
    return (
        bare[:1] == b"{"
        and bare[-1:] == b"}"
        and b"\n" not in bare
        and b"\r" not in bare
        and bare.count(b"[") + bare.count(b"{") <= MAX_JSON_DEPTH
    )


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


def parse_tfrecord(records: Sequence[bytes], source: str) -> ParseResult:
    """Parse serialized tf.train.Examples with `key` (int64) and `image` (784 raw uint8 bytes).

    exampleparse's compiled scanner decides the records it can in one pass; the rest are decoded
    by protobuf's C parser (upb) through io/example_proto.py's Example, ~5 us a record with the
    Python around it and no TensorFlow import. TensorFlow's `parse_example` is no faster, and
    accepts records protobuf rejects (trailing garbage after the message), so it is not used.
    """
    scan = exampleparse.scan_examples(records)
    if scan is not None and scan.ok.all():
        return ParsedBatch(scan.keys, to_model_input(scan.pixels), [source] * len(records)), []
    dead: list[DeadLetter] = []
    parts: list[_Part] = []
    pending = range(len(records))
    if scan is not None:
        decided = np.flatnonzero(scan.ok)
        parts.append((decided, scan.keys[decided], to_model_input(scan.pixels[decided])))
        pending = np.flatnonzero(~scan.ok).tolist()
    keys: list[int] = []
    blobs: list[bytes] = []
    at: list[int] = []
    slow: list[int] = []
    for i in pending:
        record = records[i]
        try:
            features = Example.FromString(record).features.feature if len(record) <= MAX_RECORD_BYTES else {}
            key = features["key"].int64_list.value if "key" in features else ()
            image = features["image"].bytes_list.value if "image" in features else ()
        except Exception:
            slow.append(i)
            continue
        # An unset or other-kind feature reads as an empty list, so these checks also cover kinds.
        if len(key) != 1 or len(image) != 1 or len(image[0]) != NUM_PIXELS:
            slow.append(i)
            continue
        keys.append(key[0])
        blobs.append(image[0])
        at.append(i)
    parts.extend(_per_record(records, slow, source, "tfrecord", dead))
    if at:
        pixels = np.frombuffer(b"".join(blobs), np.uint8).reshape(-1, NUM_PIXELS)
        parts.append((np.asarray(at), np.asarray(keys, np.int64), to_model_input(pixels)))
    return _checked_batch(records, parts, source, dead)


def _per_record(
    kept: Sequence[bytes], indices: list[int], source: str, fmt: str, dead: list[DeadLetter]
) -> list[_Part]:
    """The records at `indices` through the exact per-record parser: parts for the rows it accepts;
    dead letters (appended to `dead`) for the rest."""
    parts: list[_Part] = []
    for i in indices:
        first, second = reference_record(fmt, kept[i])
        if isinstance(first, Reason):
            dead.append(DeadLetter.of(source, kept[i], first, second))
        else:
            parts.append((np.asarray([i]), np.asarray([first], np.int64), second[None, :]))
    return parts


def _checked_batch(kept: Sequence[bytes], parts: list[_Part], source: str, dead: list[DeadLetter]) -> ParseResult:
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


def _isolate(items: list[T], parse: Callable[[list[T]], R]) -> tuple[list[tuple[np.ndarray, R]], list[int]]:
    """Parse `items` in one call; on failure, bisect until every failing item stands alone.

    Returns the parsed parts as `(indices into items, parse result)` and the indices that failed.
    Any exception counts as a failure: the items that fail alone go to the exact per-record
    parser, which decides them whatever made the fast path give up (pyarrow and TensorFlow raise
    a variety of errors, and may fail decoding their own error message).
    """
    parts: list[tuple[np.ndarray, R]] = []
    failed: list[int] = []
    pending = [np.arange(len(items))] if items else []
    while pending:
        indices = pending.pop()
        try:
            parts.append((indices, parse([items[i] for i in indices])))
        except Exception:
            if len(indices) == 1:
                failed.append(int(indices[0]))
            else:
                middle = len(indices) // 2
                pending += [indices[middle:], indices[:middle]]
    return parts, sorted(failed)


Parser = Callable[[Sequence[bytes], str], ParseResult]


def _guarded(fast: Parser, fmt: str) -> Parser:
    """`fast`, falling back to the per-record parser should it raise or not account for every record."""

    def parse_format(records: Sequence[bytes], source: str) -> ParseResult:
        try:
            batch, dead = fast(records, source)
            if len(batch) + len(dead) == len(records):
                return batch, dead
            problem = f"{len(batch)} rows and {len(dead)} dead letters from {len(records)} records"
        except Exception as exc:
            problem = repr(exc)
        _LOGGER.warning("%s fast path failed on a batch of %s (%s); parsing it record by record", fmt, source, problem)
        return parse_per_record(records, source, fmt)

    parse_format.__doc__ = fast.__doc__
    parse_format.__name__ = fast.__name__
    return parse_format


PARSERS: dict[str, Parser] = {
    "text": _guarded(parse_text, "text"),
    "jsonl": _guarded(parse_jsonl, "jsonl"),
    "tfrecord": _guarded(parse_tfrecord, "tfrecord"),
}


# An input this big (bytes as stored) loads its format's compiled scanner before the first
# batch instead of after SCANNER_AFTER_ROWS rows: even the leanest rows (~800-byte TFRecords)
# then number ~100k, past the point where loading pays for itself.
LOAD_FAST_PATH_BYTES = 64 << 20
_FAST_PATHS = {"text": textparse.load, "tfrecord": exampleparse.load}


def load_fast_path(fmt: str, input_bytes: int) -> None:
    """Load `fmt`'s compiled scanner now when `input_bytes` of input will follow (see LOAD_FAST_PATH_BYTES)."""
    if input_bytes >= LOAD_FAST_PATH_BYTES and fmt in _FAST_PATHS:
        _FAST_PATHS[fmt]()


def parse(batch: RawBatch, fmt: str) -> ParseResult:
    """Parse one RawBatch in the given format ("text", "jsonl" or "tfrecord"; any other: every
    record a dead letter)."""
    parser = PARSERS.get(fmt)
    if parser is None:
        return parse_per_record(batch.records, batch.source, fmt)
    return parser(batch.records, batch.source)
