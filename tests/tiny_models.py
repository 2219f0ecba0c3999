"""Small real SavedModels with the kit's serving signature, saved in well under a second.

They let the model-handling code (version resolution, hot swap, canary, handler) be tested without
training: a fixed linear map stands in for the network, and each variant breaks one promise a
served model must keep.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# name -> how the probabilities are made from the image's first 10 pixels.
VARIANTS = ("sound", "nan", "class_out_of_range", "wrong_width")


def save_model(path: Path | str, variant: str = "sound") -> Path:
    """A SavedModel at `path` whose `serving_default` takes (key int64 [N], image float32 [N, 784])."""
    import tensorflow as tf

    assert variant in VARIANTS, variant
    width = 9 if variant == "wrong_width" else 10

    class Tiny(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weights = tf.Variable(np.eye(784, width, dtype=np.float32))

        @tf.function(
            input_signature=[tf.TensorSpec([None], tf.int64, "key"), tf.TensorSpec([None, 784], tf.float32, "image")]
        )
        def serve(self, key, image):
            probabilities = tf.nn.softmax(tf.matmul(image, self.weights))
            classes = tf.argmax(probabilities, axis=1)
            if variant == "nan":
                probabilities = probabilities * float("nan")
            if variant == "class_out_of_range":
                classes = classes + 10
            return {"key": key, "probabilities": probabilities, "class": classes}

    module = Tiny()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return Path(path)
