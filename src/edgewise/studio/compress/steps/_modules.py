"""Swapping submodules by dotted name (decompose and separable rebuild layers in place)."""

from __future__ import annotations

from torch import nn


def replace_module(model: nn.Module, dotted_name: str, new: nn.Module) -> None:
    parent_name, _, child = dotted_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
