"""Process-wide TensorFlow settings; they only take effect when set before TensorFlow is imported.

`model_export/__init__.py` applies them, so any process that imports the kit's code (the CLI,
the tests, Dataflow workers, which import TensorFlow in processes the CLI never ran) has them
before TensorFlow loads; the CLI, `pipeline/__init__.py` and the tests' conftest call it again
only to make that order visible where it matters. Values already in the environment win, so
users can still opt out, e.g. `TF_ENABLE_ONEDNN_OPTS=0`.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
import threading
from typing import Any

__all__ = [
    "DEFAULTS",
    "configure_tensorflow_env",
    "import_openvino",
    "quiet_libraries",
]

DEFAULTS = {
    # TensorFlow's C++ start-up chatter (CPU features, CUDA probing) buries the kit's own output.
    "TF_CPP_MIN_LOG_LEVEL": "2",
    # TensorFlow turns its oneDNN CPU kernels on by default only on Intel CPUs with AVX-512. On
    # this project's AVX2 AMD machine they make the CNN 1.6x cheaper per row (102 vs 163 µs for
    # a 32/64-filter CNN, one thread, batches of 256) and training ~3x faster; on GPUs they
    # change nothing.
    "TF_ENABLE_ONEDNN_OPTS": "1",
}


def configure_tensorflow_env() -> None:
    """Apply DEFAULTS to os.environ where the user has not set them."""
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)


def import_openvino() -> Any:
    """`import openvino`, without its usage telemetry.

    Importing openvino sends a "general_import" event to Google Analytics from a forked process
    (openvino_telemetry, on unless a consent file in ~/intel says otherwise): a fork inside the
    runner's multi-threaded gRPC process ("skipping fork() handlers"), a network call that
    offline workers cannot make, and seconds of exit stall. With the package hidden, openvino
    falls back to its own no-op telemetry stub.
    """
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    import openvino

    return openvino


def quiet_libraries() -> None:
    """Keep library notices that say nothing about the run out of normal output (-v shows them).

    - Beam's local workers relay their log lines as warnings (notes about the host), and its
      RunInference warns on every model load that it cannot read this platform's memory use.
    - TensorFlow's C++ core prints its oneDNN banner twice while `import tensorflow` runs, to
      file descriptor 2 and before absl logging exists, so no log level or env var reaches it:
      stderr is muted for the duration of that one import (Python errors still surface, as the
      ImportError raised after it).
    """
    logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)
    logging.getLogger().addFilter(_drop_host_notices)
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport("tensorflow"))


_HOST_NOTICES = ("Resource module is not available",)


def _drop_host_notices(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(_HOST_NOTICES)


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds one top-level package as usual, but runs its import with file descriptor 2 muted.

    It stays on sys.meta_path until the package is imported: a mere `importlib.util.find_spec`
    (the runtimes' "is it installed?") asks the finders too, and imports nothing.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._looking = threading.local()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != self._name or name in sys.modules or getattr(self._looking, "now", False):
            return None
        self._looking.now = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._looking.now = False
        if spec is not None and spec.loader is not None:
            spec.loader = _MutedLoader(spec.loader, self)
        return spec


class _MutedLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, finder: _QuietImport) -> None:
        self._loader = loader
        self._finder = finder

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            self._loader.exec_module(module)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
            if self._finder in sys.meta_path:
                sys.meta_path.remove(self._finder)
