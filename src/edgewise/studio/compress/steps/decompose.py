"""`decompose`: low-rank factorization — truncated SVD for Linear/1x1 conv, Tucker-2 for kxk conv.

Rank comes from `params_ratio` (targeted layers keep at most that fraction of their params) or
from `energy` (fraction of the squared singular values kept), then the model is fine-tuned.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import tensorly as tl
import torch
from pydantic import Field, model_validator
from tensorly.decomposition import partial_tucker
from torch import nn

from edgewise.core.errors import RecipeError
from edgewise.studio.compress.state import CompressState
from edgewise.studio.compress.steps._modules import count_params, replace_module
from edgewise.studio.compress.steps.base import Step, StepParams
from edgewise.studio.compress.training import fine_tune


class DecomposeParams(StepParams):
    layers: Literal["linear", "conv", "all"] = "all"
    params_ratio: float | None = Field(None, gt=0, lt=1)
    energy: float | None = Field(None, gt=0, le=1)
    min_channels: int = Field(8, ge=1, description="layers with fewer input or output channels are left alone")
    fine_tune_epochs: int = Field(3, ge=0)
    distill: bool = True
    lr: float = Field(1e-3, gt=0)

    @model_validator(mode="after")
    def _one_rank_rule(self) -> DecomposeParams:
        if (self.params_ratio is None) == (self.energy is None):
            raise ValueError("set exactly one of params_ratio or energy")
        return self


def _rank_for_energy(singular_values: np.ndarray, energy: float) -> int:
    cumulative = np.cumsum(singular_values**2) / np.sum(singular_values**2)
    return int(np.searchsorted(cumulative, energy) + 1)


def _svd_factors(matrix: torch.Tensor, p: DecomposeParams) -> tuple[torch.Tensor, torch.Tensor] | None:
    out_dim, in_dim = matrix.shape
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    if p.params_ratio is not None:
        rank = int(p.params_ratio * out_dim * in_dim / (out_dim + in_dim))
    else:
        rank = _rank_for_energy(s.numpy(), float(p.energy))
    if rank < 1 or rank * (out_dim + in_dim) >= out_dim * in_dim:
        return None
    root = s[:rank].sqrt()
    return u[:, :rank] * root, root[:, None] * vh[:rank]


def _decompose_linear(layer: nn.Linear, p: DecomposeParams) -> nn.Module | None:
    factors = _svd_factors(layer.weight.detach(), p)
    if factors is None:
        return None
    left, right = factors
    first = nn.Linear(layer.in_features, right.shape[0], bias=False)
    second = nn.Linear(right.shape[0], layer.out_features, bias=layer.bias is not None)
    first.weight.data, second.weight.data = right.clone(), left.clone()
    if layer.bias is not None:
        second.bias.data = layer.bias.detach().clone()
    return nn.Sequential(first, second)


def _decompose_pointwise(layer: nn.Conv2d, p: DecomposeParams) -> nn.Module | None:
    factors = _svd_factors(layer.weight.detach()[:, :, 0, 0], p)
    if factors is None:
        return None
    left, right = factors
    first = nn.Conv2d(layer.in_channels, right.shape[0], 1, stride=layer.stride, bias=False)
    second = nn.Conv2d(right.shape[0], layer.out_channels, 1, bias=layer.bias is not None)
    first.weight.data, second.weight.data = right[:, :, None, None].clone(), left[:, :, None, None].clone()
    if layer.bias is not None:
        second.bias.data = layer.bias.detach().clone()
    return nn.Sequential(first, second)


def _tucker_ranks(layer: nn.Conv2d, weight: np.ndarray, p: DecomposeParams) -> tuple[int, int]:
    c_out, c_in, kh, kw = weight.shape
    if p.params_ratio is not None:
        # Same fraction t of both channel dims: c_in^2 t + c_out^2 t + c_in c_out k t^2 = ratio * c_in c_out k
        a, b, c = c_in * c_out * kh * kw, c_in * c_in + c_out * c_out, -p.params_ratio * c_in * c_out * kh * kw
        t = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
        return max(1, int(t * c_out)), max(1, int(t * c_in))
    energy = float(p.energy)
    s_out = np.linalg.svd(weight.reshape(c_out, -1), compute_uv=False)
    s_in = np.linalg.svd(weight.transpose(1, 0, 2, 3).reshape(c_in, -1), compute_uv=False)
    return _rank_for_energy(s_out, energy), _rank_for_energy(s_in, energy)


def _decompose_conv(layer: nn.Conv2d, p: DecomposeParams) -> nn.Module | None:
    weight = layer.weight.detach().numpy()
    rank_out, rank_in = _tucker_ranks(layer, weight, p)
    kh, kw = layer.kernel_size
    new_params = layer.in_channels * rank_in + rank_in * rank_out * kh * kw + rank_out * layer.out_channels
    if new_params >= weight.size:
        return None
    tl.set_backend("numpy")
    result = partial_tucker(weight, rank=[rank_out, rank_in], modes=[0, 1], init="svd", n_iter_max=50)
    core, (factor_out, factor_in) = result[0] if isinstance(result[0], tuple) else result
    first = nn.Conv2d(layer.in_channels, rank_in, 1, bias=False)
    middle = nn.Conv2d(rank_in, rank_out, layer.kernel_size, stride=layer.stride, padding=layer.padding,
                       dilation=layer.dilation, bias=False)
    last = nn.Conv2d(rank_out, layer.out_channels, 1, bias=layer.bias is not None)
    first.weight.data = torch.from_numpy(np.ascontiguousarray(factor_in.T[:, :, None, None])).float()
    middle.weight.data = torch.from_numpy(np.ascontiguousarray(core)).float()
    last.weight.data = torch.from_numpy(np.ascontiguousarray(factor_out[:, :, None, None])).float()
    if layer.bias is not None:
        last.bias.data = layer.bias.detach().clone()
    return nn.Sequential(first, middle, last)


class Decompose(Step):
    """Low-rank factorization: SVD for linear layers, Tucker-2 for convolutions, then fine-tune."""

    name = "decompose"
    Params = DecomposeParams
    params: DecomposeParams

    def apply(self, state: CompressState) -> CompressState:
        p = self.params
        if state.model is None or not state.torch_current:
            raise RecipeError("step 'decompose' needs the torch model", "put decompose before quantize/slim")
        model = state.model
        before = after = 0
        changed: list[str] = []
        for name, layer in list(model.named_modules()):
            new = self._factorize(layer)
            if new is None:
                continue
            before += count_params(layer)
            after += count_params(new)
            replace_module(model, name, new)
            changed.append(name)
        if not changed:
            raise RecipeError(f"step 'decompose' found no {p.layers} layer that a lower rank would shrink",
                              "lower params_ratio/energy or target other layers")
        ratio = after / before
        state.details.update(decomposed_layers=changed, targeted_params_before=before,
                             targeted_params_after=after, targeted_params_ratio=round(ratio, 4))
        rule = f"params_ratio {p.params_ratio}" if p.params_ratio is not None else f"energy {p.energy}"
        state.notes.append(f"decomposed {len(changed)} layer(s) ({rule}): their params {before} -> {after} "
                           f"({ratio:.2f}x)")
        fine_tune(model, state.data.train, epochs=p.fine_tune_epochs, lr=p.lr,
                  teacher=state.teacher if p.distill else None, desc="decompose fine-tune")
        state.onnx_path = None
        return state

    def _factorize(self, layer: nn.Module) -> nn.Module | None:
        p = self.params
        if isinstance(layer, nn.Linear) and p.layers in ("linear", "all"):
            if min(layer.in_features, layer.out_features) >= p.min_channels:
                return _decompose_linear(layer, p)
        if isinstance(layer, nn.Conv2d) and p.layers in ("conv", "all") and layer.groups == 1:
            if min(layer.in_channels, layer.out_channels) < p.min_channels:
                return None
            if layer.kernel_size == (1, 1):
                return _decompose_pointwise(layer, p)
            return _decompose_conv(layer, p)
        return None
