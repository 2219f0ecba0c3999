"""Exported models: find the version to serve, copy it locally, load it and check its signature.

Everything goes through Beam's FileSystems, never TensorFlow's own gs:// support: that one ignores
storage emulators and may be missing from a TensorFlow build, while FileSystems works the same
for local paths, gs:// and whatever filesystem a later runner brings.

A version is a folder holding its framework's marker file (export.VERSION_MARKERS: saved_model.pb
or a PyTorch export's model.pt); an export dir's newest version wins whatever its framework.

The pre-flight check reads a SavedModel's signature from saved_model.pb with TensorBoard's copies
of the TensorFlow protos, without importing TensorFlow: that import costs ~3 s of CPU, and
TensorFlow must not start in the launching process before the pipeline has sized its thread
pools. A PyTorch export's is read from its model.json, so neither is PyTorch imported there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from mnistkit.model_export.export import (
    DEFAULT_FRAMEWORK,
    MODEL_JSON,
    SIGNATURE_INPUTS,
    SIGNATURE_NAME,
    SIGNATURE_OUTPUTS,
    VERSION_MARKERS,
    newest_version,
)

__all__ = [
    "copy_to_cache",
    "ModelError",
    "ModelInfo",
    "ServingModel",
    "cache_root",
    "local_copy",
    "read_signature",
    "resolve_model",
    "validate_model",
]

_LOGGER = logging.getLogger(__name__)

_SAVED_MODEL_FILE = "saved_model.pb"


class ModelError(Exception):
    """A model URI that holds no usable export; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class ModelInfo:
    """A checked model: the version directory that will be served and its model.json (if any)."""

    uri: str
    version: str
    metadata: dict[str, Any] = field(default_factory=dict)


def resolve_model(uri: str) -> str:
    """The version directory to serve for `uri`.

    `uri` may be a version directory, its marker file (saved_model.pb, model.pt: what
    WatchFilePattern reports), or an export base directory, whose newest numeric version of any
    framework wins.
    """
    uri = uri.rstrip("/")
    if os.path.basename(uri) in VERSION_MARKERS.values():
        uri = os.path.dirname(uri)
    if any(_exists(_join(uri, marker)) for marker in VERSION_MARKERS.values()):
        return uri
    newest = newest_version(
        os.path.dirname(m.path) for marker in VERSION_MARKERS.values() for m in _match(_join(uri, "*", marker))
    )
    if newest is None:
        markers = " or ".join(VERSION_MARKERS.values())
        raise ModelError(
            f"No exported model at {uri}: expected {uri}/<{markers}> (a version directory) or "
            f"{uri}/<version>/<{markers}> (an export directory). Create one with `mnistkit export` or "
            "`mnistkit export --from-pytorch`."
        )
    return newest


def _framework(version_uri: str) -> str:
    """The framework of a resolved version: the first marker it holds."""
    return next(fw for fw, marker in VERSION_MARKERS.items() if _exists(_join(version_uri, marker)))


def _join(uri: str, *parts: str) -> str:
    try:
        return FileSystems.join(uri, *parts)
    except Exception as exc:  # Beam raises ValueError for a scheme it has no filesystem for
        raise ModelError(f"Cannot read {uri}: {exc}") from exc


def _exists(path: str) -> bool:
    try:
        return FileSystems.exists(path)
    except Exception as exc:  # Beam raises BeamIOError or ValueError (unknown scheme) here
        raise ModelError(f"Cannot read {path}: {exc}") from exc


def _match(pattern: str) -> list:
    try:
        return FileSystems.match([pattern])[0].metadata_list
    except Exception as exc:  # as in _exists
        raise ModelError(f"Cannot list {pattern}: {exc}") from exc


