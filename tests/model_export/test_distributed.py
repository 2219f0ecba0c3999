"""`mnistkit train --workers 2`: two real TensorFlow processes (MultiWorkerMirroredStrategy over loopback
gRPC) on the MNIST sample; a worker killed mid-epoch, the cluster restarted, training resumed."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

from mnistkit.cli.main import cli
from mnistkit.model_export.distributed import PROGRESS_DIR, read_progress, run_local_cluster
from mnistkit.model_export.train import TrainConfig

pytestmark = pytest.mark.slow
EPOCHS = 5  # the 16/64 CNN passes 0.97 on the 7k-image sample in 5 epochs, as one worker does


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory, mnist_sample_dir):
    out = tmp_path_factory.mktemp("cluster")
    result = CliRunner().invoke(
        cli,
        [
            "train", "--workers", "2", "--epochs", str(EPOCHS), "--data-dir", str(mnist_sample_dir),
            "--output-dir", str(out / "train"), "--export-dir", str(out / "models"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out, result.output


def test_two_workers_reach_the_accuracy_and_report_per_worker_times(two_workers):
    out, output = two_workers
    assert "with 2 worker(s), global batch 128" in output and "0 restart(s)" in output
    metrics = json.loads((out / "train" / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.97, metrics["test"]
    assert metrics["train_samples"] == 7000 and metrics["test_samples"] == 1000
    cluster = metrics["cluster"]
    assert (cluster["workers"], cluster["global_batch_size"], cluster["per_worker_batch_size"]) == (2, 128, 64)
    assert [e["epoch"] for e in metrics["epochs"]] == list(range(1, EPOCHS + 1))
    # Both workers timed every epoch; the chief gathered them with a collective.
    assert all(len(e["worker_seconds"]) == 2 and min(e["worker_seconds"]) > 0 for e in metrics["epochs"])
    train = out / "train"
    assert (train / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any((train / "tensorboard").rglob("events.out.tfevents.*"))
    # Only the chief's artefacts remain: the other worker's copies and the backup are gone.
    assert not (train / "workers").exists() and not (train / "backup").exists()


def test_the_export_loads_and_serves_in_predict(two_workers, tmp_path, mnist_test_set):
    import tensorflow as tf

    from mnistkit.model_export.evaluate import classes_from_predictions
    from mnistkit.model_export.export import latest_version

    out, _ = two_workers
    version = latest_version(out / "models")
    serve = tf.saved_model.load(str(version)).signatures["serving_default"]
    images, labels = mnist_test_set
    probe = serve(key=tf.constant([7, 8], tf.int64), image=tf.constant(images[:2].reshape(2, 784) / 255, tf.float32))
    assert probe["key"].numpy().tolist() == [7, 8] and probe["probabilities"].shape == (2, 10)

    # predict reads the test shard written for training as it is (key, image; the label ignored).
    result = CliRunner().invoke(
        cli,
        [
            "predict", "--model", str(out / "models"), "--input", str(out / "train" / "data" / "test.tfrecord"),
            "--output", str(tmp_path / "pred"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    predicted = classes_from_predictions(str(tmp_path / "pred*.jsonl"), len(labels))
    assert np.mean(predicted == labels) >= 0.97


def _kill_mid_epoch(progress_path, epoch: int, batch: int, killed: dict, stop: threading.Event) -> None:
    """Kill the worker with SIGKILL once its progress file says it is past `batch` of `epoch`."""
    while not stop.is_set():
        state = read_progress(progress_path)
        if state and state["epoch"] == epoch and state["batch"] >= batch:
            os.kill(state["pid"], signal.SIGKILL)
            killed.update(pid=state["pid"], epoch=state["epoch"], batch=state["batch"])
            return
        time.sleep(0.05)


def test_a_killed_worker_resumes_from_the_backup_after_the_cluster_restarts(tmp_path, mnist_sample_dir):
    from mnistkit.pipeline.io.training_shards import write_training_shards

    write_training_shards("mnist", str(tmp_path / "data"), str(mnist_sample_dir), shards=4)
    config = TrainConfig(
        training_data=str(tmp_path / "data"), output_dir=tmp_path / "train", epochs=EPOCHS, progress_every=5
    )
    killed: dict = {}
    stop = threading.Event()
    worker_progress = tmp_path / "train" / PROGRESS_DIR / "worker-0.json"
    killer = threading.Thread(target=_kill_mid_epoch, args=(worker_progress, 2, 20, killed, stop), daemon=True)
    killer.start()
    try:
        run = run_local_cluster(config, workers=2, max_restarts=1)
    finally:
        stop.set()
        killer.join()

    assert killed["epoch"] == 2 and killed["batch"] >= 20  # 54 batches an epoch: mid-epoch
    assert run.restarts == 1
    # Both processes of the second cluster started at epoch 2 (epoch 1 was backed up), not at 1.
    runs = run.metrics["cluster"]["runs"]
    assert [r["started_at_epoch"] for r in runs] == [1, 2]
    worker_runs = read_progress(worker_progress)["runs"]
    assert worker_runs[0]["pid"] == killed["pid"] and [r["started_at_epoch"] for r in worker_runs] == [1, 2]
    assert [e["epoch"] for e in run.metrics["epochs"]] == list(range(1, EPOCHS + 1))
    assert run.metrics["test"]["accuracy"] >= 0.97, run.metrics["test"]
