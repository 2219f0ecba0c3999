"""Score a trained or exported model: accuracy, per-class precision/recall, confusion-matrix PNG."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnistkit.model_export.datasets import dataset_spec, load_dataset
from mnistkit.model_export.export import SIGNATURE_NAME, latest_version, version_framework
from mnistkit.model_export.model import NUM_CLASSES, to_model_input

__all__ = [
    "CONFUSION_PNG",
    "EVALUATION_JSON",
    "Evaluation",
    "EvaluationError",
    "classes_from_predictions",
    "evaluate_model",
    "evaluate_predictions",
    "plot_confusion",
    "predict_classes",
    "score",
]

EVALUATION_JSON = "evaluation.json"
CONFUSION_PNG = "confusion_matrix.png"
_PREDICT_BATCH = 1024


class EvaluationError(ValueError):
    """Prediction files that cannot be scored against the split (a key missing, repeated or unknown)."""


@dataclass
class Evaluation:
    accuracy: float
    confusion: np.ndarray  # [true class, predicted class]
    class_names: tuple[str, ...]

    @property
    def precision(self) -> np.ndarray:
        predicted = self.confusion.sum(axis=0)
        return np.divide(np.diag(self.confusion), predicted, out=np.zeros(NUM_CLASSES), where=predicted > 0)

    @property
    def recall(self) -> np.ndarray:
        actual = self.confusion.sum(axis=1)
        return np.divide(np.diag(self.confusion), actual, out=np.zeros(NUM_CLASSES), where=actual > 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "samples": int(self.confusion.sum()),
            "per_class": [
                {"class": i, "name": name, "precision": float(p), "recall": float(r), "support": int(s)}
                for i, (name, p, r, s) in enumerate(
                    zip(self.class_names, self.precision, self.recall, self.confusion.sum(axis=1), strict=True)
                )
            ],
            "confusion_matrix": self.confusion.tolist(),
        }


def score(labels: np.ndarray, predicted: np.ndarray, class_names: tuple[str, ...]) -> Evaluation:
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(confusion, (labels.astype(np.int64), predicted.astype(np.int64)), 1)
    return Evaluation(float(np.mean(labels == predicted)), confusion, class_names)


def predict_classes(model_path: str | os.PathLike, images_uint8: np.ndarray) -> np.ndarray:
    """Classes for uint8 [N, 28, 28] images from a ``.keras`` file or an exported version (SavedModel or PyTorch)."""
    model_path = Path(model_path)
    x = to_model_input(images_uint8)
    if model_path.suffix == ".keras":
        import keras

        return keras.models.load_model(model_path).predict(x, batch_size=_PREDICT_BATCH, verbose=0).argmax(axis=1)
    version = latest_version(model_path)
    if version_framework(version) == "pytorch":
        return _batched_classes(_torch_classes(version), x)
    import tensorflow as tf

    serve = tf.saved_model.load(str(version)).signatures[SIGNATURE_NAME]

    def classes(batch: np.ndarray) -> np.ndarray:
        return serve(key=tf.range(len(batch), dtype=tf.int64), image=tf.constant(batch))["class"].numpy()

    return _batched_classes(classes, x)


def _torch_classes(version: Path):
    import torch

    from mnistkit.model_export.torch_export import load_program

    program = load_program(version)

    def classes(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return program(torch.arange(len(batch)), torch.from_numpy(batch))["class"].numpy()

    return classes


def _batched_classes(classes, x: np.ndarray) -> np.ndarray:
    return np.concatenate([classes(x[start : start + _PREDICT_BATCH]) for start in range(0, len(x), _PREDICT_BATCH)])


def classes_from_predictions(pattern: str, count: int) -> np.ndarray:
    """Predicted classes indexed by key from `mnistkit predict` JSON-lines output files.

    Keys are the row's index in the dataset split (as `mnistkit convert` writes them from IDX), so
    a missing or repeated key is an error, not something to average over.
    """
    import glob

    predicted = np.full(count, -1, dtype=np.int64)
    files = sorted(glob.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no prediction file matches {pattern}")
    for path in files:
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                key = row["key"]
                if not 0 <= key < count or predicted[key] != -1:
                    raise EvaluationError(f"{path}: key {key} is outside 0..{count - 1} or appears twice")
                predicted[key] = row["class"]
    missing = np.flatnonzero(predicted == -1)
    if missing.size:
        raise EvaluationError(f"{missing.size} of {count} keys have no prediction (first: {missing[0]})")
    return predicted


def evaluate_predictions(
    pattern: str, dataset: str = "mnist", data_dir: str | None = None, output_dir: str | os.PathLike | None = None
) -> Evaluation:
    """Score prediction files against the test split's labels (keys = row indices)."""
    _, labels = load_dataset(dataset, "test", data_dir)
    evaluation = score(labels, classes_from_predictions(pattern, len(labels)), dataset_spec(dataset).class_names)
    _write_report(evaluation, output_dir)
    return evaluation


def evaluate_model(
    model_path: str | os.PathLike,
    dataset: str = "mnist",
    data_dir: str | None = None,
    output_dir: str | os.PathLike | None = None,
) -> Evaluation:
    """Evaluate on the dataset's test split; with output_dir, also write evaluation.json and the PNG."""
    images, labels = load_dataset(dataset, "test", data_dir)
    evaluation = score(labels, predict_classes(model_path, images), dataset_spec(dataset).class_names)
    _write_report(evaluation, output_dir)
    return evaluation


def _write_report(evaluation: Evaluation, output_dir: str | os.PathLike | None) -> None:
    if output_dir is None:
        return
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / EVALUATION_JSON).write_text(json.dumps(evaluation.to_dict(), indent=2) + "\n")
    plot_confusion(evaluation, output_dir / CONFUSION_PNG)


def plot_confusion(evaluation: Evaluation, path: os.PathLike) -> None:
    from mnistkit.model_export.plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(evaluation.confusion, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ticks = range(NUM_CLASSES)
    ax.set_xticks(ticks, evaluation.class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, evaluation.class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = evaluation.confusion.max() / 2
    for (i, j), count in np.ndenumerate(evaluation.confusion):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > threshold else "black")
    ax.set_title(f"accuracy {evaluation.accuracy:.4f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
