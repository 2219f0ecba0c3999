"""Property-based tests of every parser, format-level and blind to how a parser is built.

Random bytes and structured mutations of good rows, in all three formats, go through the
parsers the pipelines use (`PARSERS`). Invariants: no exception escapes; each record ends as
exactly one row or one dead letter with a reason; the outcome is the one the per-record
reference parser (pipeline/io/reference.py) gives, record by record, so good rows keep their keys
and no row is swallowed or invented; and the fast path decided it without falling back.
"""

from __future__ import annotations

import logging
import os
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.example.example_pb2 import Example

from mnistkit.model_export.model import NUM_PIXELS
from mnistkit.pipeline.io.formats import encode_jsonl, encode_text
from mnistkit.pipeline.io.parsing import PARSERS
from mnistkit.pipeline.io.reference import MAX_JSON_DEPTH, MAX_RECORD_BYTES, reference_record
from mnistkit.pipeline.rows import DeadLetter, Reason, StreamRecord
from mnistkit.pipeline.streaming.pipeline import parse_micro_batch

# Modest counts: the whole file runs in well under a minute on 2 cores (HARDEN_EXAMPLES=600 for a
# deeper search; 600 per test passed).
PROPERTY = settings(
    max_examples=int(os.environ.get("HARDEN_EXAMPLES", 60)), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

keys = st.integers(-(2**63), 2**63 - 1)
pixels = st.binary(min_size=NUM_PIXELS, max_size=NUM_PIXELS).map(lambda b: np.frombuffer(b, np.uint8))

# Bytes that trip parsers up: separators, line breaks, quotes, number spellings, big numbers.
TOKENS = [
    b"",
    b":",
    b",",
    b"\n",
    b"\r",
    b"\r\n",
    b" ",
    b"\t",
    b"\x00",
    b"\xff",
    b"\xef\xbb\xbf",
    b'"',
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b"null",
    b"true",
    b"nan",
    b"NaN",
    b"-inf",
    b"Infinity",
    b"1e40",
    b"1e-50",
    b"-0",
    b"+.5",
    b"5.",
    b"1..2",
    b"0x1f",
    b"1_0",
    b"\xd9\xa1",  # ARABIC-INDIC DIGIT ONE
    b"9" * 19,
    b"9" * 20,
    b"1" * 4301,
    b"9223372036854775808",
    b"-9223372036854775808",
    b'"key": 1, ',
    b', "image": []',
    b"[" * (MAX_JSON_DEPTH + 1),
    b"[" * 3000 + b"]" * 3000,
]


def encode_example(key: int, row: np.ndarray) -> bytes:
    example = Example()
    example.features.feature["key"].int64_list.value.append(key)
    example.features.feature["image"].bytes_list.value.append(row.tobytes())
    return example.SerializeToString()


def good_record(fmt: str, key: int, row: np.ndarray) -> bytes:
    if fmt == "tfrecord":
        return encode_example(key, row)
    encode = encode_text if fmt == "text" else encode_jsonl
    return encode(np.asarray([key], np.int64), row[None, :]).rstrip(b"\n")


@st.composite
def mutated(draw, record: bytes) -> bytes:
    """`record` with a few random edits: tokens or random bytes put in, cut out or over a span."""
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(record)))
        end = draw(st.integers(at, min(len(record), at + 40)))
        piece = draw(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=12)))
        kind = draw(st.sampled_from(["insert", "replace", "delete", "truncate"]))
        if kind == "insert":
            record = record[:at] + piece + record[at:]
        elif kind == "replace":
            record = record[:at] + piece + record[end:]
        elif kind == "delete":
            record = record[:at] + record[end:]
        else:
            record = record[:at]
    return record


@st.composite
def batches(draw, fmt: str) -> tuple[list[bytes], list[int]]:
    """Records of one batch (good, mutated, random, split or joined rows), and the indices of the good ones."""
    records: list[bytes] = []
    good: list[int] = []
    for _ in range(draw(st.integers(1, 8))):
        record = good_record(fmt, draw(keys), draw(pixels))
        kind = draw(st.sampled_from(["good", "good", "mutated", "random", "split", "joined", "nested", "oversized"]))
        if kind == "good":
            good.append(len(records))
            records.append(record)
        elif kind == "mutated":
            records.append(draw(mutated(record)))
        elif kind == "random":
            records.append(draw(st.binary(max_size=200)))
        elif kind == "split":
            # One row cut in two records (an object split over lines), a good row maybe in between.
            at = draw(st.integers(0, len(record)))
            records.append(record[:at])
            if draw(st.booleans()):
                good.append(len(records))
                records.append(good_record(fmt, draw(keys), draw(pixels)))
            records.append(record[at:])
        elif kind == "joined":
            other = good_record(fmt, draw(keys), draw(pixels))
            records.append(record + draw(st.sampled_from([b"", b" ", b"\r", b"\n", b","])) + other)
        elif kind == "nested":
            depth = draw(st.integers(MAX_JSON_DEPTH - 2, 3000))
            records.append(record[:-1] + b', "x": ' + b"[" * depth + b"]" * depth + b"}")
        else:
            records.append(record + b" " * (MAX_RECORD_BYTES + 1 - len(record)))
    return records, good


def reference_outcomes(fmt: str, records: list[bytes]) -> tuple[list[tuple[int, np.ndarray]], Counter]:
    rows, rejected = [], Counter()
    for record in records:
        first, second = reference_record(fmt, record)
        if isinstance(first, Reason):
            rejected[(DeadLetter.of("src", record, first).raw, first)] += 1
        else:
            rows.append((first, second))
    return rows, rejected


