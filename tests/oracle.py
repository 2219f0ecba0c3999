"""Independent oracles: what an exported model answers when called another way than the kit calls it.

The pipelines serve the SavedModel through `mnistkit.pipeline.inference.savedmodel.ServingModel`;
comparing a pipeline with that same class proves only that the pipeline calls it, not that the
answer is right (a second /255 inside it would go unnoticed). These helpers load the export's
Keras file with Keras itself and scale raw uint8 pixels here, so a bug in the kit's loading,
scaling or signature call shows up as a difference.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

__all__ = ["keras_probabilities", "rolled_classes"]


@functools.lru_cache(maxsize=8)
def _keras_model(version_dir: str):
    import keras

    return keras.saving.load_model(str(Path(version_dir) / "model.keras"), compile=False)


def keras_probabilities(version_dir: str | Path, pixels: np.ndarray) -> np.ndarray:
    """Probabilities [n, 10] for uint8 `pixels` [n, 784] from `version_dir/model.keras`, via Keras."""
    pixels = np.asarray(pixels)
    assert pixels.dtype == np.uint8, "the oracle scales raw pixels itself"
    model = _keras_model(str(version_dir))
    images = pixels.reshape(len(pixels), -1).astype(np.float32) / np.float32(255.0)
    return np.asarray(model(images, training=False))


def rolled_classes(model, shift: int = 1):
    """A copy of the Keras `model` whose output classes are rolled by `shift`: where `model`
    answers class c with probability p, the copy answers (c + shift) % 10 with the same p.

    A model with different weights whose every prediction differs, and whose exact answers the
    tests still know (the original's, rolled).
    """
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    output = copy.layers[-1]
    kernel, bias = output.get_weights()
    output.set_weights([np.roll(kernel, shift, axis=1), np.roll(bias, shift)])
    return copy
