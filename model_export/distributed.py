"""Data-parallel training with MultiWorkerMirroredStrategy: one process per worker, here or on a cluster.

`train_worker()` is one worker. It reads its cluster from `TF_CONFIG` (set by `run_local_cluster`
for processes on this machine, by Vertex AI on a CustomJob's replicas; without it the process is
a cluster of one), streams its share of the TFRecord shards (model_export/training_data.py) and
trains in lock step with the others. The chief (task type `chief`, or worker 0 when there is
none) writes what `train()` writes — metrics.json, the curve PNG, TensorBoard logs, model.keras,
the export — plus each worker's time per epoch and the global batch size.

Preemption: at each epoch's end the cluster backs up the model, the optimizer and the epoch
count (what Keras' BackupAndRestore keeps, as a tf.train.Checkpoint under OUTPUT/backup/; every
worker takes part in the save, the chief's copy is kept) and every worker restores from it at
start. The workers of a MultiWorkerMirroredStrategy cluster cannot continue without a lost peer,
so recovery means restarting the whole cluster, which resumes at the start of the epoch it was
in: `run_local_cluster` does that here, Vertex AI's `restartJobOnWorkerRestart` on a CustomJob.
Each worker also keeps a small progress file (OUTPUT/progress/<task>.json: pid, epoch, batch,
its epoch times, and where each of its runs started) that a supervisor can poll.

`python -m mnistkit.model_export.distributed --training-data … --output-dir …` is the entry point
of each process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mnistkit.model_export.datasets import DatasetError
from mnistkit.model_export.train import (
    CURVE_PNG,
    KERAS_MODEL,
    METRICS_JSON,
    TENSORBOARD_DIR,
    TrainConfig,
    plot_training_curve,
)

__all__ = [
    "BACKUP_DIR",
    "ClusterError",
    "ClusterRun",
    "PROGRESS_DIR",
    "Task",
    "cluster_task",
    "local_cluster_configs",
    "main",
    "parse_worker_args",
    "read_progress",
    "run_local_cluster",
    "train_worker",
    "worker_args",
]

BACKUP_DIR = "backup"
PROGRESS_DIR = "progress"
LOG_DIR = "logs"
_WORKER_DIR = "workers"


class ClusterError(RuntimeError):
    """A local cluster that could not finish (a worker failed more often than restarts allow)."""


@dataclass(frozen=True)
class Task:
    """This process's place in the cluster described by TF_CONFIG."""

    type: str
    index: int
    num_workers: int
    has_chief: bool = True

    @property
    def name(self) -> str:
        return f"{self.type}-{self.index}"

    @property
    def is_chief(self) -> bool:
        return self.type == "chief" or (self.index == 0 and not self.has_chief)

    @property
    def rank(self) -> int:
        """0 for the chief, then the workers in order."""
        return 0 if self.type == "chief" else self.index + int(self.has_chief)


def cluster_task(tf_config: str | None = None) -> Task:
    """The task TF_CONFIG names (a cluster of one when it is unset)."""
    raw = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not raw:
        return Task("chief", 0, 1)
    config = json.loads(raw)
    cluster, task = config.get("cluster", {}), config.get("task", {})
    workers = sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))
    return Task(task.get("type", "worker"), int(task.get("index", 0)), workers, "chief" in cluster)


def local_cluster_configs(workers: int, host: str = "127.0.0.1") -> list[dict[str, Any]]:
    """TF_CONFIG of each of `workers` processes on this machine: one chief, the rest workers, free ports.

    The shape is Vertex AI's (a chief pool and a worker pool), so a worker behaves the same here.
    """
    addresses = [f"{host}:{_free_port(host)}" for _ in range(workers)]
    cluster = {"chief": addresses[:1], **({"worker": addresses[1:]} if workers > 1 else {})}
    tasks = [("chief", 0)] + [("worker", i) for i in range(workers - 1)]
    return [{"cluster": cluster, "task": {"type": kind, "index": index}} for kind, index in tasks]


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def worker_args(config: TrainConfig) -> list[str]:
    """The command-line arguments of `python -m mnistkit.model_export.distributed` for `config`."""
    args = [
        "--training-data", str(config.training_data),
        "--output-dir", str(config.output_dir),
        "--epochs", str(config.epochs),
        "--batch-size", str(config.batch_size),
        "--learning-rate", repr(config.learning_rate),
        "--seed", str(config.seed),
        "--progress-every", str(config.progress_every),
    ]  # fmt: skip
    if config.export_dir:
        args += ["--export-dir", str(config.export_dir)]
    return args


