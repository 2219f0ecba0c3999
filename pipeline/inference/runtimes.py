"""Inference runtimes: the engine that runs an exported model, behind one small contract.

The handlers (handler.py, hot_swap.py) never call an engine directly; they load a `Runtime`
with `load_runtime(version_dir, options)` and call `runtime.predict(keys, images)`. Which engine
runs is decided from the export's model.json `framework` and the user's `--runtime`:

- `tensorflow`: the SavedModel's serving signature (savedmodel.ServingModel), on CUDA when a GPU
  is visible. The reference for TensorFlow exports.
- `pytorch`: a PyTorch export's TorchScript program (model.pt), on CUDA when a GPU is visible
  and the installed torch is a CUDA build. The reference for PyTorch exports.
- `openvino`: OpenVINO reads either export as IR converted by its own frontends (written at
  export time, else converted once into a cache), so the CPU path imports neither TensorFlow
  (2.3 s of start-up and ~1 s of teardown per process) nor PyTorch; on the 2-core Zen 4 box it
  ran 2.1-3.5x faster per row than TensorFlow with two callers (docs/BENCHMARKS.md).
- `auto`: the GPU runtime of the model's framework when a CUDA GPU is visible, else the first
  installed CPU runtime that serves the model's framework, in registration order (OpenVINO,
  then TensorFlow or PyTorch).

Another framework's exports plug in as one more `RuntimeEntry` naming the frameworks it serves
(`register_runtime`), plus its name in choices.INFERENCE_RUNTIMES.

Precision: `bf16` is opt-in and OpenVINO-only, refused where the CPU has no native bf16
(emulated bf16 is slower than f32). A bf16 runtime also compiles the f32 model and, on its first
call, scores that batch both ways: the argmax agreement goes to the run summary
(accounting.count_precision_check), the only honest accuracy signal a run without labels has.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mnistkit.model_export.export import (
    DEFAULT_FRAMEWORK,
    MODEL_JSON,
    OPENVINO_IR,
    convert_to_openvino,
)
from mnistkit.model_export.runtime import import_openvino
from mnistkit.model_export.torch_export import PROGRAM_FILE, convert_program_to_openvino
from mnistkit.pipeline import accounting
from mnistkit.pipeline.choices import PRECISIONS
from mnistkit.pipeline.runners import Runner

__all__ = [
    "Runtime",
    "RuntimeEntry",
    "RuntimeOptions",
    "RuntimeUnavailable",
    "bf16_support",
    "call_rows",
    "check_runtime",
    "choose_runtime",
    "configure_tf_threads",
    "configure_torch_threads",
    "has_cuda_gpu",
    "load_runtime",
    "model_framework",
    "openvino_ir",
    "register_runtime",
    "runtime_options",
    "TorchRuntime",
]

_LOGGER = logging.getLogger(__name__)


class RuntimeUnavailable(Exception):
    """The requested runtime or precision cannot run here; the message says what to do instead."""


class Runtime(Protocol):
    """A loaded model. `predict` is called from several threads at once (one per local worker)."""

    name: str
    precision: str

    def predict(self, keys: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """int64 keys [n] and float32 images [n, 784] in 0..1 → float32 probabilities [n, 10], int64 classes [n]."""
        ...


@dataclass(frozen=True)
class RuntimeOptions:
    """What the user asked for, and how many threads a worker process gives the engine.

    `intra_op_threads`: threads one model call may use; `inter_op_threads`: model calls that run
    at once in one process (the runner's worker threads). 0 keeps the engine's default.
    """

    name: str = "auto"
    precision: str = "f32"
    intra_op_threads: int = 0
    inter_op_threads: int = 0


def runtime_options(runner: Runner, name: str = "auto", precision: str = "f32") -> RuntimeOptions:
    """The options for `runner`'s workers: the engine gets the cores the runner gives each worker."""
    return RuntimeOptions(name, precision, runner.tf_intra_op_threads, runner.tf_inter_op_threads)


@dataclass(frozen=True)
class RuntimeEntry:
    """One runtime: the export frameworks it serves, the module that must be installed for it,
    its precisions, whether it runs on a CUDA GPU, its loader, and the rows per model call a
    batch run gives it by default (what it scores fastest within ~1 GB per worker process)."""

    name: str
    frameworks: frozenset[str]
    module: str
    precisions: tuple[str, ...]
    gpu: bool
    load: Callable[[str, RuntimeOptions], Runtime]
    call_rows: int = 256

    @property
    def installed(self) -> bool:
        # find_spec, not import: deciding must not cost the engine's import (seconds for TensorFlow).
        return importlib.util.find_spec(self.module) is not None


_REGISTRY: dict[str, RuntimeEntry] = {}


def register_runtime(entry: RuntimeEntry) -> None:
    """Add a runtime; earlier registrations win `auto` on CPUs."""
    _REGISTRY[entry.name] = entry


def model_framework(version_dir: str) -> str:
    """The framework a local version dir was exported from (model.json; older exports: TensorFlow)."""
    try:
        return json.loads((Path(version_dir) / MODEL_JSON).read_text()).get("framework", DEFAULT_FRAMEWORK)
    except (OSError, ValueError):
        return DEFAULT_FRAMEWORK


def has_cuda_gpu() -> bool:
    """Whether an NVIDIA GPU is visible to this process, decided without importing TensorFlow."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return False
    return any(Path("/dev").glob("nvidia[0-9]*")) or Path("/proc/driver/nvidia/gpus").is_dir()


def cpu_flags() -> set[str]:
    """This CPU's feature flags (Linux /proc/cpuinfo; empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_support() -> str | None:
    """The CPU's native bf16 instructions ("amx_bf16" or "avx512_bf16"), or None."""
    flags = cpu_flags()
    return next((flag for flag in ("amx_bf16", "avx512_bf16") if flag in flags), None)


def choose_runtime(options: RuntimeOptions, framework: str = DEFAULT_FRAMEWORK) -> RuntimeEntry:
    """The runtime that will serve a `framework` export for `options`, or RuntimeUnavailable saying why."""
    if options.precision not in PRECISIONS:
        raise RuntimeUnavailable(f"unknown precision {options.precision!r}; choose one of {', '.join(PRECISIONS)}")
    if options.name == "auto":
        serving = [e for e in _REGISTRY.values() if framework in e.frameworks and e.installed]
        if options.precision != "f32":
            serving = [e for e in serving if options.precision in e.precisions]
        gpu = [e for e in serving if e.gpu] if has_cuda_gpu() else []
        if not (gpu or serving):
            raise RuntimeUnavailable(
                f"no installed runtime serves {framework} models at {options.precision}; install the kit's `cpu` "
                "extra (pip install 'mnist-dataflow-kit[cpu]'), its `gpu` extra, or (PyTorch exports) its `torch` one"
            )
        entry = (gpu or serving)[0]
    else:
        entry = _REGISTRY.get(options.name)
        if entry is None:
            raise RuntimeUnavailable(f"unknown runtime {options.name!r}; choose auto or one of {', '.join(_REGISTRY)}")
        if framework not in entry.frameworks:
            raise RuntimeUnavailable(f"runtime {entry.name} cannot serve a {framework} export; use --runtime auto")
        if not entry.installed:
            raise RuntimeUnavailable(f"runtime {entry.name} needs the `{entry.module}` package, which is not installed")
    if options.precision not in entry.precisions:
        raise RuntimeUnavailable(
            f"runtime {entry.name} serves {', '.join(entry.precisions)} only; --precision {options.precision} needs "
            f"one of: {', '.join(e.name for e in _REGISTRY.values() if options.precision in e.precisions)}"
        )
    if options.precision == "bf16" and bf16_support() is None:
        raise RuntimeUnavailable(
            "--precision bf16 needs a CPU with native bf16 (AVX512_BF16 or AMX: Cooper Lake, Sapphire Rapids, "
            "Zen 4 or newer); this one has neither and would emulate it, slower than f32. Use --precision f32."
        )
    return entry


def check_runtime(options: RuntimeOptions, framework: str, here: bool) -> str:
    """Refuse, before a run starts, a runtime or precision that cannot serve it; the runtime's name.

    A run `here` is checked fully (installed engines, this CPU's bf16) and gets the runtime that
    will really serve it; a remote one only for what holds everywhere, its workers decide `auto`.
    """
    if here:
        return choose_runtime(options, framework).name
    if options.precision not in PRECISIONS or options.name not in ("auto", *_REGISTRY):
        raise RuntimeUnavailable(f"unknown runtime {options.name!r} or precision {options.precision!r}")
    if options.precision == "bf16" and options.name not in ("auto", "openvino"):
        raise RuntimeUnavailable(f"--precision bf16 needs --runtime openvino (or auto), not {options.name}")
    if options.name != "auto" and framework not in _REGISTRY[options.name].frameworks:
        raise RuntimeUnavailable(f"runtime {options.name} cannot serve a {framework} export; use --runtime auto")
    return options.name


def call_rows(name: str) -> int:
    """Batch predict's default rows per model call on runtime `name` (check_runtime's answer).

    `auto` left to remote workers gets the largest: every registered runtime is at least as
    fast with it (measured on 100k seed rows; TensorFlow then needs ~1.3 GB instead of ~1 GB).
    """
    entry = _REGISTRY.get(name)
    return entry.call_rows if entry else max(e.call_rows for e in _REGISTRY.values())


def load_runtime(version_dir: str, options: RuntimeOptions = RuntimeOptions()) -> Runtime:
    """Load the model in a local version dir on the runtime `options` asks for."""
    entry = choose_runtime(options, model_framework(version_dir))
    runtime = entry.load(version_dir, options)
    _LOGGER.info("Serving %s on %s (%s)", version_dir, runtime.name, runtime.precision)
    return runtime


# --- TensorFlow ------------------------------------------------------------------------------


def configure_tf_threads(intra_op: int, inter_op: int) -> None:
    """Size TensorFlow's thread pools for this process (0 keeps a default); a no-op once TF runs."""
    if not intra_op and not inter_op:
        return
    import tensorflow as tf

    try:
        if intra_op:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        if inter_op:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:
        # TensorFlow is already running in this process (the in-process runner after an earlier
        # model load); its pools are fixed for good, which is harmless for one worker.
        _LOGGER.debug("TensorFlow already initialised; keeping its thread pools")


def _load_tensorflow(version_dir: str, options: RuntimeOptions) -> Runtime:
    """savedmodel.ServingModel (the serving signature through tf.saved_model.load), pools sized first."""
    from mnistkit.pipeline.inference.savedmodel import ServingModel

    configure_tf_threads(options.intra_op_threads, options.inter_op_threads)
    return ServingModel(version_dir)


# --- OpenVINO --------------------------------------------------------------------------------

_CACHE_DIR = Path(os.environ.get("MNISTKIT_CACHE_DIR", Path.home() / ".cache" / "mnistkit")) / "openvino"


def _export_digest(version_dir: str) -> str:
    """A content hash of the exported program (SavedModel graph + variables, or model.pt): a
    re-export never meets a stale IR."""
    digest = hashlib.sha256()
    root = Path(version_dir)
    for path in [root / "saved_model.pb", *sorted((root / "variables").glob("*")), root / PROGRAM_FILE]:
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:24]


