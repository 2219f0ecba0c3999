"""TFRecord files are TensorFlow's: the kit's writer and reader checked against TensorFlow's own
(tf.io.TFRecordWriter, tf.data.TFRecordDataset) in both directions, plain and gzipped.

The kit frames and checks records itself (io/files.py); tested only against itself, a wrong CRC
mask would pass, and every file TensorFlow wrote would then be rejected whole.
"""

from __future__ import annotations

import numpy as np
import pytest

from mnistkit.model_export.model import NUM_PIXELS
from mnistkit.pipeline.io.files import FileRange, read_range
from mnistkit.pipeline.io.formats import write_rows
from mnistkit.pipeline.io.parsing import parse_tfrecord
from mnistkit.pipeline.rows import DeadLetter

ROWS = 300
COMPRESSION = {"t.tfrecord": None, "t.tfrecord.gz": "GZIP"}


@pytest.fixture(scope="module")
def rows() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(17)
    keys = rng.choice(10**12, ROWS, replace=False).astype(np.int64)
    return keys, rng.integers(0, 256, (ROWS, NUM_PIXELS), dtype=np.uint8)


@pytest.mark.parametrize("name", COMPRESSION)
def test_tensorflow_reads_every_record_the_kit_writes(tmp_path, rows, name):
    import tensorflow as tf

    keys, pixels = rows
    path = str(tmp_path / name)
    write_rows(path, "tfrecord", [(keys[:100], pixels[:100]), (keys[100:], pixels[100:])])
    features = {"key": tf.io.FixedLenFeature([], tf.int64), "image": tf.io.FixedLenFeature([], tf.string)}
    got_keys, got_pixels = [], []
    # TFRecordDataset checks both CRCs of every frame and fails on a mismatch.
    for record in tf.data.TFRecordDataset(path, compression_type=COMPRESSION[name]):
        example = tf.io.parse_single_example(record, features)
        got_keys.append(int(example["key"]))
        got_pixels.append(np.frombuffer(example["image"].numpy(), np.uint8))
    assert got_keys == keys.tolist()
    np.testing.assert_array_equal(np.stack(got_pixels), pixels)


@pytest.mark.parametrize("name", COMPRESSION)
def test_the_kit_reads_every_record_tensorflow_writes(tmp_path, rows, name):
    import tensorflow as tf

    keys, pixels = rows
    path = str(tmp_path / name)
    with tf.io.TFRecordWriter(path, options=COMPRESSION[name]) as writer:
        for key, image in zip(keys, pixels, strict=True):
            example = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        "key": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(key)])),
                        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
                    }
                )
            )
            writer.write(example.SerializeToString())
    items = list(read_range(FileRange(path), "tfrecord", batch_rows=64))
    assert [item for item in items if isinstance(item, DeadLetter)] == []
    records = [record for item in items for record in item.records]
    assert len(records) == ROWS
    parsed, dead = parse_tfrecord(records, path)
    assert dead == []
    assert parsed.keys.tolist() == keys.tolist()
    np.testing.assert_array_equal(parsed.images, pixels.astype(np.float32) / np.float32(255.0))
