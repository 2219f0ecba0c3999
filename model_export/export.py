"""Export a trained Keras model as a versioned SavedModel the pipeline loads with ``tf.saved_model.load``.

Layout: ``<export_dir>/<unix-timestamp>/`` holds the SavedModel, ``model.json`` (what it is and how
good it is), ``model.keras`` (the same network for Keras users) and, where OpenVINO is installed,
``openvino/model.xml`` + ``.bin`` (the same graph as OpenVINO IR, so CPU workers serve it without
converting: pipeline/inference/runtimes.py). A version appears atomically
(written under a hidden name, then renamed), because the pipeline and the streaming model watcher
pick the newest numeric folder and must never see half a model.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import shutil
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mnistkit.model_export.model import NUM_CLASSES, NUM_PIXELS

__all__ = [
    "DEFAULT_FRAMEWORK",
    "KERAS_FILE",
    "MODEL_JSON",
    "OPENVINO_IR",
    "SIGNATURE_INPUTS",
    "SIGNATURE_NAME",
    "SIGNATURE_OUTPUTS",
    "VERSION_MARKERS",
    "convert_to_openvino",
    "export_saved_model",
    "latest_version",
    "model_info",
    "newest_version",
    "version_framework",
    "write_version",
]

SIGNATURE_NAME = "serving_default"
MODEL_JSON = "model.json"
KERAS_FILE = "model.keras"
OPENVINO_IR = "openvino/model.xml"
# model.json's `framework`: which runtimes can serve a version (exports that lack it are TensorFlow's).
DEFAULT_FRAMEWORK = "tensorflow"
# The file that makes a folder a complete version, per framework: what resolving a model URI looks
# for, and what an upload writes last (pipeline/cloud/staging.py). Checked in this order.
VERSION_MARKERS = {"tensorflow": "saved_model.pb", "pytorch": "model.pt"}
SIGNATURE_INPUTS = {"key": ("int64", [None]), "image": ("float32", [None, NUM_PIXELS])}
SIGNATURE_OUTPUTS = {
    "key": ("int64", [None]),
    "probabilities": ("float32", [None, NUM_CLASSES]),
    "class": ("int64", [None]),
}


def _serving_module(model):
    import tensorflow as tf

    class Serving(tf.Module):
        """Key passthrough like the original Dataflow sample's export, so rows can be joined back."""

        def __init__(self, keras_model):
            super().__init__(name="mnist_serving")
            self.model = keras_model

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.int64, name="key"),
                tf.TensorSpec([None, NUM_PIXELS], tf.float32, name="image"),
            ]
        )
        def serve(self, key, image):
            probabilities = self.model(image, training=False)
            return {
                "key": tf.identity(key),
                "probabilities": probabilities,
                "class": tf.argmax(probabilities, axis=1, output_type=tf.int64),
            }

    return Serving(model)


def export_saved_model(
    model, export_dir: str | os.PathLike, metadata: dict[str, Any] | None = None, version: int | None = None
) -> Path:
    """Write ``model`` to ``export_dir/<version>/`` and return that folder."""
    import tensorflow as tf

    def write(staging: Path, version: int) -> None:
        module = _serving_module(model)
        tf.saved_model.save(module, str(staging), signatures={SIGNATURE_NAME: module.serve})
        model.save(staging / KERAS_FILE)
        if importlib.util.find_spec("openvino") is not None:
            convert_to_openvino(str(staging), staging / OPENVINO_IR)
        info = model_info(version, metadata or {})
        (staging / MODEL_JSON).write_text(json.dumps(info, indent=2) + "\n")

    return write_version(export_dir, write, version)


def write_version(
    export_dir: str | os.PathLike, write: Callable[[Path, int], None], version: int | None = None
) -> Path:
    """Have `write(staging_dir, version)` fill a hidden folder, then rename it to ``export_dir/<version>/``.

    Every framework's export goes through here, so none can publish half a version.
    """
    export_dir = Path(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    version = version or int(time.time())
    while (export_dir / str(version)).exists():
        version += 1  # two exports in the same second must not overwrite each other
    final = export_dir / str(version)
    staging = export_dir / f".tmp-{version}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        write(staging, version)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def convert_to_openvino(saved_model_dir: str, xml_path: Path) -> Path:
    """Write the SavedModel as OpenVINO IR at `xml_path` (+ .bin), read by OpenVINO's own frontend.

    The TensorFlow frontend directly, not `ov.convert_model`: that one also forks telemetry
    processes (12 per call, which try to reach Google Analytics and stall the process's exit for
    seconds offline) and takes twice as long, for the same graph (outputs identical). Weights stay
    f32 (save_model would compress them to f16, breaking the 1e-5 agreement with TensorFlow);
    bf16 is a compile-time choice of the runtime, not of the file. No TensorFlow import.
    """
    from mnistkit.model_export.runtime import import_openvino

    ov = import_openvino()
    frontend = ov.frontend.FrontEndManager().load_by_framework("tf")
    model = frontend.convert(frontend.load(saved_model_dir))
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(xml_path), compress_to_fp16=False)
    return xml_path


def model_info(version: int, metadata: dict[str, Any], frameworks: dict[str, str] | None = None) -> dict[str, Any]:
    """model.json's content; `frameworks`: the libraries that wrote the model (default TensorFlow's and Keras')."""
    import numpy as np

    return {
        "version": version,
        "framework": DEFAULT_FRAMEWORK,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "signature": {
            "name": SIGNATURE_NAME,
            "inputs": {k: {"dtype": d, "shape": s} for k, (d, s) in SIGNATURE_INPUTS.items()},
            "outputs": {k: {"dtype": d, "shape": s} for k, (d, s) in SIGNATURE_OUTPUTS.items()},
            "image_range": [0.0, 1.0],
        },
        "frameworks": {
            **(frameworks or _tensorflow_versions()),
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        **metadata,
    }


def _tensorflow_versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__}


def version_framework(version_dir: str | os.PathLike) -> str | None:
    """The framework whose marker a local folder holds (VERSION_MARKERS), or None if it is no version."""
    return next((fw for fw, marker in VERSION_MARKERS.items() if (Path(version_dir) / marker).is_file()), None)


def latest_version(export_dir: str | os.PathLike) -> Path:
    """The newest numeric version under a local export dir, any framework, or the dir itself if it is a version."""
    export_dir = Path(export_dir)
    if version_framework(export_dir) is not None:
        return export_dir
    markers = VERSION_MARKERS.values()
    newest = newest_version(str(found.parent) for marker in markers for found in export_dir.glob(f"*/{marker}"))
    if newest is None:
        raise FileNotFoundError(
            f"{export_dir} holds no exported model version (<unix-timestamp>/{' or '.join(markers)})."
        )
    return Path(newest)


_VERSION = re.compile(r"[0-9]+")


def newest_version(version_dirs: Iterable[str]) -> str | None:
    """The dir named with the largest number among `version_dirs` (paths or URIs); None if none is.

    Pure, so local export dirs (above) and gs:// ones listed through Beam (pipeline/inference/savedmodel.py)
    agree on which version is current.
    """
    # ASCII digits only: str.isdigit() also passes "١٢" or "²", which int() reads or refuses.
    numbered = [(int(os.path.basename(d)), d) for d in version_dirs if _VERSION.fullmatch(os.path.basename(d))]
    return max(numbered)[1] if numbered else None
