"""The reasons and details the exact per-record parser gives: the vectorised parsers fall back to
it (io/reference.py), so its details are what a dead letter says then, and the property tests
compare reasons only.

Written for the survivors of the mutation run (docs/RELIABILITY.md, "Mutation score").
"""

from __future__ import annotations

import pytest

from mnistkit.pipeline.io.reference import reference_record
from mnistkit.pipeline.rows import Reason

ZEROS = ",".join(["0"] * 783)


def example(**features) -> bytes:
    import tensorflow as tf

    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def test_text_and_json_rejections_say_why():
    assert reference_record("text", f"1:2,{ZEROS}".encode()) == (Reason.OUT_OF_RANGE, "values must lie in 0..1")
    assert reference_record("jsonl", b'{"image": [0]}') == (Reason.MISSING_KEY, "no `key` field")
    assert reference_record("jsonl", b'{"key": 1, "key": 2, "image": [0]}') == (
        Reason.INVALID_JSON,
        "a field is given twice",
    )


@pytest.mark.parametrize(
    ("pixel", "reason"),
    [
        (str(10**400), Reason.NON_FINITE),  # an integer too big for a float is infinite, not unreadable
        ("2000", Reason.OUT_OF_RANGE),
    ],
)
def test_big_integer_pixels_are_out_of_range_or_infinite(pixel, reason):
    assert reference_record("jsonl", f'{{"key": 1, "image": [{pixel},{ZEROS}]}}'.encode())[0] == reason


def test_tfrecord_rejections_say_why():
    import tensorflow as tf

    float_key = example(key=tf.train.Feature(float_list=tf.train.FloatList(value=[1.0])))
    assert reference_record("tfrecord", float_key) == (Reason.BAD_KEY, "`key` must hold exactly one int64")
    no_image = example(key=tf.train.Feature(int64_list=tf.train.Int64List(value=[1])))
    assert reference_record("tfrecord", no_image) == (
        Reason.BAD_TFRECORD,
        "`image` must hold exactly one bytes value (784 raw uint8 pixels)",
    )