def cache_root() -> str:
    """This user's private model cache: `$XDG_CACHE_HOME/mnistkit/models` (else ~/.cache/...), 0700.

    Not the shared temp dir: there another user could plant a "model" under the name a worker
    would pick, or read the one it copied.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    root = os.path.join(base, "mnistkit", "models")
    os.makedirs(root, mode=0o700, exist_ok=True)
    info = os.stat(root)
    if info.st_uid != os.getuid():
        raise ModelError(f"The model cache {root} belongs to another user; remove it or set XDG_CACHE_HOME.")
    if info.st_mode & 0o077:
        os.chmod(root, 0o700)
    return root


def local_copy(version_uri: str) -> str:
    """A local directory holding the model at `version_uri` (the directory itself when local).

    Remote versions are copied into the user's private cache (cache_root), under a name made of
    the URI and every object's name, size and time, so a version re-uploaded under the same name
    is copied again. Each copy holds a manifest (names, sizes, SHA-256) and is checked against it
    before use; a copy that fails the check is replaced. Objects are copied into a private dir and
    renamed, so no worker sees a half copy, and one that fails (a full disk) leaves nothing behind.
    An object name that would land outside the copy (`1/../../x`, an absolute path) is refused.
    """
    # Beam's local filesystem has no scheme (None); gs:// and the others are copied.
    if FileSystems.get_filesystem(version_uri).scheme() in (None, "file"):
        return version_uri
    return copy_to_cache(version_uri)


def copy_to_cache(version_uri: str) -> str:
    """The checked copy of the model at `version_uri` in the private cache (see local_copy)."""
    root = cache_root()
    objects = sorted(
        (_relative_name(version_uri, m.path), m.path, m.size_in_bytes, m.last_updated_in_seconds)
        for m in _match(FileSystems.join(version_uri, "**"))
        # A name ending in "/" is a folder placeholder some tools write, not a file.
        if not m.path.endswith("/")
    )
    identity = json.dumps([version_uri, [(name, size, updated) for name, _, size, updated in objects]])
    target = os.path.join(root, hashlib.sha256(identity.encode()).hexdigest()[:32])
    if os.path.isdir(target):
        if _matches_manifest(target):
            return target
        _LOGGER.warning("Model copy %s does not match its manifest; copying %s again", target, version_uri)
        shutil.rmtree(target, ignore_errors=True)
    staging = tempfile.mkdtemp(dir=root, prefix=".copy-")
    try:
        manifest = {}
        for name, path, _, _ in objects:
            destination = os.path.join(staging, name)
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            digest = hashlib.sha256()
            # UNCOMPRESSED: a file that merely ends in .gz must be copied byte for byte.
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as src:
                with open(destination, "wb") as dst:
                    while block := src.read(4 << 20):
                        digest.update(block)
                        dst.write(block)
            manifest[name] = [os.path.getsize(destination), digest.hexdigest()]
        with open(os.path.join(staging, _MANIFEST), "w") as f:
            json.dump(manifest, f)
        os.rename(staging, target)
    except OSError as exc:
        if not os.path.isdir(target):
            raise ModelError(f"Cannot copy model {version_uri} to {root}: {exc}") from exc
        # Another worker finished the same copy first; theirs is as good as ours.
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _LOGGER.info("Copied model %s to %s", version_uri, target)
    return target


_MANIFEST = ".mnistkit-manifest.json"


def _relative_name(version_uri: str, path: str) -> str:
    """`path` relative to `version_uri`, refused unless it names a file inside the copy."""
    base = version_uri.rstrip("/") + "/"
    relative = path[len(base) :]
    parts = relative.split("/")
    # An empty part too: `1//x` is not `1/x`, and `1//etc/x` must not become an absolute path.
    if not path.startswith(base) or any(p in ("", ".", "..") for p in parts):
        raise ModelError(f"Refusing to copy {path!r}: its name leads outside the model version {version_uri}.")
    if "\\" in relative or "\0" in relative or relative == _MANIFEST:
        raise ModelError(f"Refusing to copy {path!r}: not a plain object name.")
    return os.path.join(*parts)


def _matches_manifest(target: str) -> bool:
    try:
        with open(os.path.join(target, _MANIFEST)) as f:
            manifest = json.load(f)
        if not isinstance(manifest, dict):
            return False
        for name, (size, sha256) in manifest.items():
            path = os.path.join(target, name)
            if os.path.getsize(path) != size:
                return False
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                while block := f.read(4 << 20):
                    digest.update(block)
            if digest.hexdigest() != sha256:
                return False
        return True
    except (OSError, ValueError, TypeError):
        return False


class ServingModel:
    """A loaded SavedModel's serving function: (keys, images) → (probabilities, classes).

    It is the TensorFlow runtime of inference/runtimes.py (name, precision, predict).
    """

    name = "tensorflow"
    precision = "f32"

    def __init__(self, path: str) -> None:
        import tensorflow as tf

        # Keep the loaded object alive: the signature function only holds weak references to the
        # variables it reads.
        self._loaded = tf.saved_model.load(path)
        self._function = self._loaded.signatures[SIGNATURE_NAME]
        self._tf = tf

    def predict(self, keys: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tf = self._tf
        outputs = self._function(key=tf.constant(keys), image=tf.constant(images))
        return outputs["probabilities"].numpy(), outputs["class"].numpy()


def read_signature(version_uri: str) -> tuple[dict[str, tuple[str, list]], dict[str, tuple[str, list]]]:
    """The serving signature's inputs and outputs, name → (dtype, shape), from saved_model.pb."""
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto.meta_graph_pb2 import MetaGraphDef

    path = FileSystems.join(version_uri, _SAVED_MODEL_FILE)
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        data = f.read()
    try:
        graphs = [MetaGraphDef.FromString(field) for field in _fields(data, _META_GRAPHS_FIELD)]
    except (DecodeError, IndexError, ValueError) as exc:
        raise ModelError(f"{path} is not a SavedModel ({exc}).") from exc
    signatures = {name: sig for graph in graphs for name, sig in graph.signature_def.items()}
    if SIGNATURE_NAME not in signatures:
        found = ", ".join(signatures) or "none"
        raise ModelError(f"Model {version_uri} has no `{SIGNATURE_NAME}` signature (found: {found}).")
    signature = signatures[SIGNATURE_NAME]
    return _specs(signature.inputs), _specs(signature.outputs)


