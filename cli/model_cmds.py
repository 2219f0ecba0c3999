"""`mnistkit train | evaluate | export`: the model's life before it serves predictions."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mnistkit.cli.errors import user_errors
from mnistkit.cli.options import data_dir_option, dataset_option

__all__ = ["COMMANDS"]


def _export(model, export_dir: Path, metadata: dict) -> Path:
    from mnistkit.model_export.export import export_saved_model

    version_dir = export_saved_model(model, export_dir, metadata)
    click.echo(f"Exported SavedModel: {version_dir}")
    return version_dir


@click.command()
@dataset_option
@data_dir_option
@click.option("--epochs", type=click.IntRange(min=1), default=3, show_default=True, help="Passes over the train split.")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option(
    "--learning-rate",
    type=float,
    default=2e-3,
    show_default=True,
    help="Adam's initial learning rate; it decays along a cosine to 0 by the last epoch.",
)
@click.option("--seed", type=int, default=42, show_default=True, help="Seeds Python, NumPy and TF for repeatable runs.")
@click.option(
    "--max-train-samples",
    type=click.IntRange(min=1),
    help="Train on the first N images only (quick demos and smoke tests).",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("work/train"),
    show_default=True,
    help="Where model.keras, metrics.json, training_curve.png and tensorboard/ go.",
)
@click.option(
    "--export-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also export a versioned SavedModel here (<export-dir>/<unix-timestamp>/), ready to predict with.",
)
@user_errors
def train(dataset, data_dir, epochs, batch_size, learning_rate, seed, max_train_samples, output_dir, export_dir):
    """Train the CNN, evaluate it on the test split, and record metrics.

    \b
    Example:
      mnistkit train --dataset fashion-mnist --epochs 3 --export-dir models/
      tensorboard --logdir work/train/tensorboard
    """
    from mnistkit.model_export.train import TrainConfig
    from mnistkit.model_export.train import train as run_training

    result = run_training(
        TrainConfig(
            dataset=dataset,
            data_dir=str(data_dir) if data_dir else None,
            output_dir=output_dir,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            learning_rate=learning_rate,
            max_train_samples=max_train_samples,
            # A live progress bar on terminals; one line per epoch in logs and CI.
            verbose="auto" if sys.stdout.isatty() else 2,
        )
    )
    timings = result.metrics["timings"]
    click.echo(
        f"Test accuracy {result.test_accuracy:.4f} on {result.metrics['test_samples']} images "
        f"({timings['train_seconds']:.0f} s training). Artefacts in {result.output_dir}/"
    )
    if export_dir:
        _export(result.model, export_dir, _export_metadata(result.metrics))


@click.command()
@click.option(
    "--model",
    "model_path",
    type=click.Path(exists=True, path_type=Path),
    help="A trained model.keras, or an export dir (its newest version is used).",
)
@click.option(
    "--predictions",
    help="Instead of a model: score `mnistkit predict` output files (a glob, e.g. 'out/test-*.jsonl') "
    "made from the test split by `mnistkit convert`, whose keys are row indices.",
)
@dataset_option
@data_dir_option
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("work/evaluate"),
    show_default=True,
    help="Where evaluation.json and confusion_matrix.png go.",
)
@user_errors
def evaluate(model_path, predictions, dataset, data_dir, output_dir):
    """Accuracy, per-class precision/recall and a confusion matrix on the test split."""
    from mnistkit.model_export.evaluate import evaluate_model, evaluate_predictions

    if (model_path is None) == (predictions is None):
        raise click.UsageError("Give exactly one of --model or --predictions.")
    data_dir = str(data_dir) if data_dir else None
    if predictions:
        evaluation = evaluate_predictions(predictions, dataset, data_dir, output_dir)
    else:
        evaluation = evaluate_model(model_path, dataset, data_dir, output_dir)
    click.echo(f"Accuracy {evaluation.accuracy:.4f} on {int(evaluation.confusion.sum())} test images")
    click.echo(f"{'class':<14}{'precision':>10}{'recall':>10}")
    for name, p, r in zip(evaluation.class_names, evaluation.precision, evaluation.recall, strict=True):
        click.echo(f"{name:<14}{p:>10.4f}{r:>10.4f}")
    click.echo(f"Wrote {output_dir}/evaluation.json and confusion_matrix.png")


@click.command(name="export")
@click.option(
    "--model",
    "model_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=Path("work/train/model.keras"),
    show_default=True,
    help="The trained Keras model (train writes it with metrics.json beside it).",
)
@click.option(
    "--export-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Base folder; the model goes to <export-dir>/<unix-timestamp>/.",
)
@user_errors
def export_command(model_path, export_dir):
    """Export a trained model as a versioned SavedModel with a key-passthrough signature.

    Signature serving_default: inputs key int64 [None], image float32 [None, 784] (0..1);
    outputs key, probabilities float32 [None, 10], class int64 [None].
    """
    import keras

    metrics_path = model_path.parent / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    _export(keras.models.load_model(model_path), export_dir, _export_metadata(metrics))


def _export_metadata(metrics: dict) -> dict:
    return {
        "dataset": metrics.get("dataset"),
        "test_accuracy": metrics.get("test", {}).get("accuracy"),
        "train_samples": metrics.get("train_samples"),
    }


COMMANDS = [train, evaluate, export_command]
