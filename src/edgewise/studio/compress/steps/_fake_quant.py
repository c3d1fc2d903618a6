"""Fake-quantized weights for quantization-aware training (int8, ternary, binary).

A parametrization replaces each Conv/Linear weight by its quantized value in the forward pass;
the straight-through estimator lets gradients reach the float weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

QUANTIZED_LAYERS = (nn.Conv2d, nn.Linear)


def _straight_through(weight: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
    return weight + (quantized - weight).detach()


def _per_channel_abs_mean(weight: torch.Tensor) -> torch.Tensor:
    return weight.abs().flatten(1).mean(dim=1).view(-1, *([1] * (weight.dim() - 1)))


class FakeQuant(nn.Module):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return _straight_through(weight, self.exact(weight))

    def exact(self, weight: torch.Tensor) -> torch.Tensor:
        """The quantized weight itself (the STE sum w + (q - w) is not bit-exact q)."""
        if self.mode == "int8":
            scale = weight.abs().flatten(1).amax(dim=1).clamp(min=1e-8) / 127.0
            scale = scale.view(-1, *([1] * (weight.dim() - 1)))
            return torch.round(weight / scale).clamp(-127, 127) * scale
        if self.mode == "binary":
            return torch.sign(weight) * _per_channel_abs_mean(weight)
        threshold = 0.7 * _per_channel_abs_mean(weight)  # ternary weight networks (Li et al. 2016)
        mask = (weight.abs() > threshold).float()
        alpha = (weight.abs() * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp(min=1)
        return torch.sign(weight) * mask * alpha.view_as(threshold)


def quantized_layers(model: nn.Module, skip_first_and_last: bool) -> list[tuple[str, nn.Module]]:
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, QUANTIZED_LAYERS)]
    # First and last layers stay int8/float in binary/ternary nets: they hold most of the accuracy.
    return layers[1:-1] if skip_first_and_last and len(layers) > 2 else layers


def attach(model: nn.Module, mode: str) -> list[str]:
    names = []
    for name, layer in quantized_layers(model, skip_first_and_last=mode != "int8"):
        parametrize.register_parametrization(layer, "weight", FakeQuant(mode))
        names.append(name)
    return names


def bake(model: nn.Module) -> None:
    """Replace parametrized weights by their quantized values, so export sees plain layers."""
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            fake_quant = module.parametrizations.weight[0]
            with torch.no_grad():
                exact = fake_quant.exact(module.parametrizations.weight.original).clone()
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
            module.weight.data = exact


def write_packed(model: nn.Module, layer_names: list[str], mode: str, path: Path) -> int:
    """Store low-bit weights packed (1 bit binary, 2 bits ternary) plus per-channel scales."""
    modules = dict(model.named_modules())
    arrays: dict[str, np.ndarray] = {}
    for name in layer_names:
        weight = modules[name].weight.detach().cpu().numpy()
        flat = weight.reshape(weight.shape[0], -1)
        scales = np.abs(flat).max(axis=1)
        if mode == "binary":
            codes = (flat > 0).astype(np.uint8)
            arrays[f"{name}.bits"] = np.packbits(codes, axis=1)
        else:
            codes = (np.sign(flat) + 1).astype(np.uint8)  # -1,0,1 -> 0,1,2: two bits each
            padded = np.pad(codes, ((0, 0), (0, (-codes.shape[1]) % 4)))
            quads = padded.reshape(padded.shape[0], -1, 4)
            arrays[f"{name}.bits"] = (quads[..., 0] | quads[..., 1] << 2 | quads[..., 2] << 4 | quads[..., 3] << 6)
        arrays[f"{name}.scale"] = scales.astype(np.float32)
        arrays[f"{name}.shape"] = np.array(weight.shape)
    np.savez_compressed(path, **arrays)
    return path.stat().st_size
