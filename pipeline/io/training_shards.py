"""`mnistkit convert --for-training`: a dataset as train/validation/test TFRecord shards plus dataset.json.

The rows are predict's TFRecord Examples with a `label` (model_export/training_data.py holds the
format and reads it back); files go through Beam's FileSystems, so the output may be local or
gs://, and each shard appears only once complete. The manifest is written last: a folder whose
dataset.json exists holds every file it names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from apache_beam.io.filesystems import FileSystems

from mnistkit.model_export.training_data import MANIFEST, build_manifest, split_dataset
from mnistkit.pipeline.io.formats import write_rows

__all__ = ["TrainingShards", "write_training_shards"]

_CHUNK_ROWS = 4096


@dataclass(frozen=True)
class TrainingShards:
    manifest_path: str
    rows: dict[str, int]
    files: dict[str, list[str]]


def write_training_shards(
    dataset: str,
    output_dir: str,
    data_dir: str | None = None,
    shards: int = 4,
    validation_samples: int = 0,
    max_train_samples: int | None = None,
) -> TrainingShards:
    """Write `output_dir/{train,validation,test}-0000i-of-0000N.tfrecord` and `output_dir/dataset.json`.

    Train gets `shards` files (at least as many as the workers that will read it, so each reads
    its own); validation and test, which only the chief scores, get one each. Keys are row indices
    within the split, as `mnistkit convert --dataset` writes them.
    """
    output_dir = output_dir.rstrip("/")
    splits = split_dataset(dataset, data_dir, validation_samples, max_train_samples)
    files: dict[str, list[str]] = {}
    for split, (pixels, labels) in splits.items():
        if not len(pixels):
            continue
        files[split] = write_rows(
            f"{output_dir}/{split}.tfrecord", "tfrecord", _chunks(pixels, labels), shards if split == "train" else 1
        )
    rows = {split: len(splits[split][0]) for split in files}
    manifest_path = f"{output_dir}/{MANIFEST}"
    with FileSystems.create(manifest_path) as f:
        f.write((json.dumps(build_manifest(dataset, files, rows), indent=2) + "\n").encode())
    return TrainingShards(manifest_path, rows, files)


def _chunks(pixels: np.ndarray, labels: np.ndarray):
    for start in range(0, len(pixels), _CHUNK_ROWS):
        end = start + _CHUNK_ROWS
        yield np.arange(start, min(end, len(pixels)), dtype=np.int64), pixels[start:end], labels[start:end]
