"""`resnet-small`: a CIFAR-style ResNet with basic residual blocks in three stages."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from edgewise.core.plugins import Registry
from edgewise.studio.zoo._layers import Classifier, ConvBNAct, pooled, scaled


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(in_channels, out_channels, 3, stride)
        self.conv2 = ConvBNAct(out_channels, out_channels, 3, 1, activation=None)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = ConvBNAct(in_channels, out_channels, 1, stride, activation=None)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


def _resnet(num_classes: int, blocks: tuple[int, ...], width: float, dropout: float, in_channels: int) -> Classifier:
    widths = [scaled(16 * 2**stage, width) for stage in range(len(blocks))]
    layers: list[nn.Module] = [ConvBNAct(in_channels, widths[0])]
    channels = widths[0]
    for stage, (count, out_channels) in enumerate(zip(blocks, widths, strict=True)):
        for index in range(count):
            stride = 2 if stage > 0 and index == 0 else 1
            layers.append(BasicBlock(channels, out_channels, stride))
            channels = out_channels
    return Classifier(pooled(*layers), channels, num_classes, dropout)


def resnet_small(num_classes: int, *, width: float = 1.0, dropout: float = 0.0, in_channels: int = 3) -> Classifier:
    """ResNet-14 for small images: 3 stages x 2 basic blocks, 16/32/64 channels at width 1."""
    return _resnet(num_classes, (2, 2, 2), width, dropout, in_channels)


def resnet_tiny(num_classes: int, *, width: float = 1.0, dropout: float = 0.0, in_channels: int = 3) -> Classifier:
    """ResNet-8 for small images: 3 stages x 1 basic block."""
    return _resnet(num_classes, (1, 1, 1), width, dropout, in_channels)


def register(registry: Registry[Callable[..., nn.Module]]) -> None:
    registry.add("resnet-small", resnet_small, "ResNet-14 (basic residual blocks, 3 stages)")
    registry.add("resnet-tiny", resnet_tiny, "ResNet-8 (one basic residual block per stage)")
