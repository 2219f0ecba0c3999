"""Training data as TFRecord shards: what the writer puts there, what tf.data reads back, and predict's view."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mnistkit.cli.main import cli
from mnistkit.model_export.datasets import DatasetError, load_dataset
from mnistkit.model_export.distributed import cluster_task, local_cluster_configs, parse_worker_args, worker_args
from mnistkit.model_export.train import TrainConfig
from mnistkit.model_export.training_data import MANIFEST, load_training_data


@pytest.fixture(scope="module")
def shards_dir(tmp_path_factory, mnist_sample_dir):
    out = tmp_path_factory.mktemp("shards")
    result = CliRunner().invoke(
        cli,
        [
            "convert", "--dataset", "mnist", "--data-dir", str(mnist_sample_dir), "--for-training",
            "--output", str(out), "--shards", "3", "--validation-samples", "500", "--limit", "2000",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Wrote 2,000 train rows to 3 file(s)" in result.output and "500 validation rows" in result.output
    return out


def test_manifest_names_every_split_and_its_rows(shards_dir):
    manifest = json.loads((shards_dir / MANIFEST).read_text())
    splits = manifest["splits"]
    assert {s: v["rows"] for s, v in splits.items()} == {"train": 2000, "validation": 500, "test": 1000}
    assert splits["train"]["files"] == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert all((shards_dir / name).is_file() for split in splits.values() for name in split["files"])
    assert not list(shards_dir.glob("*.tmp-*"))  # every file renamed into place


def test_tf_data_reads_back_the_images_and_labels(shards_dir, mnist_sample_dir):
    images, labels = load_dataset("mnist", "train", mnist_sample_dir)
    data = load_training_data(shards_dir)
    # Unshuffled, one file at a time: the shards interleave rows dealt round-robin.
    read_images, read_labels = [], []
    for batch_images, batch_labels in data.dataset("validation", 128):
        read_images.append(batch_images.numpy())
        read_labels.append(batch_labels.numpy())
    read_images, read_labels = np.concatenate(read_images), np.concatenate(read_labels)
    # Validation is the last 500 train images, in order (one file), pixels scaled to 0..1.
    np.testing.assert_array_equal(read_labels, labels[-500:])
    np.testing.assert_array_equal(np.rint(read_images * 255).astype(np.uint8), images[-500:].reshape(500, 784))
    # Train: the first 2000 (--limit), each exactly once across the 3 files.
    train_labels = np.concatenate([b.numpy() for _, b in data.dataset("train", 500)])
    assert len(train_labels) == 2000
    np.testing.assert_array_equal(np.bincount(train_labels, minlength=10), np.bincount(labels[:2000], minlength=10))


def test_shuffled_repeated_reading_for_training(shards_dir):
    data = load_training_data(shards_dir)
    batches = iter(data.dataset("train", 256, shuffle_seed=1, repeat=True))
    first = [next(batches)[1].numpy() for _ in range(10)]  # 2,560 rows: past the end, repeated
    assert all(len(b) == 256 for b in first)


def test_predict_reads_training_shards_as_its_own_tfrecord_rows(shards_dir):
    from mnistkit.pipeline.io.files import FileRange, read_range
    from mnistkit.pipeline.io.parsing import parse_tfrecord

    (raw,) = read_range(FileRange(str(shards_dir / "test.tfrecord")), "tfrecord", 5000)
    batch, dead = parse_tfrecord(raw.records, raw.source)
    assert not dead and batch.keys.tolist() == list(range(1000))  # keys are row indices: scorable


def test_a_folder_without_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="for-training"):
        load_training_data(tmp_path)


def test_for_training_needs_a_dataset(tmp_path):
    result = CliRunner().invoke(cli, ["convert", "--input", "x.txt", "--output", str(tmp_path), "--for-training"])
    assert result.exit_code == 2 and "--for-training needs --dataset" in result.output


def test_local_cluster_is_shaped_like_vertex_ai():
    configs = local_cluster_configs(3)
    cluster = configs[0]["cluster"]
    assert len(cluster["chief"]) == 1 and len(cluster["worker"]) == 2
    assert len(set(cluster["chief"] + cluster["worker"])) == 3
    tasks = [cluster_task(json.dumps(c)) for c in configs]
    assert [(t.name, t.is_chief, t.rank, t.num_workers) for t in tasks] == [
        ("chief-0", True, 0, 3),
        ("worker-0", False, 1, 3),
        ("worker-1", False, 2, 3),
    ]
    # A cluster without a chief (plain TF convention): worker 0 leads.
    no_chief = json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}})
    assert cluster_task(no_chief).is_chief and cluster_task("").num_workers == 1


def test_worker_args_round_trip_through_the_entry_point():
    config = TrainConfig(
        training_data="/gcs/b/d", output_dir=Path("/gcs/b/o"), export_dir="/gcs/b/m", epochs=7, learning_rate=1e-3
    )
    parsed = parse_worker_args(worker_args(config))
    fields = ("training_data", "output_dir", "export_dir", "epochs", "batch_size", "learning_rate", "seed")
    assert {f: getattr(parsed, f) for f in fields} == {f: getattr(config, f) for f in fields}
