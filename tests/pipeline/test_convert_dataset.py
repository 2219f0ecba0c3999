"""`mnistkit convert --dataset`: a dataset split straight to a wire format, keyed by image index."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner

from mnistkit.cli.main import cli
from mnistkit.pipeline.io.formats import FormatError, convert, keyed_rows


def test_dataset_split_becomes_rows_keyed_by_index(tmp_path, mnist_sample_dir, mnist_test_set):
    images, _ = mnist_test_set
    out = tmp_path / "test.tfrecord"
    result = CliRunner().invoke(
        cli,
        ["convert", "--dataset", "mnist", "--split", "test", "--data-dir", str(mnist_sample_dir),
         "--limit", "300", "--output", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Wrote 300 rows" in result.output
    rejected = Counter()
    keys, pixels = (np.concatenate(parts) for parts in zip(*keyed_rows(str(out), "tfrecord", rejected), strict=True))
    np.testing.assert_array_equal(keys, np.arange(300))
    np.testing.assert_array_equal(pixels, images[:300].reshape(300, 784))
    assert not rejected


def test_dataset_and_input_are_exclusive(tmp_path, mnist_sample_dir):
    with pytest.raises(FormatError, match="not both"):
        convert(str(mnist_sample_dir / "t10k-images-idx3-ubyte.gz"), str(tmp_path / "x.txt"), "text", dataset="mnist")


def test_missing_dataset_is_a_clean_error(tmp_path):
    result = CliRunner().invoke(
        cli, ["convert", "--dataset", "mnist", "--data-dir", str(tmp_path), "--output", str(tmp_path / "x.txt")]
    )
    assert result.exit_code == 1 and "holds no mnist data" in result.output
