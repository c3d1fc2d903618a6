"""MobileNet-style nets: depthwise-separable inverted residual blocks with a width multiplier.

`mobilenetv2-tiny` follows MobileNetV2 (ReLU6, linear bottlenecks); `mobilenetv3-small`
follows MobileNetV3-Small (hard-swish, squeeze-and-excitation). Strides suit 32-96 px inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from edgewise.core.plugins import Registry
from edgewise.studio.zoo._layers import Classifier, ConvBNAct, pooled, scaled


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        squeezed = scaled(channels // 4, 1.0)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.relu = nn.ReLU()
        self.expand = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.relu(self.reduce(self.pool(x)))))


class InvertedResidual(nn.Module):
    """1x1 expand -> depthwise kxk -> (SE) -> 1x1 linear project, residual when shapes match."""

    def __init__(self, in_channels: int, expanded: int, out_channels: int, kernel_size: int, stride: int,
                 activation: type[nn.Module], squeeze_excite: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if expanded != in_channels:
            layers.append(ConvBNAct(in_channels, expanded, 1, activation=activation))
        layers.append(ConvBNAct(expanded, expanded, kernel_size, stride, groups=expanded, activation=activation))
        if squeeze_excite:
            layers.append(SqueezeExcite(expanded))
        layers.append(ConvBNAct(expanded, out_channels, 1, activation=None))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


def mobilenetv2_tiny(num_classes: int, *, width: float = 1.0, dropout: float = 0.1,
                     in_channels: int = 3) -> Classifier:
    """MobileNetV2-style: inverted residuals (expansion 4), ReLU6, 16->96 channels."""
    # (expansion, channels, repeats, first stride)
    config = [(1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 2, 2), (4, 64, 2, 2), (4, 96, 1, 1)]
    channels = scaled(16, width)
    layers: list[nn.Module] = [ConvBNAct(in_channels, channels, 3, 1, activation=nn.ReLU6)]
    for expansion, out, repeats, stride in config:
        out_channels = scaled(out, width)
        for index in range(repeats):
            layers.append(InvertedResidual(channels, channels * expansion, out_channels, 3,
                                           stride if index == 0 else 1, nn.ReLU6, False))
            channels = out_channels
    last = scaled(256, max(1.0, width))
    layers.append(ConvBNAct(channels, last, 1, activation=nn.ReLU6))
    return Classifier(pooled(*layers), last, num_classes, dropout)


def mobilenetv3_small(num_classes: int, *, width: float = 1.0, dropout: float = 0.1,
                      in_channels: int = 3) -> Classifier:
    """MobileNetV3-Small-style: inverted residuals with squeeze-excite and hard-swish."""
    # (kernel, expanded, channels, squeeze-excite, activation, stride)
    config = [
        (3, 16, 16, True, nn.ReLU, 1), (3, 72, 24, False, nn.ReLU, 2), (3, 88, 24, False, nn.ReLU, 1),
        (5, 96, 40, True, nn.Hardswish, 2), (5, 240, 40, True, nn.Hardswish, 1),
        (5, 144, 48, True, nn.Hardswish, 2), (5, 288, 96, True, nn.Hardswish, 1),
    ]
    channels = scaled(16, width)
    layers: list[nn.Module] = [ConvBNAct(in_channels, channels, 3, 1, activation=nn.Hardswish)]
    for kernel, expanded, out, squeeze_excite, activation, stride in config:
        out_channels = scaled(out, width)
        layers.append(InvertedResidual(channels, scaled(expanded, width), out_channels, kernel, stride,
                                       activation, squeeze_excite))
        channels = out_channels
    last = scaled(288, width)
    layers.append(ConvBNAct(channels, last, 1, activation=nn.Hardswish))
    return Classifier(pooled(*layers), last, num_classes, dropout)


def register(registry: Registry[Callable[..., nn.Module]]) -> None:
    registry.add("mobilenetv2-tiny", mobilenetv2_tiny, "MobileNetV2-style inverted residuals, ReLU6")
    registry.add("mobilenetv3-small", mobilenetv3_small, "MobileNetV3-Small-style, squeeze-excite + hard-swish")