# SavedModel is `{int64 saved_model_schema_version = 1; repeated MetaGraphDef meta_graphs = 2;}`;
# TensorBoard ships MetaGraphDef but not this two-field wrapper, so it is walked by hand.
_META_GRAPHS_FIELD = 2


def _fields(data: bytes, number: int) -> list[bytes]:
    """The payloads of length-delimited field `number` at the top level of a protobuf message."""
    found, position = [], 0
    while position < len(data):
        tag, position = _varint(data, position)
        wire_type = tag & 7
        if wire_type == 0:
            _, position = _varint(data, position)
        elif wire_type == 2:
            length, position = _varint(data, position)
            if tag >> 3 == number:
                found.append(data[position : position + length])
            position += length
        else:
            raise ValueError(f"unexpected wire type {wire_type}")
    return found


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def _specs(tensors) -> dict[str, tuple[str, list]]:
    from tensorboard.compat.proto.types_pb2 import DataType

    names = {"DT_FLOAT": "float32", "DT_DOUBLE": "float64", "DT_HALF": "float16"}
    specs = {}
    for name, info in tensors.items():
        dtype = DataType.Name(info.dtype)
        shape = (
            None if info.tensor_shape.unknown_rank else [d.size if d.size >= 0 else None for d in info.tensor_shape.dim]
        )
        specs[name] = (names.get(dtype, dtype.removeprefix("DT_").lower()), shape)
    return specs


def _spec_problems(kind: str, specs: dict, expected: dict[str, tuple[str, list]]) -> list[str]:
    problems = []
    for name, (dtype, shape) in expected.items():
        if name not in specs:
            problems.append(f"{kind} `{name}` is missing")
        elif specs[name] != (dtype, shape):
            problems.append(f"{kind} `{name}` is {specs[name][0]} {specs[name][1]}, expected {dtype} {shape}")
    return problems


def validate_model(uri: str) -> ModelInfo:
    """Resolve the model at `uri` and check its serving signature, or raise one ModelError saying what is wrong."""
    version_uri = resolve_model(uri)
    metadata = _metadata(version_uri)
    framework = _framework(version_uri)
    if framework == DEFAULT_FRAMEWORK:
        inputs, outputs = read_signature(version_uri)
        fix = "Re-export it with `mnistkit export`."
    else:
        inputs, outputs = _declared_signature(version_uri, metadata, framework)
        fix = "Re-export it with `mnistkit export --from-pytorch`."
    problems = _spec_problems("input", inputs, SIGNATURE_INPUTS) + _spec_problems("output", outputs, SIGNATURE_OUTPUTS)
    if problems:
        raise ModelError(f"Model {version_uri} does not match the serving contract: {'; '.join(problems)}. {fix}")
    return ModelInfo(version_uri, os.path.basename(version_uri), {**metadata, "framework": framework})


def _declared_signature(version_uri: str, metadata: dict[str, Any], framework: str) -> tuple[dict, dict]:
    """The inputs and outputs a non-TensorFlow export declares in its model.json, name → (dtype, shape)."""
    declared = metadata.get("framework")
    if declared != framework:
        raise ModelError(
            f"Model {version_uri} holds {VERSION_MARKERS[framework]} but its {MODEL_JSON} says framework "
            f"{declared!r}, not {framework!r}; export it again."
        )
    signature = metadata.get("signature")
    try:
        return tuple(
            {name: (spec["dtype"], spec["shape"]) for name, spec in signature[part].items()}
            for part in ("inputs", "outputs")
        )
    except (TypeError, KeyError, AttributeError) as exc:
        raise ModelError(f"Model {version_uri}: {MODEL_JSON} has no readable signature ({exc!r}).") from exc


def _metadata(version_uri: str) -> dict[str, Any]:
    path = FileSystems.join(version_uri, MODEL_JSON)
    if not _exists(path):
        return {}
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        try:
            return json.load(f)
        except ValueError:
            _LOGGER.warning("Ignoring unreadable %s", path)
            return {}
