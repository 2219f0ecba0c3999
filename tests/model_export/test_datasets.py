"""The IDX/npz loader and its resolution order, on the real shared files and real HTTP downloads."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import http.server
import shutil
import socket
import threading

import numpy as np
import pytest

from mnistkit.model_export import datasets
from mnistkit.model_export.datasets import DatasetError, load_dataset, read_idx


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MNISTKIT_DATASET_MIRROR", raising=False)


def test_sample_loads_with_expected_shapes(mnist_sample_dir):
    images, labels = load_dataset("mnist", "train", mnist_sample_dir)
    assert images.shape == (7000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (7000,) and set(np.unique(labels)) == set(range(10))
    test_images, _ = load_dataset("mnist", "test", mnist_sample_dir)
    assert test_images.shape == (1000, 28, 28)


def test_raw_and_gzip_idx_agree(mnist_sample_dir, tmp_path):
    gz = mnist_sample_dir / "t10k-images-idx3-ubyte.gz"
    raw = tmp_path / "t10k-images-idx3-ubyte"
    raw.write_bytes(gzip.decompress(gz.read_bytes()))
    np.testing.assert_array_equal(read_idx(gz), read_idx(raw))


def test_npz_is_read_like_keras_writes_it(mnist_sample_dir, tmp_path):
    (x_train, y_train), (x_test, y_test) = (load_dataset("mnist", s, mnist_sample_dir) for s in ("train", "test"))
    np.savez_compressed(tmp_path / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    images, labels = load_dataset("mnist", "test", tmp_path)
    np.testing.assert_array_equal(images, x_test)
    np.testing.assert_array_equal(labels, y_test)


def test_truncated_gzip_names_the_file(mnist_sample_dir, tmp_path):
    for f in mnist_sample_dir.iterdir():
        shutil.copy(f, tmp_path / f.name)
    victim = tmp_path / "t10k-images-idx3-ubyte.gz"
    victim.write_bytes(victim.read_bytes()[:5000])
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.gz is corrupt or truncated"):
        load_dataset("mnist", "test", tmp_path)


def test_truncated_raw_idx_reports_sizes(mnist_sample_dir, tmp_path):
    raw = tmp_path / "t10k-labels-idx1-ubyte"
    raw.write_bytes(gzip.decompress((mnist_sample_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())[:-10])
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte is truncated or corrupt: header says \(1000,\)"):
        read_idx(raw)


def test_not_an_idx_file(tmp_path):
    bogus = tmp_path / "train-images-idx3-ubyte"
    bogus.write_bytes(b"<html>captive portal</html>")
    with pytest.raises(DatasetError, match="not an IDX file"):
        read_idx(bogus)


def test_data_dir_without_data_says_what_it_expected(tmp_path):
    with pytest.raises(DatasetError, match="--data-dir .* holds no mnist data"):
        load_dataset("mnist", "train", tmp_path)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_error_is_one_paragraph_naming_data_dir(monkeypatch):
    monkeypatch.setenv("MNISTKIT_DATASET_MIRROR", f"http://127.0.0.1:{_closed_port()}/")
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", "train")
    message = str(err.value)
    assert "--data-dir" in message and "\n" not in message and "could not be downloaded" in message


@pytest.fixture
def mirror(shared_datasets):
    """A real HTTP server on loopback serving the Fashion-MNIST files, like the public bucket."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(shared_datasets / "fashion-mnist"))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_verifies_checksums_and_fills_the_cache(mirror, monkeypatch):
    no_system_copy = dataclasses.replace(datasets.DATASETS["fashion-mnist"], system_dir=None)
    monkeypatch.setitem(datasets.DATASETS, "fashion-mnist", no_system_copy)
    monkeypatch.setenv("MNISTKIT_DATASET_MIRROR", mirror)
    images, labels = load_dataset("fashion-mnist", "test")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    cached = sorted(p.name for p in datasets.cache_dir("fashion-mnist").iterdir())
    assert cached == sorted(f.name for f in datasets.DATASETS["fashion-mnist"].files)  # no temp leftovers


def test_checksum_mismatch_discards_the_download(mirror, monkeypatch):
    spec = datasets.DATASETS["fashion-mnist"]
    bad = datasets.DatasetSpec(
        name=spec.name,
        base_url=spec.base_url,
        files=(datasets.RemoteFile(spec.files[0].name, "0" * 64),),
    )
    monkeypatch.setenv("MNISTKIT_DATASET_MIRROR", mirror)
    with pytest.raises(DatasetError, match="SHA-256"):
        datasets.download_dataset(bad)
    assert list(datasets.cache_dir("fashion-mnist").iterdir()) == []


def test_system_dir_is_used_when_cache_is_empty(shared_datasets, monkeypatch):
    monkeypatch.setattr(
        datasets,
        "DATASETS",
        {
            "fashion-mnist": datasets.DatasetSpec(
                "fashion-mnist", "http://unused/", (), shared_datasets / "fashion-mnist"
            )
        },
    )
    images, _ = load_dataset("fashion-mnist", "test", download=False)
    assert images.shape == (10000, 28, 28)


def test_unknown_dataset_and_split():
    with pytest.raises(DatasetError, match="Unknown dataset"):
        load_dataset("cifar", "train")
    with pytest.raises(DatasetError, match="Unknown split"):
        load_dataset("mnist", "validation")
