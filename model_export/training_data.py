"""Training data as TFRecord shards: the splits, the manifest beside the shards, the tf.data reader.

A training-data folder (local, or gs:// for the writer; on Vertex AI the bucket is read through
its /gcs/ mount) holds `train-*`, `validation-*` and `test-*` shards of tf.train.Examples with
`key` int64, `image` 784 raw uint8 bytes and `label` int64 — predict's TFRecord rows plus the
label, so `mnistkit predict` reads these shards as they are — and `dataset.json`, which names
each split's files and row counts. Workers stream their share of the files through tf.data, so
no worker holds the dataset in memory; the writer is pipeline/io/training_shards.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from mnistkit.model_export.datasets import DatasetError, load_dataset
from mnistkit.model_export.model import NUM_PIXELS

__all__ = [
    "LABEL_FEATURE",
    "MANIFEST",
    "TRAINING_SPLITS",
    "TrainingData",
    "build_manifest",
    "load_training_data",
    "split_dataset",
]

LABEL_FEATURE = "label"
MANIFEST = "dataset.json"
TRAINING_SPLITS = ("train", "validation", "test")
_MANIFEST_VERSION = 1


def split_dataset(
    dataset: str, data_dir: str | None = None, validation_samples: int = 0, max_train_samples: int | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(uint8 pixels [n, 784], labels int64 [n]) per training split of a dataset.

    Validation is the last `validation_samples` images of the train split (the datasets ship no
    validation split); `max_train_samples` caps what is left for training.
    """
    images, labels = load_dataset(dataset, "train", data_dir)
    if not 0 <= validation_samples < len(images):
        raise DatasetError(f"validation samples must be in 0..{len(images) - 1}, got {validation_samples}.")
    cut = len(images) - validation_samples
    test_images, test_labels = load_dataset(dataset, "test", data_dir)
    parts = {
        "train": (images[:cut][:max_train_samples], labels[:cut][:max_train_samples]),
        "validation": (images[cut:], labels[cut:]),
        "test": (test_images, test_labels),
    }
    return {
        split: (pixels.reshape(len(pixels), NUM_PIXELS), split_labels.astype(np.int64))
        for split, (pixels, split_labels) in parts.items()
    }


def build_manifest(dataset: str, files: Mapping[str, list[str]], rows: Mapping[str, int]) -> dict[str, Any]:
    """The `dataset.json` of a training-data folder; file names are relative to the folder."""
    return {
        "version": _MANIFEST_VERSION,
        "dataset": dataset,
        "features": {"key": "int64", "image": f"{NUM_PIXELS} raw uint8 bytes", LABEL_FEATURE: "int64"},
        "splits": {
            split: {"files": [name.rsplit("/", 1)[-1] for name in files[split]], "rows": int(rows[split])}
            for split in files
        },
    }


class TrainingData:
    """A training-data folder opened through its manifest; `dataset()` streams one split."""

    def __init__(self, root: str, manifest: dict[str, Any]) -> None:
        self.root = root.rstrip("/")
        self.manifest = manifest

    @property
    def name(self) -> str:
        return self.manifest["dataset"]

    def rows(self, split: str) -> int:
        return self.manifest["splits"].get(split, {}).get("rows", 0)

    def files(self, split: str) -> list[str]:
        return [f"{self.root}/{name}" for name in self.manifest["splits"].get(split, {}).get("files", [])]

    def dataset(
        self,
        split: str,
        batch_size: int,
        num_workers: int = 1,
        shuffle_seed: int | None = None,
        repeat: bool = False,
    ):
        """A tf.data pipeline of (image float32 [b, 784] in 0..1, label int64 [b]) batches.

        Files are interleaved and batches prefetched. With several workers each reads only its
        own files (tf.distribute's FILE sharding) when there are enough of them, else every
        worker reads all and keeps its share of the rows (DATA sharding).
        """
        import tensorflow as tf

        files = self.files(split)
        if not files:
            raise DatasetError(f"{self.root} holds no {split} shards (see its {MANIFEST}).")
        data = tf.data.Dataset.from_tensor_slices(files).interleave(
            tf.data.TFRecordDataset,
            cycle_length=min(len(files), 4),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=shuffle_seed is not None or not repeat,
        )
        if shuffle_seed is not None:
            data = data.shuffle(min(self.rows(split), 10_000), seed=shuffle_seed, reshuffle_each_iteration=True)
        if repeat:
            data = data.repeat()
        data = data.batch(batch_size).map(_parse_batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
        options = tf.data.Options()
        policy = tf.data.experimental.AutoShardPolicy
        options.experimental_distribute.auto_shard_policy = policy.FILE if len(files) >= num_workers else policy.DATA
        return data.with_options(options)


def _parse_batch(records):
    import tensorflow as tf

    features = tf.io.parse_example(
        records,
        {
            "image": tf.io.FixedLenFeature([], tf.string),
            LABEL_FEATURE: tf.io.FixedLenFeature([], tf.int64),
        },
    )
    pixels = tf.io.decode_raw(features["image"], tf.uint8)
    images = tf.reshape(tf.cast(pixels, tf.float32) / 255.0, [-1, NUM_PIXELS])
    return images, features[LABEL_FEATURE]


def load_training_data(root: str | os.PathLike) -> TrainingData:
    """Open a training-data folder (local, or any path TensorFlow's file system reads)."""
    import tensorflow as tf

    root = os.fspath(root)
    path = f"{root.rstrip('/')}/{MANIFEST}"
    try:
        with tf.io.gfile.GFile(path) as f:
            manifest = json.load(f)
    except (tf.errors.NotFoundError, json.JSONDecodeError) as exc:
        raise DatasetError(
            f"{path} is missing or unreadable ({exc}); write training shards with "
            "`mnistkit convert --dataset … --for-training --output DIR`."
        ) from exc
    except tf.errors.UnimplementedError as exc:
        raise DatasetError(
            f"This TensorFlow cannot read {root} ({exc}); on Vertex AI pass the bucket's /gcs/ path, "
            "locally copy the shards to disk."
        ) from exc
    if manifest.get("version") != _MANIFEST_VERSION or not isinstance(manifest.get("splits"), dict):
        raise DatasetError(f"{path} is not a training-data manifest this kit understands (version 1).")
    return TrainingData(root, manifest)
