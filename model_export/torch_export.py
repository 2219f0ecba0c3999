"""Export a PyTorch network in the kit's versioned layout, or a user's `state_dict` (the GPU recipe's workflow).

A version ``<export_dir>/<unix-timestamp>/`` (written atomically by export.write_version) holds:
  - ``model.pt``: a TorchScript program of the serving contract, ``forward(key, image)`` →
    ``{"key", "probabilities", "class"}``, which ``torch.jit.load`` runs without the model's class;
  - ``state_dict.pt``: the bare network's weights, for users who keep training in PyTorch;
  - ``model.json``: ``"framework": "pytorch"``, the architecture, the input and output spec;
  - where OpenVINO is installed, ``openvino/model.xml`` + ``.bin``: the same program as OpenVINO IR,
    so CPU workers serve it without PyTorch (pipeline/inference/runtimes.py).

TorchScript rather than ``torch.export``: both load without the class, but on this machine a
``torch.jit.load`` took 11-16 ms and a ``torch.export.load(...).module()`` 1.3-1.5 s (it rebuilds
and recompiles a GraphModule) for the same network and the same per-batch speed; every worker
and every hot swap of a stream pays that load.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnistkit.model_export.export import MODEL_JSON, OPENVINO_IR, VERSION_MARKERS, model_info, write_version
from mnistkit.model_export.model import NUM_CLASSES, NUM_PIXELS
from mnistkit.model_export.torch_models import LAYERS, TorchError, build_torch_model, import_torch

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "FRAMEWORK",
    "PROGRAM_FILE",
    "STATE_DICT_FILE",
    "StateDictError",
    "convert_program_to_openvino",
    "export_state_dict",
    "export_torch_model",
    "load_program",
    "load_state_dict",
    "serving_module",
]

FRAMEWORK = "pytorch"
PROGRAM_FILE = VERSION_MARKERS[FRAMEWORK]
STATE_DICT_FILE = "state_dict.pt"
# The exported program must reproduce the eager network on a probe batch this closely (float32).
_AGREEMENT = 1e-5
_PROBE_ROWS = 64
# What each architecture's last layer does to its 10 scores before the softmax.
_SCORES = {"cnn": "linear", "mlp": "relu"}


class StateDictError(TorchError):
    """A `state_dict` file that does not fit the architecture; the message says what differs."""


def serving_module(net: nn.Module) -> nn.Module:
    """`net` behind the serving contract: keys passed through, softmax probabilities, argmax class."""
    import torch
    from torch import nn

    class Serving(nn.Module):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, key: torch.Tensor, image: torch.Tensor) -> dict[str, torch.Tensor]:
            probabilities = torch.softmax(self.net(image), dim=1)
            return {"key": key, "probabilities": probabilities, "class": torch.argmax(probabilities, dim=1)}

    return Serving(net).eval()


def export_torch_model(
    net: nn.Module,
    arch: str,
    export_dir: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
    version: int | None = None,
) -> Path:
    """Write `net` (an `arch` network) to ``export_dir/<version>/`` and return that folder.

    The program is checked against `net` on a probe batch before the version is published.
    """
    import torch

    net = net.cpu().eval()
    program = torch.jit.script(serving_module(net))
    _check_program(program, net)

    def write(staging: Path, version: int) -> None:
        staging.mkdir(parents=True)
        program.save(str(staging / PROGRAM_FILE))
        torch.save(net.state_dict(), staging / STATE_DICT_FILE)
        if importlib.util.find_spec("openvino") is not None:
            convert_program_to_openvino(str(staging), staging / OPENVINO_IR)
        info = model_info(version, {**_torch_metadata(arch), **(metadata or {})}, {"torch": torch.__version__})
        info["signature"]["name"] = "forward"
        (staging / MODEL_JSON).write_text(_json(info))

    return write_version(export_dir, write, version)


def load_state_dict(path: str | os.PathLike, arch: str) -> nn.Module:
    """An `arch` network holding the weights in `path` (``torch.save(model.state_dict(), path)``).

    Read with ``weights_only=True``: a state_dict is tensors only, and a pickle from elsewhere
    must not run code. A DataParallel/DDP save (keys prefixed ``module.``) is accepted as well.
    """
    import pickle

    torch = import_torch()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise StateDictError(
            f"{path} is not a state_dict saved with torch.save(model.state_dict(), ...) (a whole model saved with "
            f"torch.save(model) is not read: it would run code from the file): {_first_line(exc)}"
        ) from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise StateDictError(
            f"{path} holds a {type(state).__name__} of more than tensors, not a state_dict (parameter name → tensor); "
            "from a training checkpoint, save its model.state_dict() alone"
        )
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    net = build_torch_model(arch)
    problems = _misfits(state, net.state_dict())
    if problems:
        fits = [
            other for other in LAYERS if other != arch and not _misfits(state, build_torch_model(other).state_dict())
        ]
        hint = f"; it is an --arch {fits[0]} state_dict" if fits else ""
        raise StateDictError(f"{path} does not fit --arch {arch} ({LAYERS[arch]}): {'; '.join(problems)}{hint}")
    net.load_state_dict(state)
    return net.eval()


def _misfits(state: Mapping, expected: Mapping) -> list[str]:
    """What keeps `state` from loading where `expected` is the network's own state_dict; empty if it fits."""
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    problems = [f"{label} {_some(keys)}" for label, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
    return problems + [
        f"{k} is {list(state[k].shape)}, expected {list(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]


def _some(keys: list[str], shown: int = 4) -> str:
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


def export_state_dict(
    path: str | os.PathLike,
    arch: str,
    export_dir: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Export a user's `state_dict` file as a version of `export_dir` (`mnistkit export --from-pytorch`)."""
    net = load_state_dict(path, arch)
    return export_torch_model(net, arch, export_dir, {"source": str(path), **(metadata or {})})


def load_program(version_dir: str | os.PathLike):
    """The exported TorchScript program of a local version dir, on CPU, ready to call."""
    import torch

    program = torch.jit.load(str(Path(version_dir) / PROGRAM_FILE), map_location="cpu")
    return program.eval()


def convert_program_to_openvino(version_dir: str, xml_path: Path) -> Path:
    """Write a version's TorchScript program as OpenVINO IR at `xml_path` (+ .bin), inputs typed as the contract's.

    OpenVINO's PyTorch frontend directly, as export.convert_to_openvino does for SavedModels (no
    `ov.convert_model` telemetry). TorchScript types no tensor, so the inputs get the contract's
    dtypes and shapes here, and the image input its bare name (the frontend calls it `image.1`).
    Weights stay f32. Needs `torch` as well as `openvino`, once, where the IR is written.
    """
    import torch

    from mnistkit.model_export.runtime import import_openvino

    ov = import_openvino()
    from openvino.frontend.pytorch.ts_decoder import TorchScriptPythonDecoder

    frontend = ov.frontend.FrontEndManager().load_by_framework("pytorch")
    program = torch.jit.load(str(Path(version_dir) / PROGRAM_FILE), map_location="cpu").eval()
    # The decoder must outlive convert(): the frontend holds it only as a C++ pointer.
    decoder = TorchScriptPythonDecoder(program)
    graph = frontend.load(decoder)
    for index, (shape, dtype) in enumerate((([-1], ov.Type.i64), ([-1, NUM_PIXELS], ov.Type.f32))):
        place = graph.get_place_by_input_index(index)
        graph.set_partial_shape(place, ov.PartialShape(shape))
        graph.set_element_type(place, dtype)
    model = frontend.convert(graph)
    for port, name in zip(model.inputs, ("key", "image"), strict=True):
        port.get_tensor().set_names({name})
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(xml_path), compress_to_fp16=False)
    return xml_path


def _check_program(program, net: nn.Module) -> None:
    import torch

    generator = torch.Generator().manual_seed(0)
    image = torch.rand(_PROBE_ROWS, NUM_PIXELS, generator=generator)
    key = torch.arange(_PROBE_ROWS, dtype=torch.int64)
    with torch.inference_mode():
        expected = torch.softmax(net(image), dim=1)
        got = program(key, image)
    difference = float((got["probabilities"] - expected).abs().max())
    if difference > _AGREEMENT or not torch.equal(got["key"], key):
        raise RuntimeError(f"the TorchScript program differs from the network by {difference:.2e}; not exported")


def _torch_metadata(arch: str) -> dict[str, Any]:
    return {
        "framework": FRAMEWORK,
        "architecture": arch,
        "layers": LAYERS[arch],
        "program": {"file": PROGRAM_FILE, "format": "torchscript", "load": "torch.jit.load"},
        "state_dict": STATE_DICT_FILE,
        # The network's 10 scores and what its last layer did to them; probabilities = softmax(scores).
        "scores": {"classes": NUM_CLASSES, "activation": _SCORES[arch]},
    }


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _json(info: dict[str, Any]) -> str:
    import json

    return json.dumps(info, indent=2) + "\n"
