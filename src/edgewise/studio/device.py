"""Choosing the torch device and thread count for training and evaluation."""

from __future__ import annotations

import torch

from edgewise.core.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when a GPU is present, else the CPU; asking for `cuda` without one is an error."""
    if name not in DEVICE_CHOICES:
        raise ConfigError(f"unknown device {name!r}", f"use one of: {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but no CUDA GPU is available",
                          "use --device cpu (or auto), or install a CUDA build of torch")
    return torch.device(name)


def set_threads(num_threads: int | None) -> None:
    """Limit torch's intra-op threads; `None` keeps torch's default."""
    if num_threads is None:
        return
    if num_threads < 1:
        raise ConfigError(f"num_threads must be at least 1, got {num_threads}", "use --threads 1 or more")
    torch.set_num_threads(num_threads)
