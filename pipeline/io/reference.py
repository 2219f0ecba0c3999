"""The exact, per-record definition of every input format: one record in, one row or one rejection out.

The vectorised parsers (parsing.py) are the fast way to the same answers; this module is what they
must agree with (tests/pipeline/test_parsing_properties.py checks it on random and mutated rows),
and what they fall back to, record by record, for anything the fast path cannot decide. It is
written for obviousness, not speed, and never raises: whatever a record holds, it ends as a row or
as a reason.

The rules every format shares: a record is at most MAX_RECORD_BYTES; a key is an int64 (text: an
optional sign and at most 19 ASCII digits); an image is 784 numbers in 0..1 (TFRecord: 784 raw
uint8 pixels); JSON nests at most MAX_JSON_DEPTH levels.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import numpy as np

from mnistkit.model_export.model import NUM_PIXELS, to_model_input
from mnistkit.pipeline.io.example_proto import Example
from mnistkit.pipeline.rows import DeadLetter, ParsedBatch, Reason

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_KEY_DIGITS",
    "MAX_RECORD_BYTES",
    "Outcome",
    "json_depth",
    "parse_per_record",
    "reference_record",
    "text_key",
]

# A valid row is at most ~12 KiB in any format; anything far beyond is garbage (or a file that is
# not line-oriented), and is rejected before it costs parse time or memory.
MAX_RECORD_BYTES = 64 * 1024
# int64's largest magnitude has 19 digits; a longer key is refused before int() ever sees it
# (Python refuses to convert over 4,300 digits at all, and would spend quadratic time before that).
MAX_KEY_DIGITS = 19
# A valid row nests 2 levels; the cap keeps every JSON reader (Python's recurses) far from its limits.
MAX_JSON_DEPTH = 64
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# What the text format calls a number: a decimal float, inf/infinity or nan (any case), with
# optional spaces or tabs around it. Nothing else: no hex, no underscores, no "NA", no quotes.
# C's `nan(chars)` spelling is a NaN too, as the CSV reader of the fast path reads it.
_NUMBER = re.compile(
    rb"[ \t]*[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan(?:\([0-9a-z_]*\))?)[ \t]*",
    re.IGNORECASE,
)
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[{]|[\]}]', re.DOTALL)

# A record's outcome: (key, float32 image [784]) or (reason, detail).
Outcome = tuple[int, np.ndarray] | tuple[Reason, str]


def reference_record(fmt: str, record: bytes) -> Outcome:
    """The row `record` holds in format `fmt` ("text", "jsonl", "tfrecord"), or why it holds none."""
    try:
        if fmt == "tfrecord":
            return _tfrecord(record)
        if fmt not in ("text", "jsonl"):
            return Reason.UNKNOWN_FORMAT, f"no parser for format {fmt!r}"
        if len(record) > MAX_RECORD_BYTES:
            return Reason.OVERSIZED_LINE, f"{len(record)} bytes, at most {MAX_RECORD_BYTES}"
        if not record.strip():
            return Reason.EMPTY_LINE, ""
        outcome = _text(record) if fmt == "text" else _jsonl(record)
    except Exception as exc:  # the contract is "never raises": an unforeseen failure is still a reason
        return Reason.INVALID_JSON if fmt == "jsonl" else Reason.NON_NUMERIC, f"unreadable record: {exc!r}"[:200]
    if isinstance(outcome[0], Reason):
        return outcome
    return _checked(*outcome)


def parse_per_record(records: Sequence[bytes], source: str, fmt: str) -> tuple[ParsedBatch, list[DeadLetter]]:
    """Every record through reference_record: the slow, exact fallback of the vectorised parsers."""
    keys: list[int] = []
    images: list[np.ndarray] = []
    dead: list[DeadLetter] = []
    for record in records:
        first, second = reference_record(fmt, record)
        if isinstance(first, Reason):
            dead.append(DeadLetter.of(source, record, first, second))
        else:
            keys.append(first)
            images.append(second)
    if not keys:
        return ParsedBatch.empty(), dead
    return ParsedBatch(np.asarray(keys, np.int64), np.stack(images), [source] * len(keys)), dead


def text_key(text: bytes) -> int | None:
    """An int64 key written as an optional sign and at most 19 ASCII digits (spaces around allowed)."""
    text = text.strip()
    digits = text[1:] if text[:1] in (b"-", b"+") else text
    if not 0 < len(digits) <= MAX_KEY_DIGITS or not digits.isdigit():
        return None
    value = int(digits)
    value = -value if text[:1] == b"-" else value
    return value if _INT64_MIN <= value <= _INT64_MAX else None


def _text(line: bytes) -> Outcome:
    key_text, sep, values = line.partition(b":")
    if not sep or not key_text.strip():
        return Reason.MISSING_KEY, "expected `key:v1,...,v784`"
    key = text_key(key_text)
    if key is None:
        return Reason.BAD_KEY, f"the key must be an integer (int64, at most {MAX_KEY_DIGITS} digits)"
    fields = values.split(b",")
    if len(fields) != NUM_PIXELS:
        return Reason.WRONG_VALUE_COUNT, f"{len(fields)} values, expected {NUM_PIXELS}"
    if not all(_NUMBER.fullmatch(f) for f in fields):
        return Reason.NON_NUMERIC, "a value is not a number"
    with np.errstate(over="ignore"):
        return key, np.asarray([_text_float(f) for f in fields], np.float64).astype(np.float32)


def _text_float(field: bytes) -> float:
    """A value _NUMBER accepts as a float; Python's float() does not know `nan(chars)`."""
    return float("nan") if b"(" in field else float(field)