class _Fallbacks(logging.Handler):
    """The parsers' warnings that a fast path gave up on a batch."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def check_parser(fmt: str, records: list[bytes], good: list[int]) -> None:
    fallbacks = _Fallbacks()
    logger = logging.getLogger("mnistkit.pipeline.io.parsing")
    logger.addHandler(fallbacks)
    try:
        batch, dead = PARSERS[fmt](records, "src")
    finally:
        logger.removeHandler(fallbacks)
    assert len(batch) + len(dead) == len(records)
    assert all(isinstance(d.reason, Reason) and d.source == "src" for d in dead)
    rows, rejected = reference_outcomes(fmt, records)
    assert batch.keys.tolist() == [key for key, _ in rows]
    if rows:
        expected = np.stack([image for _, image in rows])
        # Parsing to float32 in one step or through float64 may differ in the last place.
        assert np.all(np.abs(batch.images - expected) <= np.spacing(np.maximum(expected, batch.images)))
    assert Counter((d.raw, d.reason) for d in dead) == rejected
    for i in good:
        assert not isinstance(reference_record(fmt, records[i])[0], Reason)
    assert fallbacks.messages == []


@pytest.mark.parametrize("fmt", ["text", "jsonl", "tfrecord"])
@PROPERTY
@given(data=st.data())
def test_every_record_ends_as_the_reference_parser_says(fmt, data):
    records, good = data.draw(batches(fmt))
    check_parser(fmt, records, good)


@pytest.mark.parametrize("fmt", ["text", "jsonl", "tfrecord"])
@PROPERTY
@given(records=st.lists(st.binary(max_size=300), min_size=1, max_size=10))
def test_random_bytes_never_escape_as_an_exception(fmt, records):
    check_parser(fmt, records, [])


@pytest.mark.parametrize("fmt", ["text", "jsonl"])
@PROPERTY
@given(key=st.one_of(st.integers(), st.text(alphabet="0123456789+-٠١٢ \t", max_size=30)), row=pixels)
def test_keys_are_int64_of_at_most_19_ascii_digits(fmt, key, row):
    record = good_record(fmt, 0, row)
    record = (
        str(key).encode() + record[1:]
        if fmt == "text"
        else record.replace(b'"key": 0', b'"key": ' + str(key).encode(), 1)
    )
    check_parser(fmt, [record], [])
    outcome = reference_record(fmt, record)
    if not isinstance(outcome[0], Reason):
        assert -(2**63) <= outcome[0] < 2**63
        assert str(outcome[0]).lstrip("-") == str(key).strip().lstrip("+-").lstrip("0") or outcome[0] == 0


def test_the_hostile_rows_of_issue_11_are_dead_letters_not_crashes(caplog):
    row = np.zeros(NUM_PIXELS, np.uint8)
    text = good_record("text", 1, row)
    jsonl = good_record("jsonl", 2, row)
    cases = {
        "text": [b"1" * 4301 + text[1:], text],
        "jsonl": [b"[" * 3000 + b"]" * 3000, jsonl[:-1] + b', "x": ' + b"[" * 3000 + b"]" * 3000 + b"}", jsonl],
    }
    for fmt, records in cases.items():
        batch, dead = PARSERS[fmt](records, "src")
        assert len(batch) == 1 and [d.reason for d in dead] == [Reason.BAD_KEY] * (fmt == "text") + [
            Reason.INVALID_JSON
        ] * 2 * (fmt == "jsonl")


def test_a_json_array_of_rows_or_an_object_split_over_lines_is_rejected_whole(caplog):
    rows = [good_record("jsonl", k, np.zeros(NUM_PIXELS, np.uint8)) for k in (1, 2, 3)]
    array = b"[" + b",".join(rows) + b"]"
    split = rows[0][:40], rows[1], rows[0][40:]
    two_in_one = rows[0] + rows[2]
    batch, dead = PARSERS["jsonl"]([array, *split, two_in_one], "src")
    assert batch.keys.tolist() == [2]
    assert [d.reason for d in dead] == [Reason.INVALID_JSON] * 4


@PROPERTY
@given(data=st.data())
def test_stream_messages_end_as_one_row_or_one_dead_letter(data):
    """The stream's message format: payloads of any of the formats, each message its own source."""
    messages: list[StreamRecord] = []
    expected: list[tuple[str, int]] = []
    for i in range(data.draw(st.integers(1, 8))):
        fmt = data.draw(st.sampled_from(["jsonl", "jsonl", "text", "tfrecord"]))
        payload = good_record(fmt, data.draw(keys), data.draw(pixels))
        if data.draw(st.booleans()):
            payload = data.draw(st.one_of(mutated(payload), st.binary(max_size=100)))
        outcome = reference_record(fmt, payload)
        if not isinstance(outcome[0], Reason):
            expected.append((f"m{i}", outcome[0]))
        messages.append(StreamRecord(payload, f"m{i}", float(i), fmt))
    batch, dead = parse_micro_batch(messages)
    got = [] if batch is None else sorted(zip(batch.rows.sources, batch.rows.keys.tolist(), strict=True))
    assert got == sorted(expected)
    assert len(got) + len(dead) == len(messages)
    assert {d.source for d in dead}.isdisjoint(source for source, _ in got)
    if batch is not None:
        by_source = {m.source: m.event_time for m in messages}
        assert batch.event_times.tolist() == [by_source[s] for s in batch.rows.sources]
