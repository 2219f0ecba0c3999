"""Train the kit's CNN or the recipe's MLP in PyTorch, with the Keras path's record of the run.

Same data (datasets.load_dataset), same schedule (Adam, cosine decay to 0 over the run, batches of
128) and the same artefacts as train.py: metrics.json (identical schema, plus framework and
architecture), training_curve.png, TensorBoard logs laid out as Keras writes them
(``tensorboard/train`` and ``tensorboard/validation``, tags ``epoch_loss``/``epoch_accuracy``), and
the trained weights as ``state_dict.pt`` for ``mnistkit export --from-pytorch``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnistkit.model_export.datasets import dataset_spec, load_train_test
from mnistkit.model_export.model import to_model_input
from mnistkit.model_export.torch_export import FRAMEWORK, STATE_DICT_FILE
from mnistkit.model_export.torch_models import build_torch_model, import_torch
from mnistkit.model_export.train import CURVE_PNG, METRICS_JSON, TENSORBOARD_DIR, TrainResult, plot_training_curve

__all__ = ["TorchTrainConfig", "evaluate_torch", "train_torch"]

_EVAL_BATCH = 1024


@dataclass
class TorchTrainConfig:
    dataset: str = "mnist"
    data_dir: str | None = None
    output_dir: Path = Path("work/train")
    arch: str = "cnn"
    epochs: int = 3
    batch_size: int = 128
    seed: int = 42
    learning_rate: float = 2e-3
    # Caps the training set for quick demos and tests; None trains on all of it.
    max_train_samples: int | None = None
    # torch.set_num_threads for this process; None keeps PyTorch's default (one per core).
    threads: int | None = None
    # A tqdm bar per epoch; None shows it on terminals only.
    progress: bool | None = None


def train_torch(config: TorchTrainConfig, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Train on the train split, score on the test split, write artefacts to output_dir.

    `on_epoch` gets each epoch's record (the entries of metrics.json's ``epochs``) as it ends.
    """
    torch = import_torch()

    if config.threads:
        torch.set_num_threads(config.threads)
    spec = dataset_spec(config.dataset)
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    train_images, train_labels, test_images, test_labels = load_train_test(
        config.dataset, config.data_dir, config.max_train_samples
    )
    x_train, y_train = torch.from_numpy(to_model_input(train_images)), torch.from_numpy(train_labels.astype(np.int64))
    x_test, y_test = torch.from_numpy(to_model_input(test_images)), torch.from_numpy(test_labels.astype(np.int64))

    torch.manual_seed(config.seed)
    net = build_torch_model(config.arch)
    steps_per_epoch = -(-len(x_train) // config.batch_size)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch)
    shuffle = torch.Generator().manual_seed(config.seed)
    writers = _tensorboard_writers(output_dir / TENSORBOARD_DIR)
    epochs: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        for epoch in range(1, config.epochs + 1):
            epoch_started = time.perf_counter()
            loss, accuracy = _train_epoch(
                net, optimizer, schedule, x_train, y_train, config, shuffle, f"epoch {epoch}/{config.epochs}"
            )
            seconds = time.perf_counter() - epoch_started
            # The test split is only watched (no early stopping, no selection), as in the Keras path.
            test_loss, test_accuracy = evaluate_torch(net, x_test, y_test)
            record = {
                "epoch": epoch,
                "loss": loss,
                "accuracy": accuracy,
                "test_loss": test_loss,
                "test_accuracy": test_accuracy,
                "seconds": round(seconds, 3),
            }
            epochs.append(record)
            for name, values in (("train", (loss, accuracy)), ("validation", (test_loss, test_accuracy))):
                writers[name].add_scalar("epoch_loss", values[0], epoch)
                writers[name].add_scalar("epoch_accuracy", values[1], epoch)
            if on_epoch:
                on_epoch(record)
    finally:
        for writer in writers.values():
            writer.close()
    train_seconds = time.perf_counter() - started
    test_loss, test_accuracy = evaluate_torch(net, x_test, y_test)

    metrics = {
        "dataset": spec.name,
        "framework": FRAMEWORK,
        "architecture": config.arch,
        "train_samples": int(len(x_train)),
        "test_samples": int(len(x_test)),
        "config": {k: v for k, v in asdict(config).items() if k not in ("output_dir", "progress")},
        "epochs": epochs,
        "test": {"loss": test_loss, "accuracy": test_accuracy},
        "timings": {"train_seconds": round(train_seconds, 3), "threads": torch.get_num_threads()},
    }
    paths = {
        "metrics": output_dir / METRICS_JSON,
        "curve": output_dir / CURVE_PNG,
        "model": output_dir / STATE_DICT_FILE,
        "tensorboard": output_dir / TENSORBOARD_DIR,
    }
    torch.save(net.state_dict(), paths["model"])
    paths["metrics"].write_text(json.dumps(metrics, indent=2) + "\n")
    plot_training_curve(metrics, paths["curve"])
    return TrainResult(model=net.eval(), output_dir=output_dir, metrics=metrics, paths=paths)


def _train_epoch(net, optimizer, schedule, x, y, config: TorchTrainConfig, shuffle, label: str) -> tuple[float, float]:
    """One pass in shuffled batches; the mean training loss and accuracy, as Keras reports them."""
    import torch
    from torch.nn import functional
    from tqdm import tqdm

    net.train()
    order = torch.randperm(len(x), generator=shuffle)
    loss_sum, correct = 0.0, 0
    with tqdm(total=len(x), desc=label, unit="img", disable=_no_bar(config.progress), leave=False) as bar:
        for start in range(0, len(x), config.batch_size):
            index = order[start : start + config.batch_size]
            scores = net(x[index])
            loss = functional.cross_entropy(scores, y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += float(loss.detach()) * len(index)
            correct += int((scores.argmax(dim=1) == y[index]).sum())
            bar.update(len(index))
            bar.set_postfix(loss=f"{loss_sum / (start + len(index)):.4f}", refresh=False)
    return loss_sum / len(x), correct / len(x)


def evaluate_torch(net, x, y) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `net` (eval mode) on float32 images `x` [N, 784], labels `y`."""
    import torch
    from torch.nn import functional

    net.eval()
    loss_sum, correct = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(x), _EVAL_BATCH):
            scores = net(x[start : start + _EVAL_BATCH])
            labels = y[start : start + _EVAL_BATCH]
            loss_sum += float(functional.cross_entropy(scores, labels, reduction="sum"))
            correct += int((scores.argmax(dim=1) == labels).sum())
    return loss_sum / len(x), correct / len(x)


def _no_bar(progress: bool | None) -> bool | None:
    # tqdm's disable=None hides the bar where stderr is not a terminal (logs, CI).
    return None if progress is None else not progress


def _tensorboard_writers(log_dir: Path) -> dict[str, Any]:
    # torch.utils.tensorboard imports TensorFlow where it is installed (~2.5 s, for tf.io.gfile).
    # TensorBoard's switch to its TF stub (a `tensorboard.compat.notf` module) would avoid that,
    # but it holds for the whole process, and Keras' own TensorBoard callback then cannot start.
    from torch.utils.tensorboard import SummaryWriter

    return {name: SummaryWriter(log_dir=str(log_dir / name)) for name in ("train", "validation")}
