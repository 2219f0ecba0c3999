"""The vectorised parsers: exact values, every rejection reason, and bad rows isolated from good ones."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mnistkit.model_export.model import NUM_PIXELS, to_model_input
from mnistkit.pipeline.io.formats import encode_jsonl, encode_text, encode_tfrecord
from mnistkit.pipeline.io.parsing import MAX_RECORD_BYTES, parse_jsonl, parse_text, parse_tfrecord
from mnistkit.pipeline.rows import Reason

RNG = np.random.default_rng(7)
PIXELS = RNG.integers(0, 256, size=(5, NUM_PIXELS), dtype=np.uint8)
KEYS = np.array([3, -1, 2**63 - 1, 0, 42], dtype=np.int64)


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines()


def _examples(keys, pixels) -> list[bytes]:
    """Serialized tf.train.Examples (the payloads inside TFRecord frames)."""
    import tensorflow as tf

    return [
        tf.train.Example(
            features=tf.train.Features(
                feature={
                    "key": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(k)])),
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[row.tobytes()])),
                }
            )
        ).SerializeToString()
        for k, row in zip(keys, pixels, strict=True)
    ]


@pytest.mark.parametrize(
    "records, parser",
    [
        (_lines(encode_text(KEYS, PIXELS)), parse_text),
        (_lines(encode_jsonl(KEYS, PIXELS)), parse_jsonl),
    ],
    ids=["text", "jsonl"],
)
def test_written_rows_parse_back_to_the_exact_model_input(records, parser):
    batch, dead = parser(records, "src")
    assert dead == []
    np.testing.assert_array_equal(batch.keys, KEYS)
    np.testing.assert_array_equal(batch.images, to_model_input(PIXELS))
    assert batch.sources == ["src"] * len(KEYS)


def test_tfrecord_examples_parse_back_to_the_exact_model_input():
    batch, dead = parse_tfrecord(_examples(KEYS, PIXELS), "src")
    assert dead == []
    np.testing.assert_array_equal(batch.keys, KEYS)
    np.testing.assert_array_equal(batch.images, to_model_input(PIXELS))


def test_tfrecord_writer_frames_the_same_examples():
    import io

    from tensorflow.core.example.example_pb2 import Example

    from mnistkit.pipeline.io.files import _tfrecords

    payloads = list(_tfrecords(io.BytesIO(encode_tfrecord(KEYS, PIXELS)), "src"))
    # Compared as messages: protobuf serialises map entries in no fixed order.
    assert [Example.FromString(p) for p in payloads] == [Example.FromString(e) for e in _examples(KEYS, PIXELS)]


GOOD = b",".join([b"0.5"] * NUM_PIXELS)


def _with_last(value: bytes) -> bytes:
    return b",".join([b"0.5"] * (NUM_PIXELS - 1) + [value])


@pytest.mark.parametrize(
    "line, reason",
    [
        (b"", Reason.EMPTY_LINE),
        (b"   \t", Reason.EMPTY_LINE),
        (b"7:" + b"0" * MAX_RECORD_BYTES, Reason.OVERSIZED_LINE),
        (GOOD, Reason.MISSING_KEY),
        (b":" + GOOD, Reason.MISSING_KEY),
        (b"abc:" + GOOD, Reason.BAD_KEY),
        (b"1.5:" + GOOD, Reason.BAD_KEY),
        (b"0x1f:" + GOOD, Reason.BAD_KEY),
        (b"%d:" % 2**63 + GOOD, Reason.BAD_KEY),
        (b"7:" + GOOD + b",0.5", Reason.WRONG_VALUE_COUNT),
        (b"7:0.5,0.5", Reason.WRONG_VALUE_COUNT),
        (b"7:" + GOOD + b",", Reason.WRONG_VALUE_COUNT),
        (b"7:" + _with_last(b"abc"), Reason.NON_NUMERIC),
        (b"7:" + _with_last(b""), Reason.NON_NUMERIC),
        (b"7:" + _with_last(b"NA"), Reason.NON_NUMERIC),
        (b"7:" + _with_last(b'"0.5"'), Reason.NON_NUMERIC),
        (b"7:" + _with_last(b"1..2"), Reason.NON_NUMERIC),
        (b"7:" + _with_last(b"nan"), Reason.NON_FINITE),
        (b"7:" + _with_last(b"-inf"), Reason.NON_FINITE),
        (b"7:" + _with_last(b"1.0001"), Reason.OUT_OF_RANGE),
        (b"7:" + _with_last(b"-0.5"), Reason.OUT_OF_RANGE),
        (b"7:" + _with_last(b"1e3"), Reason.OUT_OF_RANGE),
    ],
)
def test_text_rejections_name_the_reason(line, reason):
    batch, dead = parse_text([b"1:" + GOOD, line, b"2:" + GOOD], "in.txt")
    assert [d.reason for d in dead] == [reason]
    assert dead[0].source == "in.txt" and dead[0].raw == line[:200].decode()
    np.testing.assert_array_equal(batch.keys, [1, 2])


def test_text_accepts_what_a_reader_would_call_a_number():
    line = b" 9 :" + b",".join([b" 0.5", b"1.", b".25", b"1e-3", b"+0"] + [b"0"] * (NUM_PIXELS - 5))
    batch, dead = parse_text([line], "src")
    assert dead == []
    np.testing.assert_allclose(batch.images[0, :5], [0.5, 1.0, 0.25, 0.001, 0.0])
    assert batch.keys.tolist() == [9]


def _json(obj) -> bytes:
    return json.dumps(obj).encode()


IMAGE = [0.5] * NUM_PIXELS


@pytest.mark.parametrize(
    "line, reason",
    [
        (b"", Reason.EMPTY_LINE),
        (b'{"key": 1, "image": [' + b"0," * MAX_RECORD_BYTES + b"0]}", Reason.OVERSIZED_LINE),
        (b"{", Reason.INVALID_JSON),
        (b"[1, 2]", Reason.INVALID_JSON),
        (b"7:0.5,0.5", Reason.INVALID_JSON),
        (_json({"image": IMAGE}), Reason.MISSING_KEY),
        (_json({"key": None, "image": IMAGE}), Reason.MISSING_KEY),
        (_json({"key": "7", "image": IMAGE}), Reason.BAD_KEY),
        (_json({"key": 7.5, "image": IMAGE}), Reason.BAD_KEY),
        (_json({"key": True, "image": IMAGE}), Reason.BAD_KEY),
        (_json({"key": 2**64, "image": IMAGE}), Reason.BAD_KEY),
        (_json({"key": 7}), Reason.WRONG_VALUE_COUNT),
        (_json({"key": 7, "image": "0.5"}), Reason.WRONG_VALUE_COUNT),
        (_json({"key": 7, "image": IMAGE[:-1]}), Reason.WRONG_VALUE_COUNT),
        (_json({"key": 7, "image": [*IMAGE[:-1], "0.5"]}), Reason.NON_NUMERIC),
        (_json({"key": 7, "image": [*IMAGE[:-1], None]}), Reason.NON_NUMERIC),
        (_json({"key": 7, "image": [*IMAGE[:-1], [0.5]]}), Reason.NON_NUMERIC),
        (_json({"key": 7, "image": [*IMAGE[:-1], float("nan")]}), Reason.NON_FINITE),
        (_json({"key": 7, "image": [*IMAGE[:-1], 1e39]}), Reason.NON_FINITE),
        (_json({"key": 7, "image": [*IMAGE[:-1], 2]}), Reason.OUT_OF_RANGE),
    ],
)
def test_jsonl_rejections_name_the_reason(line, reason):
    good = [_json({"key": 1, "image": IMAGE}), _json({"key": 2, "image": IMAGE, "label": 3})]
    batch, dead = parse_jsonl([good[0], line, good[1]], "in.jsonl")
    assert [d.reason for d in dead] == [reason]
    np.testing.assert_array_equal(batch.keys, [1, 2])


def _example(features: dict) -> bytes:
    import tensorflow as tf

    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def test_tfrecord_rejections_name_the_reason():
    import tensorflow as tf

    def int64(*values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    def raw(*values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))

    image = raw(bytes(NUM_PIXELS))
    float_key = tf.train.Feature(float_list=tf.train.FloatList(value=[1.0]))
    cases = [
        (b"\xff\xfenot a proto", Reason.BAD_TFRECORD),
        (_example({"image": image}), Reason.MISSING_KEY),
        (_example({"key": float_key, "image": image}), Reason.BAD_KEY),
        (_example({"key": int64(1, 2), "image": image}), Reason.BAD_KEY),
        (_example({"key": int64(7)}), Reason.BAD_TFRECORD),
        (_example({"key": int64(7), "image": int64(1)}), Reason.BAD_TFRECORD),
        (_example({"key": int64(7), "image": raw(bytes(NUM_PIXELS - 1))}), Reason.WRONG_VALUE_COUNT),
        (b"\0" * (MAX_RECORD_BYTES + 1), Reason.OVERSIZED_LINE),
    ]
    good = _examples(KEYS[:2], PIXELS[:2])
    batch, dead = parse_tfrecord([good[0], *(record for record, _ in cases), good[1]], "in.tfrecord")
    assert sorted(d.reason for d in dead) == sorted(reason for _, reason in cases)
    np.testing.assert_array_equal(batch.keys, KEYS[:2])


def test_bad_rows_scattered_through_a_big_batch_cost_only_themselves():
    good = _lines(encode_text(np.arange(3000), RNG.integers(0, 256, size=(3000, NUM_PIXELS), dtype=np.uint8)))
    bad_at = {5, 777, 778, 2999}
    records = [b"%d:" % i + _with_last(b"oops") if i in bad_at else line for i, line in enumerate(good)]
    batch, dead = parse_text(records, "src")
    assert sorted(int(d.raw.split(":")[0]) for d in dead) == sorted(bad_at)
    assert batch.keys.tolist() == [i for i in range(3000) if i not in bad_at]


def test_empty_batches_parse_to_empty_batches():
    for parser in (parse_text, parse_jsonl, parse_tfrecord):
        batch, dead = parser([], "src")
        assert len(batch) == 0 and dead == [] and batch.images.shape == (0, NUM_PIXELS)
