"""MNIST-family datasets: one loader for IDX files (gzip or raw) and Keras' ``mnist.npz``.

Where the files come from, in order:
  1. ``data_dir`` (``--data-dir``): IDX files or ``mnist.npz`` the user already has;
  2. the user cache (``$MNISTKIT_CACHE``, default ``~/.cache/mnistkit/<dataset>``), if it holds them;
  3. for Fashion-MNIST, Debian's ``dataset-fashion-mnist`` at ``/usr/share/datasets/fashion-mnist``;
  4. a download from the canonical public URLs (or ``$MNISTKIT_DATASET_MIRROR``) into the cache,
     verified by SHA-256 and written atomically so a broken download never looks like data.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "load_train_test",
    "DATASETS",
    "DatasetError",
    "DatasetSpec",
    "IDX_FILES",
    "RemoteFile",
    "SPLITS",
    "cache_dir",
    "dataset_spec",
    "download_dataset",
    "load_dataset",
    "read_idx",
    "read_npz",
    "read_split",
]

SPLITS = ("train", "test")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_UBYTE = 0x08
_DOWNLOAD_TIMEOUT_S = 30


class DatasetError(Exception):
    """A dataset that cannot be found, downloaded or read; the message says what to do."""


@dataclass(frozen=True)
class RemoteFile:
    name: str
    sha256: str


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    base_url: str
    files: tuple[RemoteFile, ...]
    system_dir: Path | None = None
    class_names: tuple[str, ...] = tuple(str(i) for i in range(10))


DATASETS: dict[str, DatasetSpec] = {
    # Keras' own copy of the digits; the IDX files on yann.lecun.com are often unreachable.
    "mnist": DatasetSpec(
        name="mnist",
        base_url="https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        files=(RemoteFile("mnist.npz", "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"),),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        base_url="https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        files=(
            RemoteFile(
                "train-images-idx3-ubyte.gz", "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"
            ),
            RemoteFile(
                "train-labels-idx1-ubyte.gz", "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"
            ),
            RemoteFile("t10k-images-idx3-ubyte.gz", "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"),
        ),
        system_dir=Path("/usr/share/datasets/fashion-mnist"),
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
}


def dataset_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(f"Unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.") from None


def cache_dir(name: str) -> Path:
    root = os.environ.get("MNISTKIT_CACHE") or Path.home() / ".cache" / "mnistkit"
    return Path(root) / name


def load_dataset(
    name: str, split: str = "train", data_dir: str | os.PathLike | None = None, download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images uint8 [N, 28, 28], labels uint8 [N])`` for one split of a dataset."""
    if split not in SPLITS:
        raise DatasetError(f"Unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    spec = dataset_spec(name)
    if data_dir is not None:
        directory = Path(data_dir)
        if not _has_files(directory):
            raise DatasetError(
                f"--data-dir {directory} holds no {spec.name} data: expected the IDX files "
                f"({', '.join(f + '[.gz]' for pair in IDX_FILES.values() for f in pair)}) or mnist.npz."
            )
        return read_split(directory, split)
    for directory in (cache_dir(spec.name), spec.system_dir):
        if directory is not None and _has_files(directory):
            return read_split(directory, split)
    if not download:
        raise DatasetError(_offline_message(spec, "downloads are disabled"))
    return read_split(download_dataset(spec), split)


def _has_files(directory: Path) -> bool:
    if (directory / "mnist.npz").is_file():
        return True
    return all(_find_idx(directory, base) is not None for pair in IDX_FILES.values() for base in pair)


def _find_idx(directory: Path, base: str) -> Path | None:
    for candidate in (directory / f"{base}.gz", directory / base):
        if candidate.is_file():
            return candidate
    return None


def read_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one split from a folder of IDX files or a Keras ``mnist.npz``."""
    npz = directory / "mnist.npz"
    if npz.is_file() and _find_idx(directory, IDX_FILES[split][0]) is None:
        return read_npz(npz, split)
    image_base, label_base = IDX_FILES[split]
    images = read_idx(_require(directory, image_base))
    labels = read_idx(_require(directory, label_base))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DatasetError(
            f"{directory}: {split} images {images.shape} and labels {labels.shape} do not match "
            "(expected [N, 28, 28] and [N])."
        )
    return images, labels


def _require(directory: Path, base: str) -> Path:
    path = _find_idx(directory, base)
    if path is None:
        raise DatasetError(f"{directory}: missing {base} (or {base}.gz).")
    return path


def read_npz(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    suffix = "train" if split == "train" else "test"
    try:
        with np.load(path) as data:
            images, labels = data[f"x_{suffix}"], data[f"y_{suffix}"]
    except (OSError, ValueError, KeyError, zlib.error) as exc:
        raise DatasetError(f"{path} is not a readable Keras mnist.npz ({exc}).") from exc
    return images.astype(np.uint8, copy=False), labels.astype(np.uint8, copy=False)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (unsigned-byte data, as MNIST uses), gzip-compressed or raw."""
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path} is corrupt or truncated ({exc}); delete it and fetch it again.") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{path} is not an IDX file (bad magic number).")
    if data[2] != _IDX_UBYTE:
        raise DatasetError(f"{path}: IDX data type 0x{data[2]:02x} is not unsigned byte.")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path} is truncated: its header is cut short.")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise DatasetError(
            f"{path} is truncated or corrupt: header says {shape} ({expected} bytes of data), "
            f"file holds {len(data) - header}."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def download_dataset(spec: DatasetSpec) -> Path:
    """Download every file of ``spec`` into the cache; returns the cache folder."""
    target = cache_dir(spec.name)
    target.mkdir(parents=True, exist_ok=True)
    base_url = os.environ.get("MNISTKIT_DATASET_MIRROR") or spec.base_url
    for remote in spec.files:
        destination = target / remote.name
        if destination.is_file() and _sha256(destination) == remote.sha256:
            continue
        try:
            _download(base_url.rstrip("/") + "/" + remote.name, destination, remote.sha256)
        except (urllib.error.URLError, OSError) as exc:
            raise DatasetError(_offline_message(spec, str(exc))) from exc
    return target


def _download(url: str, destination: Path, sha256: str) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as resp:
            shutil.copyfileobj(resp, out)
        actual = _sha256(tmp)
        if actual != sha256:
            raise DatasetError(
                f"Downloaded {url} but its SHA-256 is {actual}, expected {sha256}; "
                "the file was discarded. A proxy or mirror may be serving something else."
            )
        os.replace(tmp, destination)
    finally:
        tmp.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _offline_message(spec: DatasetSpec, cause: str) -> str:
    system = (
        f" Debian users can also `apt install dataset-{spec.name}`, which puts it in {spec.system_dir}."
        if spec.system_dir
        else ""
    )
    return (
        f"The {spec.name} dataset is not available locally and could not be downloaded ({cause}). "
        f"Point --data-dir at a folder holding the IDX files (train-images-idx3-ubyte.gz and the "
        f"three others) or mnist.npz, or copy them into {cache_dir(spec.name)}, or set "
        f"MNISTKIT_DATASET_MIRROR to a reachable mirror of {spec.base_url}.{system}"
    )


def load_train_test(
    dataset: str, data_dir: str | os.PathLike | None = None, max_train_samples: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels), the train split cut to its first
    `max_train_samples` (quick runs); what every trainer starts from."""
    train_images, train_labels = load_dataset(dataset, "train", data_dir)
    test_images, test_labels = load_dataset(dataset, "test", data_dir)
    if max_train_samples:
        train_images, train_labels = train_images[:max_train_samples], train_labels[:max_train_samples]
    return train_images, train_labels, test_images, test_labels
