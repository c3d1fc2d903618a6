"""Building blocks shared by the zoo families.

Every model is a `Classifier`: `features` (the backbone, ending in a pooled flat vector) and
`classifier` (one nn.Linear head). Freezing a backbone and replacing a head rely on that split.
Only standard Conv/BN/activation/Linear modules and out-of-place adds are used, so every model
exports to ONNX and torch-pruning can trace and prune it.
"""

from __future__ import annotations

import torch
from torch import nn


def scaled(channels: int, width: float, divisor: int = 8) -> int:
    """Channels times the width multiplier, rounded to a multiple of `divisor` (hardware friendly)."""
    value = max(divisor, int(channels * width + divisor / 2) // divisor * divisor)
    if value < 0.9 * channels * width:
        value += divisor
    return value


class ConvBNAct(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, activation: type[nn.Module] | None = nn.ReLU) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        if activation is not None:
            layers.append(activation())
        super().__init__(*layers)


class Classifier(nn.Module):
    """`features` -> flat vector -> `classifier` (nn.Linear)."""

    def __init__(self, features: nn.Module, feature_dim: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.features = features
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))


def pooled(*layers: nn.Module) -> nn.Sequential:
    """A backbone that ends in global average pooling and a flatten."""
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