# How each framework's export becomes IR, where the export did not write one.
_CONVERTERS = {DEFAULT_FRAMEWORK: convert_to_openvino, "pytorch": convert_program_to_openvino}


def openvino_ir(version_dir: str, cache_dir: Path = _CACHE_DIR) -> Path:
    """The OpenVINO IR (model.xml + .bin) of an export: the one `mnistkit export` wrote beside it,
    else one converted once into `cache_dir` (keyed by content) and reused.

    Converting a SavedModel costs ~0.4 s and, in the process that did it, ~4 s more at exit;
    reading an IR ~10 ms. A PyTorch export converts only where torch is installed. Concurrent
    workers convert into private names and rename, so none reads half a file.
    """
    exported = Path(version_dir) / OPENVINO_IR
    if exported.is_file():
        return exported
    target = cache_dir / _export_digest(version_dir) / "model.xml"
    if not target.is_file():
        staging = cache_dir / f".convert-{os.getpid()}-{threading.get_ident()}"
        _CONVERTERS[model_framework(version_dir)](version_dir, staging / "model.xml")
        target.parent.mkdir(parents=True, exist_ok=True)
        (staging / "model.bin").replace(target.with_suffix(".bin"))
        (staging / "model.xml").replace(target)
        staging.rmdir()
    return target


