"""Row-model and file-format details the end-to-end tests only see indirectly: the dead-letter
JSON, TFRecord frames as TensorFlow writes them, where a
file is cut into ranges, and that a clean batch takes the vectorised parser.

Written for the survivors of the mutation run (docs/RELIABILITY.md, "Mutation score").
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from mnistkit.pipeline.io import files, parsing
from mnistkit.pipeline.io.formats import encode_jsonl, encode_text
from mnistkit.pipeline.rows import DeadLetter, Reason


def test_a_dead_letter_is_one_json_object_with_its_four_fields():
    letter = DeadLetter.of("in.txt", b"1,2,x", Reason.NON_NUMERIC, "pixel 2 is not a number")
    assert json.loads(letter.to_json()) == {
        "source": "in.txt",
        "reason": "non_numeric",
        "detail": "pixel 2 is not a number",
        "raw": "1,2,x",
    }


def test_kit_tfrecord_frames_are_byte_for_byte_tensorflow_s(tmp_path):
    import tensorflow as tf

    payloads = [b"", b"x", bytes(range(256)) * 5]
    path = str(tmp_path / "tf.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for payload in payloads:
            writer.write(payload)
    assert b"".join(files.frame_tfrecord(p) for p in payloads) == (tmp_path / "tf.tfrecord").read_bytes()


def test_a_file_of_exactly_the_target_size_is_one_range(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"\n" * (1 << 20))  # the smallest range size, so the target for one split
    (only,) = files.plan_ranges(str(path), "text", desired_splits=100)
    assert (only.start, only.file_size) == (0, 1 << 20)
    path.write_bytes(b"\n" * ((1 << 20) + 1))
    assert len(files.plan_ranges(str(path), "text", desired_splits=100)) == 2


def records_of(fmt: str, keys: np.ndarray, pixels: np.ndarray) -> list[bytes]:
    """The records a reader hands the parser: lines, or TFRecord payloads (serialized Examples)."""
    if fmt != "tfrecord":
        return {"text": encode_text, "jsonl": encode_jsonl}[fmt](keys, pixels).splitlines()
    import tensorflow as tf

    return [
        tf.train.Example(
            features=tf.train.Features(
                feature={
                    "key": tf.train.Feature(int64_list=tf.train.Int64List(value=[key])),
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[row.tobytes()])),
                }
            )
        ).SerializeToString()
        for key, row in zip(keys.tolist(), pixels, strict=True)
    ]


@pytest.mark.parametrize("fmt", ["text", "jsonl", "tfrecord"])
def test_a_clean_batch_takes_the_vectorised_parser(fmt, monkeypatch, caplog):
    keys = np.arange(5, dtype=np.int64)
    pixels = np.arange(5 * 784, dtype=np.int64).reshape(5, 784) % 256
    records = records_of(fmt, keys, pixels.astype(np.uint8))
    per_record = []
    real = parsing._per_record
    monkeypatch.setattr(
        parsing, "_per_record", lambda kept, indices, *rest: per_record.extend(indices) or real(kept, indices, *rest)
    )
    with caplog.at_level(logging.WARNING):
        batch, dead = parsing.PARSERS[fmt](records, "in")
    assert dead == [] and batch.keys.tolist() == keys.tolist() and batch.sources == ["in"] * 5
    assert "fast path failed" not in caplog.text and per_record == []