def parse_worker_args(argv: list[str] | None = None) -> TrainConfig:
    """The TrainConfig that worker_args() wrote (or a user typed) on a worker's command line."""
    parser = argparse.ArgumentParser(prog="python -m mnistkit.model_export.distributed", description=__doc__)
    defaults = TrainConfig()
    parser.add_argument("--training-data", required=True, help="Folder with dataset.json and the shards")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--export-dir")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="global batch size")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--progress-every", type=int, default=defaults.progress_every)
    args = parser.parse_args(argv)
    return TrainConfig(
        training_data=args.training_data,
        output_dir=Path(args.output_dir),
        export_dir=args.export_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        progress_every=args.progress_every,
        verbose=2,
    )


def main(argv: list[str] | None = None) -> int:
    result = train_worker(parse_worker_args(argv))
    if result is not None:
        print(f"test accuracy {result['test']['accuracy']:.4f}", flush=True)
    return 0


def train_worker(config: TrainConfig) -> dict[str, Any] | None:
    """Train as this process's task of the cluster; the chief returns the metrics it wrote."""
    import tensorflow as tf

    # The strategy must exist before any other TensorFlow op runs in the process.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import keras

    from mnistkit.model_export.model import build_model
    from mnistkit.model_export.training_data import load_training_data

    task = cluster_task()
    if config.batch_size % task.num_workers:
        raise DatasetError(f"the global batch size {config.batch_size} must divide by the {task.num_workers} workers")
    output_dir = Path(config.output_dir)
    data = load_training_data(config.training_data)
    watched = "validation" if data.rows("validation") else "test"
    steps = max(1, data.rows("train") // config.batch_size)
    batches = iter(
        strategy.experimental_distribute_dataset(
            data.dataset("train", config.batch_size, task.num_workers, shuffle_seed=config.seed, repeat=True)
        )
    )
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = build_model(config.learning_rate, decay_steps=config.epochs * steps)
    train_step = _train_step(strategy, model, config.batch_size)
    # A plain copy of the network, outside the strategy, scores on the chief alone.
    plain = build_model(config.learning_rate)

    # Every worker must take part in saving (reading a synced variable is a collective); only
    # the chief's copy is kept, and every worker restores from it.
    completed = tf.Variable(0, dtype=tf.int64, trainable=False)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, epoch=completed)
    backup = output_dir / BACKUP_DIR
    write_dir = backup if task.is_chief else output_dir / _WORKER_DIR / task.name / BACKUP_DIR
    latest = tf.train.latest_checkpoint(str(backup))
    if latest:
        checkpoint.restore(latest)
    manager = tf.train.CheckpointManager(checkpoint, str(write_dir), max_to_keep=1)
    progress = _Progress(output_dir / PROGRESS_DIR / f"{task.name}.json", int(completed.numpy()) + 1)
    writers = {
        split: tf.summary.create_file_writer(str(output_dir / TENSORBOARD_DIR / split))
        for split in ("train", watched)
        if task.is_chief
    }

    started = time.perf_counter()
    for epoch in range(int(completed.numpy()), config.epochs):
        progress.begin(epoch + 1)
        loss = correct = 0.0
        for step in range(steps):
            step_loss, step_correct = train_step(batches)
            loss, correct = loss + float(step_loss), correct + float(step_correct)
            progress.batch(step + 1, config.progress_every)
        completed.assign(epoch + 1)
        manager.save()
        seconds = progress.end()
        if not task.is_chief:
            continue
        plain.set_weights(model.get_weights())
        watch_loss, watch_accuracy = _score(plain, data.dataset(watched, 1024))
        logs = {
            "loss": loss / steps,
            "accuracy": correct / (steps * config.batch_size),
            f"{watched}_loss": watch_loss,
            f"{watched}_accuracy": watch_accuracy,
            "seconds": seconds,
        }
        progress.record(epoch + 1, logs)
        for split, writer in writers.items():
            prefix = "" if split == "train" else f"{watched}_"
            with writer.as_default(step=epoch + 1):
                tf.summary.scalar("epoch_loss", logs[f"{prefix}loss"])
                tf.summary.scalar("epoch_accuracy", logs[f"{prefix}accuracy"])
            writer.flush()
        if config.verbose:
            print(
                f"epoch {epoch + 1}/{config.epochs}: loss {logs['loss']:.4f} accuracy {logs['accuracy']:.4f} "
                f"{watched} accuracy {watch_accuracy:.4f} ({seconds:.1f} s)",
                flush=True,
            )
    train_seconds = time.perf_counter() - started
    epoch_seconds = _gather_epoch_seconds(strategy, task, progress.state, config.epochs)
    if not task.is_chief:
        shutil.rmtree(output_dir / _WORKER_DIR / task.name, ignore_errors=True)
        with contextlib.suppress(OSError):  # the last worker out removes the folder
            (output_dir / _WORKER_DIR).rmdir()
        return None

    plain.set_weights(model.get_weights())
    test_loss, test_accuracy = _score(plain, data.dataset("test", 1024))
    metrics = {
        "dataset": data.name,
        "train_samples": data.rows("train"),
        "test_samples": data.rows("test"),
        "config": {
            "training_data": str(config.training_data),
            "epochs": config.epochs,
            "batch_size": config.batch_size,
            "learning_rate": config.learning_rate,
            "seed": config.seed,
        },
        "cluster": {
            "workers": task.num_workers,
            "global_batch_size": config.batch_size,
            "per_worker_batch_size": config.batch_size // task.num_workers,
            "steps_per_epoch": steps,
            "strategy": "MultiWorkerMirroredStrategy",
            "watched_split": watched,
            "runs": progress.state["runs"],
        },
        "epochs": [
            {"epoch": int(epoch), **logs, "worker_seconds": epoch_seconds[int(epoch) - 1]}
            for epoch, logs in sorted(progress.state["epochs"].items(), key=lambda item: int(item[0]))
        ],
        "test": {"loss": test_loss, "accuracy": test_accuracy},
        "timings": {"train_seconds": round(train_seconds, 3)},
    }
    plain.save(output_dir / KERAS_MODEL)
    if config.export_dir:
        from mnistkit.model_export.export import export_saved_model

        version = export_saved_model(
            plain,
            config.export_dir,
            {"dataset": data.name, "test_accuracy": test_accuracy, "train_samples": data.rows("train")},
        )
        metrics["export"] = str(version)
    (output_dir / METRICS_JSON).write_text(json.dumps(metrics, indent=2) + "\n")
    plot_training_curve(metrics, output_dir / CURVE_PNG)
    # A finished run leaves no backup behind, or the next run in this folder would resume after its end.
    shutil.rmtree(backup, ignore_errors=True)
    return metrics


