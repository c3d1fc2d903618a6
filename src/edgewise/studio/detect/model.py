"""The zoo's detector family: an anchor-free single-stage detector in the NanoDet / YOLOX line.

    backbone (inverted residuals, strides 8/16/32) -> PAN neck (top-down, then bottom-up)
    -> one head per level: depthwise-separable convs -> C class logits + 4 box distances

Every feature-map cell is a point; a point predicts its class scores and the distances from its
centre to the box's left, top, right and bottom edges, in units of its stride (softplus keeps
them positive). `forward` returns the raw head `(B, N, 4 + C)` over all points, level by level;
`decode` turns it into boxes in input pixels and class probabilities. Only Conv/BN/activation,
nearest upsampling and elementwise ops are used, so it exports to ONNX, quantizes and prunes.
Sizes: `nano` (~0.3 M parameters, trains on the traffic sample in minutes on 2 CPU cores),
`small` and `medium` (wider and deeper, for a GPU or longer runs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from edgewise.core.errors import ConfigError
from edgewise.core.plugins import Registry
from edgewise.studio.zoo._layers import ConvBNAct, scaled
from edgewise.studio.zoo.mobilenet import InvertedResidual

STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class DetectorSize:
    width: float  # backbone and neck channel multiplier
    neck: int  # channels of every pyramid level
    depth: int  # inverted residual blocks per backbone stage after the first
    head_convs: int  # depthwise-separable convs per head


SIZES = {
    "nano": DetectorSize(width=0.75, neck=48, depth=1, head_convs=2),
    "small": DetectorSize(width=1.0, neck=64, depth=2, head_convs=2),
    "medium": DetectorSize(width=1.5, neck=96, depth=3, head_convs=3),
}


class Backbone(nn.Module):
    """Stem (stride 4) then three stages giving the stride 8, 16 and 32 feature maps."""

    def __init__(self, width: float, depth: int, in_channels: int = 3) -> None:
        super().__init__()
        c1, c2 = scaled(16, width), scaled(24, width)
        self.stem = nn.Sequential(
            ConvBNAct(in_channels, c1, 3, 2, activation=nn.ReLU6),
            InvertedResidual(c1, c1 * 2, c2, 3, 2, nn.ReLU6, False),
            InvertedResidual(c2, c2 * 3, c2, 3, 1, nn.ReLU6, False),
        )
        self.stages = nn.ModuleList()
        self.channels: list[int] = []
        channels = c2
        for out in (40, 80, 128):
            out_channels = scaled(out, width)
            blocks: list[nn.Module] = [InvertedResidual(channels, channels * 4, out_channels, 3, 2, nn.ReLU6, False)]
            blocks += [InvertedResidual(out_channels, out_channels * 4, out_channels, 3, 1, nn.ReLU6, False)
                       for _ in range(depth)]
            self.stages.append(nn.Sequential(*blocks))
            self.channels.append(out_channels)
            channels = out_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def separable(channels: int) -> nn.Sequential:
    return nn.Sequential(ConvBNAct(channels, channels, 3, groups=channels, activation=nn.ReLU6),
                         ConvBNAct(channels, channels, 1, activation=nn.ReLU6))


class PAN(nn.Module):
    """Path aggregation: 1x1 to `neck` channels, top-down sum with upsampling, bottom-up sum."""

    def __init__(self, in_channels: list[int], neck: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(ConvBNAct(c, neck, 1, activation=nn.ReLU6) for c in in_channels)
        self.top_down = nn.ModuleList(separable(neck) for _ in in_channels[:-1])
        self.down = nn.ModuleList(ConvBNAct(neck, neck, 3, 2, groups=neck, activation=None) for _ in in_channels[:-1])
        self.bottom_up = nn.ModuleList(separable(neck) for _ in in_channels[:-1])

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        levels = [lateral(f) for lateral, f in zip(self.lateral, features, strict=True)]
        for index in range(len(levels) - 2, -1, -1):
            upsampled = F.interpolate(levels[index + 1], size=levels[index].shape[-2:], mode="nearest")
            levels[index] = self.top_down[index](levels[index] + upsampled)
        for index in range(1, len(levels)):
            levels[index] = self.bottom_up[index - 1](levels[index] + self.down[index - 1](levels[index - 1]))
        return levels


class Head(nn.Module):
    def __init__(self, neck: int, num_classes: int, convs: int) -> None:
        super().__init__()
        self.tower = nn.Sequential(*(separable(neck) for _ in range(convs)))
        self.classes = nn.Conv2d(neck, num_classes, 1)
        self.box = nn.Conv2d(neck, 4, 1)
        # Start every class near the prior of a rare foreground (RetinaNet's init): the first
        # steps then learn boxes instead of fighting a flood of background loss.
        nn.init.constant_(self.classes.bias, -4.6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tower(x)
        return torch.cat([self.box(x), self.classes(x)], dim=1)


class Detector(nn.Module):
    """Raw head `(B, N, 4 + C)`: per point, 4 box distances (stride units, before softplus) then
    C class logits; points level by level (strides 8, 16, 32), row-major within a level."""

    def __init__(self, num_classes: int, size: DetectorSize, in_channels: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = Backbone(size.width, size.depth, in_channels)
        self.neck = PAN(self.backbone.channels, size.neck)
        self.heads = nn.ModuleList(Head(size.neck, num_classes, size.head_convs) for _ in STRIDES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = self.neck(self.backbone(x))
        outputs = [head(level).flatten(2) for head, level in zip(self.heads, levels, strict=True)]
        return torch.cat(outputs, dim=2).transpose(1, 2)


def points(height: int, width: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(centres (N, 2) in input pixels, stride (N,)) of every point of an input of that size,
    in the order `Detector.forward` emits them."""
    centres, strides = [], []
    for stride in STRIDES:
        rows, cols = -(-height // stride), -(-width // stride)
        ys, xs = torch.meshgrid(torch.arange(rows, device=device), torch.arange(cols, device=device), indexing="ij")
        centres.append(torch.stack([xs, ys], dim=-1).reshape(-1, 2).float().add(0.5).mul(stride))
        strides.append(torch.full((rows * cols,), float(stride), device=device))
    return torch.cat(centres), torch.cat(strides)


def decode(raw: torch.Tensor, centres: torch.Tensor, strides: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw head -> (boxes (B, N, 4) x1 y1 x2 y2 in input pixels, class probabilities (B, N, C))."""
    distances = F.softplus(raw[..., :4]) * strides[:, None]
    boxes = torch.cat([centres - distances[..., :2], centres + distances[..., 2:]], dim=-1)
    return boxes, torch.sigmoid(raw[..., 4:])


class DecodedDetector(nn.Module):
    """The detector with decode in the graph, for export: `(1, N, 4 + C)` rows of
    [x1, y1, x2, y2, score per class] for an input of fixed size. Only each point's best class
    keeps its score (the others are 0): a point is one object, so NMS in the graph and the
    agent's own decode (best class per row) keep the same boxes."""

    def __init__(self, detector: Detector, height: int, width: int) -> None:
        super().__init__()
        self.detector = detector
        centres, strides = points(height, width)
        self.register_buffer("centres", centres)
        self.register_buffer("strides", strides)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        boxes, scores = decode(self.detector(x), self.centres, self.strides)
        best = scores.amax(dim=-1, keepdim=True)
        return torch.cat([boxes, scores * (scores >= best).to(scores.dtype)], dim=-1)


DetectorFactory = Callable[..., Detector]
DETECTORS: Registry[DetectorFactory] = Registry("detector architecture")
for _name, _size in SIZES.items():
    DETECTORS.add(f"detector-{_name}", lambda classes, _s=_size, **kw: Detector(classes, _s, **kw),
                  f"anchor-free single-stage detector, {_name} ({_size.neck}-channel PAN)")


def create_detector(arch: str, num_classes: int) -> Detector:
    factory = DETECTORS.get(arch)
    if num_classes < 1:
        raise ConfigError("a detector needs at least 1 class", "list the classes in the dataset's annotations")
    return factory(num_classes)
