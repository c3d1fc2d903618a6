"""`cnn-small`: a plain VGG-style conv net, the fastest baseline on 32x32 images."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from edgewise.core.plugins import Registry
from edgewise.studio.zoo._layers import Classifier, ConvBNAct, pooled, scaled


def cnn_small(num_classes: int, *, width: float = 1.0, dropout: float = 0.1, in_channels: int = 3) -> Classifier:
    """Plain conv net: 5 conv-BN-ReLU layers in 3 stages, global pooling, linear head."""
    # One conv only at full resolution: full-size activations dominate CPU training time.
    c1, c2, c3 = scaled(24, width), scaled(48, width), scaled(96, width)
    features = pooled(
        ConvBNAct(in_channels, c1), nn.MaxPool2d(2),
        ConvBNAct(c1, c2), ConvBNAct(c2, c2), nn.MaxPool2d(2),
        ConvBNAct(c2, c3), ConvBNAct(c3, c3),
    )
    return Classifier(features, c3, num_classes, dropout)


def register(registry: Registry[Callable[..., nn.Module]]) -> None:
    registry.add("cnn-small", cnn_small, "plain conv net (conv-BN-ReLU x5), fastest baseline")