class OpenVINORuntime:
    """The model compiled by OpenVINO for the CPU: THROUGHPUT hint, one infer request per thread.

    THROUGHPUT makes one CPU stream per concurrent caller, so the runner's two worker threads run
    two model calls at once (the LATENCY hint or one stream serialised them: 1.7x slower per row);
    an infer request is not thread-safe, so each calling thread gets its own.
    """

    name = "openvino"

    def __init__(self, version_dir: str, options: RuntimeOptions) -> None:
        ov = import_openvino()
        self.precision = options.precision
        core = ov.Core()
        model = core.read_model(openvino_ir(version_dir))
        self._compiled = self._compile(core, model, options, options.precision)
        # A bf16 model's first batch is scored in f32 too (see the module docstring).
        self._reference = self._compile(core, model, options, "f32") if options.precision != "f32" else None
        self._probabilities = self._port("probabilities")
        self._class = self._port("class")
        self._image_input = next(p.get_any_name() for p in self._compiled.inputs if "image" in p.get_names())
        self._key_input = next(p.get_any_name() for p in self._compiled.inputs if "key" in p.get_names())
        self._local = threading.local()
        self._check_lock = threading.Lock()
        self._first_call_lock = threading.Lock()

    @staticmethod
    def _compile(core: Any, model: Any, options: RuntimeOptions, precision: str) -> Any:
        config: dict[str, Any] = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": precision}
        if options.inter_op_threads:
            config["NUM_STREAMS"] = options.inter_op_threads
        if options.intra_op_threads:
            config["INFERENCE_NUM_THREADS"] = options.intra_op_threads * max(1, options.inter_op_threads)
        return core.compile_model(model, "CPU", config)

    def _port(self, name: str) -> Any:
        for port in self._compiled.outputs:
            if name in port.get_names():
                return port
        raise KeyError(f"the converted model has no output {name!r}")

    def _infer(self, compiled: Any, slot: str, keys: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inputs = {
            self._key_input: np.ascontiguousarray(keys, np.int64),
            self._image_input: np.ascontiguousarray(images, np.float32),
        }
        request = getattr(self._local, slot, None)
        if request is None:
            # Two requests' first calls at once deadlocked (twice in ~20 two-thread runs, both
            # threads inside the copy into fresh input tensors): first calls go one at a time.
            with self._first_call_lock:
                request = compiled.create_infer_request()
                request.infer(inputs, share_inputs=True)
            setattr(self._local, slot, request)
        else:
            # share_inputs: the arrays become the input tensors (no copy into the request's own).
            request.infer(inputs, share_inputs=True)
        # Copies: a request reuses its output buffers on its next call.
        probabilities = request.get_tensor(self._probabilities).data.copy()
        classes = request.get_tensor(self._class).data.astype(np.int64)
        return probabilities, classes

    def predict(self, keys: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probabilities, classes = self._infer(self._compiled, "request", keys, images)
        if self._reference is not None:
            with self._check_lock:
                reference, self._reference = self._reference, None
            if reference is not None:
                _, exact = self._infer(reference, "reference", keys, images)
                accounting.count_precision_check(len(keys), int((exact == classes).sum()))
        return probabilities, classes


# --- PyTorch ---------------------------------------------------------------------------------


def configure_torch_threads(intra_op: int, inter_op: int) -> None:
    """Size PyTorch's thread pools for this process (0 keeps a default); the inter-op pool only until it has run."""
    import torch

    if intra_op:
        torch.set_num_threads(intra_op)
    if inter_op:
        try:
            torch.set_num_interop_threads(inter_op)
        except RuntimeError:
            # Fixed once PyTorch has run parallel work in this process (an earlier model in the
            # in-process runner); harmless, as configure_tf_threads's case is.
            _LOGGER.debug("PyTorch's inter-op pool already started; keeping it")


class TorchRuntime:
    """A PyTorch export's TorchScript program, on CUDA where a GPU is visible and torch has CUDA.

    TorchScript programs are safe to call from several threads at once; inference_mode keeps
    autograd out of every call.
    """

    name = "pytorch"
    precision = "f32"

    def __init__(self, version_dir: str, options: RuntimeOptions) -> None:
        import torch

        configure_torch_threads(options.intra_op_threads, options.inter_op_threads)
        self._device = torch.device("cuda" if has_cuda_gpu() and torch.cuda.is_available() else "cpu")
        self._program = torch.jit.load(str(Path(version_dir) / PROGRAM_FILE), map_location=self._device).eval()
        self._torch = torch

    @property
    def device(self) -> str:
        return self._device.type

    def predict(self, keys: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            outputs = self._program(
                torch.from_numpy(np.ascontiguousarray(keys, np.int64)).to(self._device),
                torch.from_numpy(np.ascontiguousarray(images, np.float32)).to(self._device),
            )
            return outputs["probabilities"].cpu().numpy(), outputs["class"].cpu().numpy()


register_runtime(
    # 2,048-row calls: 15-20 % faster than 256 on 100k seed rows (docs/PREDICT.md).
    RuntimeEntry(
        "openvino",
        frozenset({"tensorflow", "pytorch"}),
        "openvino",
        PRECISIONS,
        gpu=False,
        load=OpenVINORuntime,
        call_rows=2048,
    )
)
register_runtime(
    RuntimeEntry("tensorflow", frozenset({"tensorflow"}), "tensorflow", ("f32",), gpu=True, load=_load_tensorflow)
)
register_runtime(RuntimeEntry("pytorch", frozenset({"pytorch"}), "torch", ("f32",), gpu=True, load=TorchRuntime))
