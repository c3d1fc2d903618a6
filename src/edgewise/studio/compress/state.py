"""What flows from one compression step to the next."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

ModelPrecision = Literal["fp32", "fp16", "int8", "int8-mixed", "int4", "binary", "ternary"]


@dataclass
class DataBundle:
    """The data a step may use: loaders over train/val/test and the class names."""

    train: Iterable
    val: Iterable
    test: Iterable
    classes: list[str]


@dataclass
class CompressState:
    """The model as it stands: a torch module (while torch steps can still run) and its ONNX file.

    `torch_current` is False once an ONNX-only step (e.g. int8 PTQ) has changed the model, so
    torch steps after it would silently undo that work; the recipe validator forbids that order.
    """

    model: torch.nn.Module | None
    onnx_path: Path | None
    image_size: int
    data: DataBundle
    teacher: torch.nn.Module | None
    work_dir: Path
    precision: ModelPrecision = "fp32"
    torch_current: bool = True
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    input_shape: list[int] | None = None  # batch-1 input shape; None: [1, 3, image_size, image_size]

    @property
    def sample_shape(self) -> list[int]:
        return self.input_shape or [1, 3, self.image_size, self.image_size]
