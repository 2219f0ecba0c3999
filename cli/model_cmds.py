"""`mnistkit train | evaluate | export`: the model's life before it serves predictions."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mnistkit.cli.errors import user_errors
from mnistkit.cli.options import data_dir_option, dataset_option
from mnistkit.model_export.torch_models import ARCHITECTURES
from mnistkit.pipeline.choices import FRAMEWORKS

__all__ = ["COMMANDS"]


def _export(model, export_dir: Path, metadata: dict) -> Path:
    from mnistkit.model_export.export import export_saved_model

    version_dir = export_saved_model(model, export_dir, metadata)
    click.echo(f"Exported SavedModel: {version_dir}")
    return version_dir


arch_option = click.option(
    "--arch",
    type=click.Choice(sorted(ARCHITECTURES)),
    help="PyTorch network: cnn (the kit's CNN; train's default) or mlp (the GPU recipe's Fashion-MNIST MLP).",
)


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
@click.option(
    "--framework",
    type=click.Choice(FRAMEWORKS),
    default="tensorflow",
    show_default=True,
    help="Train with Keras (TensorFlow) or PyTorch (needs the `torch` extra).",
)
@arch_option
@user_errors
def train(
    dataset,
    data_dir,
    epochs,
    batch_size,
    learning_rate,
    seed,
    max_train_samples,
    output_dir,
    export_dir,
    framework,
    arch,
):
    """Train the CNN, evaluate it on the test split, and record metrics.

    \b
    Example:
      mnistkit train --dataset fashion-mnist --epochs 3 --export-dir models/
      mnistkit train --framework pytorch --arch mlp --dataset fashion-mnist --export-dir models/
      tensorboard --logdir work/train/tensorboard
    """
    if framework == "pytorch":
        from mnistkit.model_export.torch_train import TorchTrainConfig

        config = TorchTrainConfig(
            dataset=dataset,
            data_dir=str(data_dir) if data_dir else None,
            output_dir=output_dir,
            arch=arch or "cnn",
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            learning_rate=learning_rate,
            max_train_samples=max_train_samples,
        )
        return _train_pytorch(config, export_dir)
    if arch not in (None, "cnn"):
        raise click.UsageError(f"--arch {arch} needs --framework pytorch; the Keras model is the CNN.")
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
    _echo_trained(result)
    if export_dir:
        _export(result.model, export_dir, _export_metadata(result.metrics))


def _echo_trained(result) -> None:
    timings = result.metrics["timings"]
    click.echo(
        f"Test accuracy {result.test_accuracy:.4f} on {result.metrics['test_samples']} images "
        f"({timings['train_seconds']:.0f} s training). Artefacts in {result.output_dir}/"
    )


def _train_pytorch(config, export_dir: Path | None) -> None:
    from mnistkit.model_export.torch_export import export_torch_model
    from mnistkit.model_export.torch_train import train_torch

    def on_epoch(record: dict) -> None:
        # Terminals get tqdm's live bar; logs and CI one line per epoch, as Keras' verbose=2 prints.
        if not sys.stderr.isatty():
            click.echo(
                f"epoch {record['epoch']}/{config.epochs}: loss {record['loss']:.4f} accuracy {record['accuracy']:.4f}"
                f" test_loss {record['test_loss']:.4f} test_accuracy {record['test_accuracy']:.4f}"
                f" ({record['seconds']:.1f} s)"
            )

    result = train_torch(config, on_epoch)
    _echo_trained(result)
    if export_dir:
        version_dir = export_torch_model(result.model, config.arch, export_dir, _export_metadata(result.metrics))
        click.echo(f"Exported PyTorch model: {version_dir}")


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
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("work/train/model.keras"),
    show_default=True,
    help="The trained Keras model (train writes it with metrics.json beside it).",
)
@click.option(
    "--from-pytorch",
    "state_dict",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Instead of --model: a PyTorch state_dict (torch.save(model.state_dict(), 'fashion.pth')) of --arch.",
)
@arch_option
@click.option(
    "--export-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Base folder; the model goes to <export-dir>/<unix-timestamp>/.",
)
@user_errors
def export_command(model_path, export_dir, state_dict, arch):
    """Export a trained model as a versioned SavedModel with a key-passthrough signature.

    Signature serving_default: inputs key int64 [None], image float32 [None, 784] (0..1);
    outputs key, probabilities float32 [None, 10], class int64 [None]. With --from-pytorch, the same
    contract as a TorchScript program (model.pt) plus the state_dict (docs/PYTORCH.md).
    """
    if state_dict:
        return _export_pytorch(state_dict, arch, export_dir, model_path)
    if not model_path.is_file():
        raise click.BadParameter(f"File '{model_path}' does not exist.", param_hint="'--model'")
    import keras

    _export(keras.models.load_model(model_path), export_dir, _export_metadata(_metrics_beside(model_path)))


def _export_pytorch(state_dict: Path, arch: str | None, export_dir: Path, model_path: Path) -> None:
    from click.core import ParameterSource

    from mnistkit.model_export.torch_export import export_state_dict

    if click.get_current_context().get_parameter_source("model_path") == ParameterSource.COMMANDLINE:
        raise click.UsageError("Give --model (a Keras model) or --from-pytorch (a state_dict), not both.")
    if arch is None:
        raise click.UsageError("--from-pytorch needs --arch: which network the state_dict belongs to (cnn or mlp).")
    # `mnistkit train --framework pytorch` writes metrics.json beside its state_dict.pt.
    metrics = _metrics_beside(state_dict)
    if metrics.get("architecture", arch) != arch:
        metrics = {}  # another network's numbers
    version_dir = export_state_dict(state_dict, arch, export_dir, _export_metadata(metrics))
    click.echo(f"Exported PyTorch model: {version_dir}")


def _metrics_beside(model_path: Path) -> dict:
    metrics_path = model_path.parent / "metrics.json"
    return json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}


def _export_metadata(metrics: dict) -> dict:
    return {
        "dataset": metrics.get("dataset"),
        "test_accuracy": metrics.get("test", {}).get("accuracy"),
        "train_samples": metrics.get("train_samples"),
    }


COMMANDS = [train, evaluate, export_command]
