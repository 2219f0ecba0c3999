"""The REST prediction protocol of Vertex AI and TensorFlow Serving, as the kit speaks it.

    request   {"instances": [{"key": 7, "image": [784 numbers in 0..1]}, [784 numbers], ...]}
              (an `image` may also be the text format's "v1,...,v784", as the kit's BigQuery tables hold it)
    response  {"predictions": [{"key": 7, "class": 3, "probabilities": [10 numbers]}, ...]}

Both ends live here, so `mnistkit serve` (the server) and the remote model handler (the client)
cannot drift apart. The same request works against the prebuilt TensorFlow serving container on
Vertex AI: its instances are the serving signature's named inputs, and its predictions are the
signature's named outputs, the very field names used here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mnistkit.model_export.model import NUM_CLASSES, NUM_PIXELS

__all__ = [
    "MAX_REQUEST_BYTES",
    "ProtocolError",
    "encode_instances",
    "encode_predictions",
    "instance_bytes",
    "parse_instances",
    "parse_predictions",
]

# Vertex AI rejects online prediction requests over 1.5 MB; the server and the client keep to it.
MAX_REQUEST_BYTES = 1_500_000
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class ProtocolError(ValueError):
    """A request or response that does not follow the protocol; the message names the problem."""


def parse_instances(body: bytes) -> tuple[np.ndarray, np.ndarray]:
    """keys int64 [n] and images float32 [n, 784] of a request body, or ProtocolError saying why not.

    An instance without a key (a bare list of pixels) is keyed by its index in the request.
    """
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ProtocolError(f"the body is not JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("instances"), list):
        raise ProtocolError('expected a JSON object {"instances": [...]}')
    instances = document["instances"]
    if not instances:
        raise ProtocolError("`instances` is empty")
    keys = np.empty(len(instances), np.int64)
    images: list[Any] = []
    for i, instance in enumerate(instances):
        if isinstance(instance, dict):
            key, image = instance.get("key"), instance.get("image")
            if type(key) is not int or not _INT64_MIN <= key <= _INT64_MAX:
                raise ProtocolError(f"instance {i}: `key` must be an integer (int64)")
        else:
            key, image = i, instance
        if isinstance(image, str):  # the text format's `v1,...,v784`, as a BigQuery STRING column holds it
            image = _text_pixels(i, image)
        if not isinstance(image, list) or len(image) != NUM_PIXELS:
            found = f"{len(image)} values" if isinstance(image, list) else "no list of pixels"
            raise ProtocolError(f"instance {i}: {found}, expected an `image` of {NUM_PIXELS} numbers")
        keys[i] = key
        images.append(image)
    try:
        pixels = np.asarray(images, np.float32)
    except (ValueError, TypeError) as exc:
        raise ProtocolError(f"every pixel must be a number ({exc})") from exc
    if pixels.ndim != 2:
        raise ProtocolError("every pixel must be a number, not a list")
    # NumPy turns null into NaN and booleans into 0/1 without a word: the range check catches
    # the first, the type check after it the second.
    bad = ~((pixels.min(axis=1) >= 0) & (pixels.max(axis=1) <= 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        if np.isfinite(pixels[i]).all():
            raise ProtocolError(f"instance {i}: pixel values must lie in 0..1")
        raise ProtocolError(f"instance {i}: NaN, infinite or null pixel value")
    for i, image in enumerate(images):
        if not all(type(v) is float or type(v) is int for v in image):
            raise ProtocolError(f"instance {i}: every pixel must be a number")
    return keys, pixels


def _text_pixels(i: int, text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise ProtocolError(f"instance {i}: `image` text must be {NUM_PIXELS} comma-separated numbers") from exc


def encode_predictions(keys: np.ndarray, probabilities: np.ndarray, classes: np.ndarray, **extra: Any) -> bytes:
    """The response body for the rows of one request (`extra` adds top-level fields)."""
    predictions = [
        {"key": key, "class": cls, "probabilities": probs}
        for key, cls, probs in zip(keys.tolist(), classes.tolist(), probabilities.tolist(), strict=True)
    ]
    return json.dumps({"predictions": predictions, **extra}, separators=(",", ":")).encode()


def instance_bytes(key: int, image: np.ndarray) -> bytes:
    """One instance as it goes into a request body (the client packs requests up to the limit)."""
    # repr of a float32 widened to float64 keeps it exact; 9 significant digits are enough.
    values = ",".join(f"{v:.9g}" for v in image.tolist())
    return b'{"key":%d,"image":[%s]}' % (key, values.encode())


def encode_instances(encoded: Sequence[bytes]) -> bytes:
    """A request body from instances made by instance_bytes."""
    return b'{"instances":[' + b",".join(encoded) + b"]}"


def parse_predictions(body: bytes, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """probabilities [n, 10] and classes [n] from a response to a request for `keys`, in their order.

    Raises ProtocolError when the response lacks a row, names other keys, or holds bad numbers.
    """
    try:
        predictions = json.loads(body)["predictions"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"the response has no `predictions` list ({exc})") from exc
    if not isinstance(predictions, list) or len(predictions) != len(keys):
        found = len(predictions) if isinstance(predictions, list) else "no list of"
        raise ProtocolError(f"{found} predictions for {len(keys)} instances")
    probabilities = np.empty((len(keys), NUM_CLASSES), np.float32)
    classes = np.empty(len(keys), np.int64)
    for i, (prediction, key) in enumerate(zip(predictions, keys.tolist(), strict=True)):
        try:
            got_key, cls, probs = prediction["key"], prediction["class"], prediction["probabilities"]
        except (KeyError, TypeError) as exc:
            raise ProtocolError(f"prediction {i} lacks key, class or probabilities") from exc
        if got_key != key:
            raise ProtocolError(f"prediction {i} is for key {got_key}, expected {key}")
        if not isinstance(probs, list) or len(probs) != NUM_CLASSES or not all(map(_finite, probs)):
            raise ProtocolError(f"prediction {i}: expected {NUM_CLASSES} finite probabilities")
        probabilities[i] = probs
        classes[i] = cls
    return probabilities, classes


def _finite(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)
