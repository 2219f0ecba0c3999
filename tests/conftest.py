"""Fixtures shared by every test area: the real datasets and one small, really trained model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prerequisites import in_ci, require

from mnistkit.model_export.runtime import configure_tensorflow_env

configure_tensorflow_env()

# The GCS, BigQuery and Pub/Sub emulators, for every test area.
pytest_plugins = ["emulators"]

REPO_ROOT = Path(__file__).resolve().parent.parent
# What makes a test slow: a trained model (the first one trains, ~10 s), a whole pipeline run,
# an emulator or a real terraform/checkov. `make test-fast` runs the rest (`-m "not slow"`).
_SLOW_FIXTURES = {"trained_model", "exported_model", "run_pipeline", "staged", "gcs", "bigquery", "pubsub", "cloud_env"}
_SLOW_AREAS = {"cloud", "infra"}


# The only skips CI accepts: what cannot exist on these machines. Every other skip fails in CI,
# whichever test raised it (a missing ../shared, terraform, checkov, emulator or Java).
_CANNOT_EXIST_HERE = ("google provider", "hashicorp/google", "gpu", "docker")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and in_ci()) or hasattr(report, "wasxfail"):
        return
    reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
    if not any(allowed in reason.lower() for allowed in _CANNOT_EXIST_HERE):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may be missing: {reason}"


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        area = Path(str(item.fspath)).relative_to(REPO_ROOT / "tests").parts[0]
        if area in _SLOW_AREAS or _SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """`../shared/datasets` (or $MNISTKIT_SHARED/datasets): the IDX files CI has beside the clone."""
    root = Path(os.environ.get("MNISTKIT_SHARED", REPO_ROOT.parent / "shared")) / "datasets"
    found = (root / "mnist-sample" / "train-images-idx3-ubyte.gz").is_file()
    require(found, f"the shared datasets ({root})", "clone beside ../shared or set MNISTKIT_SHARED")
    return root


@pytest.fixture(scope="session")
def mnist_sample_dir(shared_datasets: Path) -> Path:
    return shared_datasets / "mnist-sample"


@pytest.fixture(scope="session")
def mnist_test_set(mnist_sample_dir: Path):
    """(images uint8 [1000, 28, 28], labels uint8 [1000]) from the MNIST sample's test split."""
    from mnistkit.model_export.datasets import load_dataset

    return load_dataset("mnist", "test", mnist_sample_dir)


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory, mnist_sample_dir: Path):
    """A real training run, kept short: 3,000 images, 2 epochs (~10 s on 2 cores)."""
    from mnistkit.model_export.train import TrainConfig, train

    return train(
        TrainConfig(
            dataset="mnist",
            data_dir=str(mnist_sample_dir),
            output_dir=tmp_path_factory.mktemp("train"),
            epochs=2,
            max_train_samples=3000,
            verbose=0,
        )
    )


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory, trained_model) -> Path:
    """An export base dir `D` holding one version `D/<unix-ts>/` (SavedModel + model.json + model.keras)."""
    from mnistkit.model_export.export import export_saved_model

    export_dir = tmp_path_factory.mktemp("models")
    export_saved_model(
        trained_model.model, export_dir, {"dataset": "mnist", "test_accuracy": trained_model.test_accuracy}
    )
    return export_dir
