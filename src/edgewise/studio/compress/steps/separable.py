"""`separable`: swap standard kxk convolutions for depthwise-separable blocks, then distill.

The efficient-architecture route (MobileNet): a kxk conv of C_in -> C_out costs k^2 C_in C_out
MACs per pixel; depthwise + pointwise costs k^2 C_in + C_in C_out.
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from edgewise.core.errors import RecipeError
from edgewise.studio.compress.state import CompressState
from edgewise.studio.compress.steps._modules import count_params, replace_module
from edgewise.studio.compress.steps.base import Step, StepParams
from edgewise.studio.compress.training import fine_tune


class SeparableParams(StepParams):
    min_channels: int = Field(16, ge=1, description="convs with fewer input channels stay standard")
    epochs: int = Field(5, ge=0)
    temperature: float = Field(4.0, gt=0)
    lr: float = Field(2e-3, gt=0)


def separable_block(conv: nn.Conv2d) -> nn.Sequential:
    depthwise = nn.Conv2d(conv.in_channels, conv.in_channels, conv.kernel_size, stride=conv.stride,
                          padding=conv.padding, dilation=conv.dilation, groups=conv.in_channels, bias=False)
    pointwise = nn.Conv2d(conv.in_channels, conv.out_channels, 1, bias=conv.bias is not None)
    return nn.Sequential(depthwise, nn.BatchNorm2d(conv.in_channels), nn.ReLU(inplace=True), pointwise)


class Separable(Step):
    """Replace kxk convolutions with depthwise-separable blocks and recover accuracy by distillation."""

    name = "separable"
    Params = SeparableParams
    params: SeparableParams

    def apply(self, state: CompressState) -> CompressState:
        if state.model is None or not state.torch_current:
            raise RecipeError("step 'separable' needs the torch model", "put separable before quantize/slim")
        model = state.model
        swapped, before, after = [], 0, 0
        for name, layer in list(model.named_modules()):
            if (isinstance(layer, nn.Conv2d) and layer.groups == 1 and layer.kernel_size != (1, 1)
                    and layer.in_channels >= self.params.min_channels):
                block = separable_block(layer)
                before, after = before + count_params(layer), after + count_params(block)
                replace_module(model, name, block)
                swapped.append(name)
        if not swapped:
            raise RecipeError("step 'separable' found no standard kxk convolution to replace",
                              "lower min_channels or skip this step for this architecture")
        state.details.update(separable_layers=swapped, swapped_params_before=before, swapped_params_after=after)
        state.notes.append(f"{len(swapped)} conv(s) made depthwise-separable: their params {before} -> {after}")
        fine_tune(model, state.data.train, epochs=self.params.epochs, lr=self.params.lr, teacher=state.teacher,
                  temperature=self.params.temperature, desc="separable distill")
        state.onnx_path = None
        return state
