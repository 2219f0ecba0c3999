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


def test_the_kits_example_messages_are_tensorflows_field_for_field():
    from google.protobuf import descriptor_pb2
    from tensorflow.core.example import example_pb2

    from mnistkit.pipeline.io.example_proto import Example

    def messages(descriptor) -> dict[str, str]:
        """Every message reachable from `descriptor`, as its DescriptorProto text (no options)."""
        found: dict[str, str] = {}
        pending = [descriptor]
        while pending:
            message = pending.pop()
            if message.full_name in found:
                continue
            proto = descriptor_pb2.DescriptorProto()
            message.CopyToProto(proto)
            for field in proto.field:
                field.ClearField("json_name")
            found[message.full_name] = str(proto)
            pending.extend(field.message_type for field in message.fields if field.message_type)
        return found

    ours, theirs = messages(Example.DESCRIPTOR), messages(example_pb2.Example.DESCRIPTOR)
    assert sorted(ours) == sorted(theirs) and len(ours) == 7
    for name, proto in theirs.items():
        assert ours[name] == proto, name


def test_tfrecord_inputs_are_read_and_written_without_tensorflow(tmp_path, rows):
    import subprocess
    import sys

    keys, pixels = rows
    script = f"""
import sys, numpy as np
from mnistkit.pipeline.io.files import FileRange, read_range
from mnistkit.pipeline.io.formats import write_rows
from mnistkit.pipeline.io.parsing import parse_tfrecord
keys = np.array({keys[:5].tolist()}, np.int64)
pixels = np.frombuffer(bytes.fromhex({pixels[:5].tobytes().hex()!r}), np.uint8).reshape(5, -1)
write_rows({str(tmp_path / "t.tfrecord")!r}, "tfrecord", [(keys, pixels)])
records = [r for b in read_range(FileRange({str(tmp_path / "t.tfrecord")!r}), "tfrecord", 64) for r in b.records]
parsed, dead = parse_tfrecord(records, "t")
assert dead == [] and parsed.keys.tolist() == keys.tolist(), (dead, parsed.keys)
assert (parsed.images * 255).round().astype(np.uint8).tolist() == pixels.tolist()
print("tensorflow" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False", done.stderr