def _train_step(strategy, model, global_batch_size: int):
    """One synchronous step over a distributed iterator: (summed loss, correct predictions) of the global batch.

    A custom loop, not `fit`: Keras 3.15's `fit` fails with a multi-worker strategy (its first
    batch and its metrics are reduced as if they were single values).
    """
    import keras
    import tensorflow as tf

    def step(images, labels):
        with tf.GradientTape() as tape:
            probabilities = model(images, training=True)
            per_row = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
            loss = tf.nn.compute_average_loss(per_row, global_batch_size=global_batch_size)
        gradients = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probabilities, 1), labels), tf.float32))
        return loss, correct

    @tf.function
    def train_step(iterator):
        loss, correct = strategy.run(step, args=next(iterator))
        total = tf.distribute.ReduceOp.SUM
        return strategy.reduce(total, loss, axis=None), strategy.reduce(total, correct, axis=None)

    return train_step


def _score(model, batches) -> tuple[float, float]:
    import numpy as np

    loss, correct, count = 0.0, 0, 0
    for images, labels in batches:
        probabilities = model(images, training=False).numpy()
        labels = labels.numpy()
        loss -= float(np.log(np.maximum(probabilities[np.arange(len(labels)), labels], 1e-7)).sum())
        correct += int((probabilities.argmax(axis=1) == labels).sum())
        count += len(labels)
    return loss / count, correct / count


