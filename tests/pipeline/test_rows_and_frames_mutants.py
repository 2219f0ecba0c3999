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

from mnistkit.pipeline.io import files, parsing, reference
from mnistkit.pipeline.io.formats import encode_jsonl, encode_text
from mnistkit.pipeline.rows import DeadLetter, ParsedBatch, RawBatch, Reason


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


@pytest.mark.parametrize(
    ("images", "sources"), [(np.zeros((2, 784), np.float32), ["s"]), (np.zeros((2, 783), np.float32), ["s", "s"])]
)
def test_a_batch_whose_parts_disagree_is_refused(images, sources):
    with pytest.raises(ValueError, match="inconsistent batch: keys"):
        ParsedBatch(np.arange(2), images, sources)


def test_empty_and_sliced_batches_keep_their_types_and_sources():
    empty = ParsedBatch.empty()
    assert empty.keys.dtype == np.int64 and empty.images.shape == (0, 784) and empty.sources == []
    batch = ParsedBatch(np.arange(4), np.eye(4, 784, dtype=np.float32), ["a", "b", "c", "d"])
    part = batch.slice(1, 3)
    assert part.keys.tolist() == [1, 2] and part.sources == ["b", "c"]
    assert (part.images == batch.images[1:3]).all()


def test_the_per_record_parser_keeps_good_rows_and_says_why_of_the_rest():
    good = b"7:" + b",".join([b"1"] + [b"0"] * 783)  # pixels as the model sees them, in 0..1
    batch, dead = reference.parse_per_record([good, b"x:1", b""], "in.txt", "text")
    assert batch.keys.tolist() == [7] and batch.keys.dtype == np.int64 and batch.sources == ["in.txt"]
    assert batch.images[0, 0] == 1.0 and batch.images[0, 1:].sum() == 0
    assert [(d.source, d.raw, d.reason) for d in dead] == [
        ("in.txt", "x:1", Reason.BAD_KEY),
        ("in.txt", "", Reason.EMPTY_LINE),
    ]
    assert dead[0].detail
    nothing, dead = reference.parse_per_record([b"x:1"], "in.txt", "text")
    assert len(nothing) == 0 and nothing.images.shape == (0, 784) and len(dead) == 1


def test_a_raw_batch_of_an_unknown_format_is_all_dead_letters():
    batch, dead = parsing.parse(RawBatch("in.csv", [b"1,2", b"3"]), "csv")
    assert len(batch) == 0
    assert [(d.source, d.reason, d.detail) for d in dead] == [
        ("in.csv", Reason.UNKNOWN_FORMAT, "no parser for format 'csv'")
    ] * 2


def test_lost_framing_names_the_byte_where_the_bad_frame_starts(tmp_path):
    first = files.frame_tfrecord(b"abc")
    path = tmp_path / "cut.tfrecord"
    path.write_bytes(first + files.frame_tfrecord(b"defgh")[:7])
    with open(path, "rb") as f:
        payload, lost = list(files._tfrecords(f, str(path)))
    assert payload == b"abc"
    assert lost.detail == f"truncated record header at byte {len(first)}; the rest of the file was skipped"


def test_storage_errors_propagate_and_decoder_errors_become_a_dead_letter():
    def failing(exc):
        yield b"row"
        raise exc

    with pytest.raises(OSError, match="No space"):
        list(files._until_damaged(failing(OSError(28, "No space")), "in.gz", "gzip"))
    record, letter = files._until_damaged(failing(OSError("Not a gzipped file")), "in.gz", "gzip")
    assert record == b"row" and letter.reason == Reason.CORRUPT_FILE
    assert letter.detail == "corrupt gzip file (Not a gzipped file); the 1 records before the damage were read"
