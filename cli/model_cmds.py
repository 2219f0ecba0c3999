"""`mnistkit train | evaluate | export`: the model's life before it serves predictions."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mnistkit.cli.errors import user_errors
from mnistkit.cli.options import data_dir_option, dataset_option, resolve_config, settings_option
from mnistkit.model_export.torch_models import ARCHITECTURES
from mnistkit.pipeline.choices import FRAMEWORKS

__all__ = ["COMMANDS"]

arch_option = click.option(
    "--arch",
    type=click.Choice(sorted(ARCHITECTURES)),
    help="PyTorch network: cnn (the kit's CNN; train's default) or mlp (the GPU recipe's Fashion-MNIST MLP).",
)


def _export(model, export_dir: Path, metadata: dict) -> Path:
    from mnistkit.model_export.export import export_saved_model

    version_dir = export_saved_model(model, export_dir, metadata)
    click.echo(f"Exported SavedModel: {version_dir}")
    return version_dir


@click.command()
@dataset_option
@data_dir_option
@click.option("--epochs", type=click.IntRange(min=1), default=3, show_default=True, help="Passes over the train split.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=128,
    show_default=True,
    help="The global batch: with several workers each takes an equal share of it.",
)
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
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Data-parallel training processes (MultiWorkerMirroredStrategy), one of them the chief: "
    "here on loopback ports, or the replicas of a --vertex job.",
)
@click.option(
    "--training-data",
    help="TFRecord shards with dataset.json (`mnistkit convert --for-training`) to train from; "
    "gs://… for --vertex. Default with --workers > 1: the dataset, written to OUTPUT_DIR/data first.",
)
@click.option(
    "--max-restarts",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Local cluster: restart every worker this often when one dies; they resume at the epoch of the last backup.",
)
@click.option("--vertex", is_flag=True, help="Train on Vertex AI as a CustomJob instead of on this machine.")
@click.option("--machine-type", default="n1-standard-4", show_default=True, help="Vertex AI: each replica's machine.")
@click.option("--accelerator", metavar="TYPE:COUNT", help="Vertex AI: GPUs per replica, e.g. NVIDIA_TESLA_T4:1.")
@click.option("--image", help="Vertex AI: the container (default: the worker_image setting).")
@click.option("--job-name", help="Vertex AI: job name (default: mnistkit-train-<UTC time>).")
@click.option("--dry-run", is_flag=True, help="Vertex AI: print the CustomJob spec instead of submitting it.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Vertex AI: follow the job to its end.")
@settings_option
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
    **cluster,
):
    """Train the CNN, evaluate it on the test split, and record metrics.

    \b
    Example:
      mnistkit train --dataset fashion-mnist --epochs 3 --export-dir models/
      mnistkit train --workers 2 --epochs 5 --export-dir models/
      mnistkit train --vertex --workers 4 --training-data gs://BUCKET/training/mnist --dry-run
      mnistkit train --framework pytorch --arch mlp --dataset fashion-mnist --export-dir models/
      tensorboard --logdir work/train/tensorboard
    """
    if framework == "pytorch":
        if cluster["workers"] > 1 or cluster["vertex"] or cluster["training_data"]:
            raise click.UsageError(
                "--workers, --vertex and --training-data train the Keras model; PyTorch trains here."
            )
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

    config = TrainConfig(
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
        training_data=cluster["training_data"],
        export_dir=str(export_dir) if export_dir else None,
    )
    if cluster["vertex"]:
        _train_on_vertex(config, **cluster)
    elif cluster["workers"] > 1 or cluster["training_data"]:
        _train_on_local_cluster(config, cluster["workers"], cluster["max_restarts"])
    else:
        _train_here(config)


def _train_here(config) -> None:
    from mnistkit.model_export.train import train as run_training

    result = run_training(config)
    _echo_trained(result)
    if config.export_dir:
        _export(result.model, Path(config.export_dir), _export_metadata(result.metrics))


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


def _train_on_local_cluster(config, workers: int, max_restarts: int) -> None:
    from dataclasses import replace

    from mnistkit.model_export.distributed import run_local_cluster

    if not config.training_data:
        from mnistkit.pipeline.io.training_shards import write_training_shards

        shards = write_training_shards(
            config.dataset,
            str(config.output_dir / "data"),
            config.data_dir,
            shards=max(4, workers),
            max_train_samples=config.max_train_samples,
        )
        click.echo(f"Wrote training shards: {', '.join(f'{s} {n:,}' for s, n in shards.rows.items())} rows")
        config = replace(config, training_data=str(config.output_dir / "data"))
    run = run_local_cluster(config, workers, max_restarts=max_restarts, chief_output=sys.stdout)
    metrics = run.metrics
    click.echo(
        f"Test accuracy {metrics['test']['accuracy']:.4f} on {metrics['test_samples']} images with {workers} "
        f"worker(s), global batch {metrics['cluster']['global_batch_size']} "
        f"({metrics['timings']['train_seconds']:.0f} s training, {run.restarts} restart(s)). "
        f"Artefacts in {run.output_dir}/"
    )
    if "export" in metrics:
        click.echo(f"Exported SavedModel: {metrics['export']}")


def _train_on_vertex(
    config, *, workers, machine_type, accelerator, image, job_name, dry_run, wait, settings, **_
) -> None:
    from mnistkit.pipeline.cloud.launch import default_job_name
    from mnistkit.pipeline.cloud.training import VertexTraining, custom_job_spec, launch_training

    accelerator_type, count = None, 0
    if accelerator:
        accelerator_type, sep, count_text = accelerator.partition(":")
        if not sep or not count_text.isdigit() or int(count_text) < 1:
            raise click.BadParameter(f"expected TYPE:COUNT, got {accelerator!r}", param_hint="--accelerator")
        count = int(count_text)
    vertex = VertexTraining(
        job_name=job_name or default_job_name("mnistkit-train"),
        workers=workers,
        machine_type=machine_type,
        accelerator_type=accelerator_type,
        accelerator_count=count,
        image=image,
    )
    cloud = resolve_config(settings)
    if dry_run:
        click.echo(json.dumps(custom_job_spec(cloud, config, vertex), indent=2))
        return

    def report(job) -> None:
        click.echo(f"CustomJob {job.job_id}: {job.state.removeprefix('JOB_STATE_')}  {job.console_url}")

    job = launch_training(cloud, config, vertex, wait=wait, on_state=report)
    if job.state == "JOB_STATE_SUCCEEDED":
        click.echo(f"Trained; the export is under {cloud.model_uri or cloud.model_bucket.rstrip('/') + '/mnist'}")


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
