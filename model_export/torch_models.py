"""The kit's networks in PyTorch: the CNN of model.py, and the GPU recipe's Fashion-MNIST MLP.

Both take flat float32 [N, 784] pixels in 0..1 (the wire formats' layout, as the Keras CNN does)
and return 10 scores per row, before softmax: the loss (cross-entropy) and the serving wrapper
(torch_export.py) apply it, so training never takes the log of a softmax it just computed.

`MLP` is the recipe's class field for field (`flatten`, `linear_relu_stack`), so a `state_dict`
saved from it with `torch.save(model.state_dict(), "fashion.pth")` loads here unchanged. Its last
layer is a ReLU: the recipe's "logits" are never negative, and its probabilities are the softmax
of those clipped scores. That is kept as is; a negative score the user's model never produced
would change its predictions.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from mnistkit.model_export.model import IMAGE_SIZE, NUM_CLASSES, NUM_PIXELS

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ARCHITECTURES", "LAYERS", "TorchError", "build_torch_model", "import_torch"]

# Keras' BatchNormalization(momentum=0.9) keeps 0.9 of the old statistics; PyTorch's momentum is
# the weight of the new batch, so 0.1 is the same rule. Keras' epsilon default is 1e-3.
_BN_MOMENTUM = 0.1
_BN_EPSILON = 1e-3
_HIDDEN_MLP = 512
_MLP_SCORE_BIAS = 0.5


class TorchError(Exception):
    """A PyTorch problem the user fixes (PyTorch missing, a state_dict that does not fit); the message says how."""


def import_torch():
    """The `torch` module, or a TorchError saying how to install it (the kit's `torch` extra)."""
    if importlib.util.find_spec("torch") is None:
        raise TorchError(
            "PyTorch is not installed: pip install 'mnist-dataflow-kit[torch]' (the CPU wheel; "
            "docs/PYTORCH.md has the CUDA route)."
        )
    import torch

    return torch


def _cnn() -> nn.Module:
    from torch import nn

    class CNN(nn.Module):
        """model.py's network layer for layer: 16 then 64 filters, batch norm, dropout 0.3, 128 dense."""

        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Unflatten(1, (1, IMAGE_SIZE, IMAGE_SIZE)),
                nn.Conv2d(1, 16, 3),
                nn.ReLU(),
                nn.BatchNorm2d(16, eps=_BN_EPSILON, momentum=_BN_MOMENTUM),
                nn.MaxPool2d(2),
                nn.Conv2d(16, 64, 3),
                nn.ReLU(),
                nn.BatchNorm2d(64, eps=_BN_EPSILON, momentum=_BN_MOMENTUM),
                nn.MaxPool2d(2),
            )
            # 28 → conv 26 → pool 13 → conv 11 → pool 5
            self.classifier = nn.Sequential(
                nn.Flatten(),
                nn.Dropout(0.3),
                nn.Linear(64 * 5 * 5, 128),
                nn.ReLU(),
                nn.Linear(128, NUM_CLASSES),
            )

        def forward(self, x):
            return self.classifier(self.features(x))

    return CNN()


def _mlp() -> nn.Module:
    from torch import nn

    class NeuralNetwork(nn.Module):
        """The recipe's model, named as it names it (its state_dict keys are linear_relu_stack.{0,2,4}.*)."""

        def __init__(self) -> None:
            super().__init__()
            self.flatten = nn.Flatten()
            self.linear_relu_stack = nn.Sequential(
                nn.Linear(NUM_PIXELS, _HIDDEN_MLP),
                nn.ReLU(),
                nn.Linear(_HIDDEN_MLP, _HIDDEN_MLP),
                nn.ReLU(),
                nn.Linear(_HIDDEN_MLP, NUM_CLASSES),
                nn.ReLU(),
            )

        def forward(self, x):
            return self.linear_relu_stack(self.flatten(x))

    net = NeuralNetwork()
    # With PyTorch's default init, the last ReLU starts at 0 for most images in several classes, and
    # a class whose score is clipped gets no gradient: Fashion-MNIST stalled at 0.51 after 3 epochs
    # (60k images), 0.881 with every score starting positive. Only the start changes, not the model.
    nn.init.constant_(net.linear_relu_stack[4].bias, _MLP_SCORE_BIAS)
    return net


ARCHITECTURES = {"cnn": _cnn, "mlp": _mlp}
LAYERS = {
    "cnn": "Unflatten(1, 28, 28) → Conv2d(1, 16, 3) → ReLU → BatchNorm2d → MaxPool2d(2) → Conv2d(16, 64, 3) → ReLU → "
    "BatchNorm2d → MaxPool2d(2) → Flatten → Dropout(0.3) → Linear(1600, 128) → ReLU → Linear(128, 10)",
    "mlp": "Flatten → Linear(784, 512) → ReLU → Linear(512, 512) → ReLU → Linear(512, 10) → ReLU",
}


def build_torch_model(arch: str) -> nn.Module:
    """A freshly initialised `arch` network ("cnn" or "mlp"), in training mode."""
    import_torch()
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch]()
