"""Serving fixtures: a real `mnistkit serve` on a loopback port over a copy of the trained export."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from mnistkit.model_export.model import to_model_input


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def publish_version(source_version: Path, export_dir: Path, version: int) -> Path:
    """Copy a version dir into `export_dir` as `version`, atomically (a reader never sees half a copy)."""
    staging = export_dir / f".staging-{version}"
    shutil.copytree(source_version, staging)
    target = export_dir / str(version)
    staging.rename(target)
    return target


@pytest.fixture(scope="session")
def model_version(exported_model: Path) -> Path:
    (version,) = [p for p in exported_model.iterdir() if p.name.isdigit()]
    return version


@pytest.fixture(scope="session")
def digits(mnist_test_set) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keys, model-ready images [1000, 784], labels) of the MNIST sample's test split."""
    images, labels = mnist_test_set
    return np.arange(len(images), dtype=np.int64), to_model_input(images), labels


@pytest.fixture(scope="session")
def expected(model_version: Path, digits) -> tuple[np.ndarray, np.ndarray]:
    """The model's own (probabilities, classes) for the digits, called as the pipelines call it."""
    from mnistkit.pipeline.inference.handler import predict_rows
    from mnistkit.pipeline.inference.savedmodel import ServingModel
    from mnistkit.pipeline.rows import ParsedBatch

    keys, images, _ = digits
    rows = ParsedBatch(keys, images, ["test"] * len(keys))
    probabilities, classes, errors = predict_rows(ServingModel(str(model_version)), rows, 256)
    assert errors == {}
    return probabilities, classes


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_version: Path):
    """A server on a free loopback port, its own export dir, a 1 s body timeout."""
    from mnistkit.pipeline.serving.server import BackgroundServer, ServeConfig

    export_dir = tmp_path_factory.mktemp("served")
    publish_version(model_version, export_dir, 1000)
    config = ServeConfig(model=str(export_dir), port=0, body_timeout_s=1.0, model_check_seconds=0.5)
    with BackgroundServer(config) as running:
        running.export_dir = export_dir
        yield running
