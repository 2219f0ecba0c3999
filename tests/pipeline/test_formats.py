"""Format detection and `convert`: IDX → any format → any format keeps keys and pixels exactly."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from mnistkit.pipeline.io.formats import FormatError, convert, detect_format, keyed_rows, shard_paths


@pytest.mark.parametrize(
    "uri, fmt",
    [
        ("data/test.txt", "text"),
        ("gs://b/in/test.csv.gz", "text"),
        ("data/test-*.jsonl", "jsonl"),
        ("data/x.ndjson.bz2", "jsonl"),
        ("data/test-00000-of-00004.tfrecord", "tfrecord"),
        ("data/t.tfrecords.gz", "tfrecord"),
        ("/d/mnist-sample/t10k-images-idx3-ubyte.gz", "idx"),
    ],
)
def test_formats_are_told_from_extensions(uri, fmt):
    assert detect_format(uri) == fmt


def test_an_unknown_extension_asks_for_format():
    with pytest.raises(FormatError, match="--format"):
        detect_format("data/*")


def test_shard_names_keep_the_extension():
    assert shard_paths("gs://b/d/test.tfrecord.gz", 2) == [
        "gs://b/d/test-00000-of-00002.tfrecord.gz",
        "gs://b/d/test-00001-of-00002.tfrecord.gz",
    ]
    assert shard_paths("out/x.txt", 1) == ["out/x.txt"]


def _all_rows(uri: str, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    rejected: Counter = Counter()
    chunks = list(keyed_rows(uri, fmt, rejected))
    assert not rejected
    keys = np.concatenate([k for k, _ in chunks])
    order = np.argsort(keys)
    return keys[order], np.concatenate([p for _, p in chunks])[order]


def test_round_trips_through_every_format_are_lossless(tmp_path, mnist_sample_dir, test_rows):
    keys, pixels = test_rows
    idx = str(mnist_sample_dir / "t10k-images-idx3-ubyte.gz")
    text = convert(idx, str(tmp_path / "a.txt.gz"), "text")
    assert text.rows == len(keys) and text.files == [str(tmp_path / "a.txt.gz")]
    records = convert(text.files[0], str(tmp_path / "b.tfrecord"), "tfrecord", shards=3)
    assert len(records.files) == 3
    jsonl = convert(str(tmp_path / "b-*-of-00003.tfrecord"), str(tmp_path / "c.jsonl"), "jsonl")
    for uri, fmt in [
        (text.files[0], "text"),
        (str(tmp_path / "b-*.tfrecord"), "tfrecord"),
        (jsonl.files[0], "jsonl"),
    ]:
        got_keys, got_pixels = _all_rows(uri, fmt)
        np.testing.assert_array_equal(got_keys, keys)
        np.testing.assert_array_equal(got_pixels, pixels)


def test_idx_options_limit_offset_and_repeat_keys(tmp_path, mnist_sample_dir, test_rows):
    idx = str(mnist_sample_dir / "t10k-images-idx3-ubyte.gz")
    result = convert(idx, str(tmp_path / "r.txt"), "text", limit=300, key_start=1000, repeat=3)
    assert result.rows == 900
    keys, pixels = _all_rows(result.files[0], "text")
    np.testing.assert_array_equal(keys, np.arange(1000, 1900))
    np.testing.assert_array_equal(pixels, np.tile(test_rows[1][:300], (3, 1)))


def test_keyed_inputs_keep_their_keys_and_skip_bad_rows(tmp_path):
    (tmp_path / "in.txt").write_bytes(b"5:" + b",".join([b"1"] * 784) + b"\nbroken\n")
    result = convert(str(tmp_path / "in.txt"), str(tmp_path / "out.jsonl"), "jsonl")
    assert result.rows == 1 and result.rejected == Counter({"missing_key": 1})
    with pytest.raises(FormatError, match="IDX"):
        convert(str(tmp_path / "in.txt"), str(tmp_path / "out2.jsonl"), "jsonl", repeat=2)