def json_depth(line: bytes) -> int:
    """How deep brackets nest in a JSON text (brackets inside strings do not count)."""
    depth = deepest = 0
    for match in _JSON_TOKEN.finditer(line):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("a field is given twice")
    return obj


def _jsonl(line: bytes) -> Outcome:
    if json_depth(line) > MAX_JSON_DEPTH:
        return Reason.INVALID_JSON, f"nested deeper than {MAX_JSON_DEPTH} levels"
    try:
        obj = json.loads(line.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
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
    with np.errstate(over="ignore"):
        # An integer beyond float's range is no pixel value: count it as infinite.
        values = [v if type(v) is float or abs(v) < 2**1000 else np.inf for v in image]
        return key, np.asarray(values, np.float64).astype(np.float32)


def _tfrecord(record: bytes) -> Outcome:
    if len(record) > MAX_RECORD_BYTES:
        return Reason.OVERSIZED_LINE, f"{len(record)} bytes, at most {MAX_RECORD_BYTES}"
    from google.protobuf.message import DecodeError

    try:
        features = Example.FromString(record).features.feature
    except (DecodeError, ValueError, RuntimeError) as exc:
        return Reason.BAD_TFRECORD, f"not a serialized tf.train.Example ({type(exc).__name__})"
    if "key" not in features:
        return Reason.MISSING_KEY, "no `key` feature"
    key = features["key"]
    if key.WhichOneof("kind") != "int64_list" or len(key.int64_list.value) != 1:
        return Reason.BAD_KEY, "`key` must hold exactly one int64"
    image = features["image"] if "image" in features else None
    if image is None or image.WhichOneof("kind") != "bytes_list" or len(image.bytes_list.value) != 1:
        return Reason.BAD_TFRECORD, "`image` must hold exactly one bytes value (784 raw uint8 pixels)"
    pixels = image.bytes_list.value[0]
    if len(pixels) != NUM_PIXELS:
        return Reason.WRONG_VALUE_COUNT, f"{len(pixels)} image bytes, expected {NUM_PIXELS}"
    return int(key.int64_list.value[0]), to_model_input(np.frombuffer(pixels, np.uint8)[None, :])[0]


def _checked(key: int, image: np.ndarray) -> Outcome:
    if not np.isfinite(image).all():
        return Reason.NON_FINITE, "NaN or infinite value"
    if image.min() < 0 or image.max() > 1:
        return Reason.OUT_OF_RANGE, "values must lie in 0..1"
    return key, image