def _gather_epoch_seconds(strategy, task: Task, state: dict[str, Any], epochs: int) -> list[list[float]]:
    """[epoch][worker] seconds, every worker's row summed into place by one all-reduce (a collective)."""
    import numpy as np
    import tensorflow as tf

    table = np.zeros((task.num_workers, epochs), np.float64)
    for epoch, seconds in state["epoch_seconds"].items():
        table[task.rank, int(epoch) - 1] = seconds

    def total(values):
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, values)

    summed = strategy.experimental_local_results(strategy.run(total, args=(tf.constant(table),)))[0].numpy()
    return [[round(float(s), 3) for s in summed[:, e]] for e in range(epochs)]


class _Progress:
    """Where a worker is, its epoch times and (on the chief) epoch logs, in a JSON file that survives restarts."""

    def __init__(self, path: Path, first_epoch: int) -> None:
        self.path = path
        fresh = {"epoch_seconds": {}, "epochs": {}, "runs": []}
        self.state = (read_progress(path) if first_epoch > 1 else None) or fresh
        # Where this process started: the epoch the restored checkpoint leads to.
        self.state["runs"].append({"pid": os.getpid(), "started_at_epoch": first_epoch})
        self._epoch = first_epoch
        self._write(0)

    def _write(self, batch: int) -> None:
        self.state.update(pid=os.getpid(), epoch=self._epoch, batch=batch, updated=time.time())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(self.state))
        os.replace(tmp, self.path)

    def begin(self, epoch: int) -> None:
        self._epoch, self._start = epoch, time.perf_counter()
        self._write(0)

    def batch(self, done: int, every: int) -> None:
        if done % every == 0:
            self._write(done)

    def end(self) -> float:
        seconds = round(time.perf_counter() - self._start, 3)
        self.state["epoch_seconds"][str(self._epoch)] = seconds
        self._write(-1)
        return seconds

    def record(self, epoch: int, logs: dict[str, float]) -> None:
        self.state["epochs"][str(epoch)] = logs
        self._write(-1)


def read_progress(path: str | os.PathLike) -> dict[str, Any] | None:
    """A worker's progress file, or None before it wrote one."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@dataclass
class ClusterRun:
    """A finished local cluster: the chief's metrics and how many times the cluster was restarted."""

    metrics: dict[str, Any]
    restarts: int
    output_dir: Path


def run_local_cluster(
    config: TrainConfig,
    workers: int,
    max_restarts: int = 1,
    chief_output: IO[str] | None = None,
    poll_s: float = 0.2,
) -> ClusterRun:
    """Train with `workers` processes on this machine, restarting all of them when one dies.

    Each gets its TF_CONFIG (loopback ports) and an equal share of the cores; logs go to
    OUTPUT/logs/<task>.log (the chief's also to `chief_output`).
    """
    output_dir = Path(config.output_dir)
    (output_dir / LOG_DIR).mkdir(parents=True, exist_ok=True)
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    restarts = 0
    while True:
        processes = []
        for tf_config in local_cluster_configs(workers):
            name = f"{tf_config['task']['type']}-{tf_config['task']['index']}"
            env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), TF_NUM_INTRAOP_THREADS=threads)
            log = open(output_dir / LOG_DIR / f"{name}.log", "a")  # noqa: SIM115 - closed below
            processes.append(
                (
                    name,
                    subprocess.Popen(
                        [sys.executable, "-m", "mnistkit.model_export.distributed", *worker_args(config)],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    ),
                    log,
                )
            )
        failed = _wait_all(processes, poll_s)
        for _, _, log in processes:
            log.close()
        if chief_output is not None:
            chief_output.write((output_dir / LOG_DIR / "chief-0.log").read_text())
        if failed is None:
            metrics = json.loads((output_dir / METRICS_JSON).read_text())
            return ClusterRun(metrics, restarts, output_dir)
        if restarts >= max_restarts:
            name, code = failed
            tail = (output_dir / LOG_DIR / f"{name}.log").read_text()[-3000:]
            raise ClusterError(f"{name} exited with {code} after {restarts} restart(s); its log ends:\n{tail}")
        restarts += 1


def _wait_all(processes: list, poll_s: float) -> tuple[str, int] | None:
    """Wait for every process; on the first failure stop the rest and name it."""
    while True:
        running = False
        for name, process, _ in processes:
            code = process.poll()
            if code is None:
                running = True
            elif code != 0:
                for _, other, _ in processes:
                    if other.poll() is None:
                        other.send_signal(signal.SIGKILL)
                        other.wait()
                return name, code
        if not running:
            return None
        time.sleep(poll_s)


if __name__ == "__main__":
    sys.exit(main())
