"""Train the MNIST CNN and record what happened: metrics.json, TensorBoard logs, a training-curve PNG."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mnistkit.model_export.datasets import dataset_spec, load_train_test
from mnistkit.model_export.model import build_model, to_model_input

__all__ = [
    "CURVE_PNG",
    "KERAS_MODEL",
    "METRICS_JSON",
    "TENSORBOARD_DIR",
    "TrainConfig",
    "TrainResult",
    "plot_training_curve",
    "train",
]

KERAS_MODEL = "model.keras"
METRICS_JSON = "metrics.json"
CURVE_PNG = "training_curve.png"
TENSORBOARD_DIR = "tensorboard"


@dataclass
class TrainConfig:
    dataset: str = "mnist"
    data_dir: str | None = None
    output_dir: Path = Path("work/train")
    epochs: int = 3
    batch_size: int = 128
    seed: int = 42
    learning_rate: float = 2e-3
    # Caps the training set for quick demos and tests; None trains on all of it.
    max_train_samples: int | None = None
    verbose: int | str = "auto"
    # Distributed training (model_export/distributed.py): a folder of TFRecord shards with its
    # dataset.json, where the chief exports, and how often (batches) a worker notes its progress.
    training_data: str | None = None
    export_dir: str | None = None
    progress_every: int = 10


@dataclass
class TrainResult:
    model: Any
    output_dir: Path
    metrics: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def test_accuracy(self) -> float:
        return self.metrics["test"]["accuracy"]


class _EpochTimer:
    """Keras callback factory kept out of module scope so importing this file stays TF-free."""

    @staticmethod
    def create():
        import keras

        class EpochTimer(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.seconds: list[float] = []

            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self._start)

        return EpochTimer()


def train(config: TrainConfig) -> TrainResult:
    """Train on the dataset's train split, score on its test split, write artefacts to output_dir."""
    import keras

    spec = dataset_spec(config.dataset)
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    train_images, train_labels, test_images, test_labels = load_train_test(
        config.dataset, config.data_dir, config.max_train_samples
    )
    x_train, x_test = to_model_input(train_images), to_model_input(test_images)

    keras.utils.set_random_seed(config.seed)
    steps_per_epoch = -(-len(x_train) // config.batch_size)
    model = build_model(config.learning_rate, decay_steps=config.epochs * steps_per_epoch)
    timer = _EpochTimer.create()
    tensorboard_dir = output_dir / TENSORBOARD_DIR
    started = time.perf_counter()
    # The test split is only watched per epoch (no early stopping, no selection), so the curve is honest.
    history = model.fit(
        x_train,
        train_labels,
        epochs=config.epochs,
        batch_size=config.batch_size,
        validation_data=(x_test, test_labels),
        callbacks=[timer, keras.callbacks.TensorBoard(log_dir=str(tensorboard_dir))],
        verbose=config.verbose,
    )
    train_seconds = time.perf_counter() - started
    test_loss, test_accuracy = model.evaluate(x_test, test_labels, verbose=0)

    metrics = {
        "dataset": spec.name,
        "train_samples": int(len(x_train)),
        "test_samples": int(len(x_test)),
        "config": {k: v for k, v in asdict(config).items() if k not in ("output_dir", "verbose")},
        "epochs": [
            {
                "epoch": i + 1,
                "loss": float(history.history["loss"][i]),
                "accuracy": float(history.history["accuracy"][i]),
                "test_loss": float(history.history["val_loss"][i]),
                "test_accuracy": float(history.history["val_accuracy"][i]),
                "seconds": round(timer.seconds[i], 3),
            }
            for i in range(len(history.history["loss"]))
        ],
        "test": {"loss": float(test_loss), "accuracy": float(test_accuracy)},
        "timings": {"train_seconds": round(train_seconds, 3)},
    }
    paths = {
        "metrics": output_dir / METRICS_JSON,
        "curve": output_dir / CURVE_PNG,
        "model": output_dir / KERAS_MODEL,
        "tensorboard": tensorboard_dir,
    }
    model.save(paths["model"])
    paths["metrics"].write_text(json.dumps(metrics, indent=2) + "\n")
    plot_training_curve(metrics, paths["curve"])
    return TrainResult(model=model, output_dir=output_dir, metrics=metrics, paths=paths)


def plot_training_curve(metrics: dict[str, Any], path: os.PathLike) -> None:
    from mnistkit.model_export.plots import pyplot

    plt = pyplot()
    epochs = [e["epoch"] for e in metrics["epochs"]]
    # Distributed runs watch a validation split when their training data has one.
    watched = "validation" if metrics["epochs"] and "validation_loss" in metrics["epochs"][0] else "test"
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.plot(epochs, [e[key] for e in metrics["epochs"]], marker="o", label="train")
        ax.plot(epochs, [e[f"{watched}_{key}"] for e in metrics["epochs"]], marker="o", label=watched)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{metrics['dataset']}: test accuracy {metrics['test']['accuracy']:.4f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
