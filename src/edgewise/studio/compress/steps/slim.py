"""`slim`: graph optimisation of the exported model (constant folding, Conv+BN and node fusion).

The optimised graph must give the same outputs: it is checked on real images and rejected if
any output moves by more than `tolerance`.
"""

from __future__ import annotations

import contextlib
import io
from typing import Literal

import numpy as np
import onnxruntime as ort
from pydantic import Field

from edgewise.core.errors import ModelError, RecipeError
from edgewise.studio.compress.measure import max_output_diff
from edgewise.studio.compress.state import CompressState
from edgewise.studio.compress.steps.base import Step, StepParams


class SlimParams(StepParams):
    backend: Literal["onnxslim", "ort"] = "onnxslim"
    tolerance: float = Field(1e-4, gt=0)


class Slim(Step):
    """Optimise the ONNX graph (onnxslim or ONNX Runtime's optimizer); outputs checked unchanged."""

    name = "slim"
    Params = SlimParams
    params: SlimParams
    needs_torch = False

    def apply(self, state: CompressState) -> CompressState:
        if state.onnx_path is None:
            raise RecipeError("step 'slim' has no exported model to work on")
        out = state.work_dir / "model.onnx"
        if self.params.backend == "onnxslim":
            import onnxslim

            with contextlib.redirect_stdout(io.StringIO()):  # onnxslim prints a summary table
                onnxslim.slim(str(state.onnx_path), str(out))
        else:
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            options.optimized_model_filepath = str(out)
            ort.InferenceSession(str(state.onnx_path), options, providers=["CPUExecutionProvider"])
        images = _sample_images(state)
        diff = max_output_diff(state.onnx_path, out, images)
        if diff > self.params.tolerance:
            raise ModelError(f"step 'slim' changed the model's outputs (max abs diff {diff:.2e} > "
                             f"{self.params.tolerance})", "use backend 'ort' or drop the slim step")
        state.details["slim_max_abs_diff"] = diff
        state.notes.append(f"{self.params.backend} graph optimisation; outputs unchanged (max abs diff {diff:.1e})")
        state.onnx_path = out
        state.torch_current = state.torch_current and state.precision == "fp32"
        return state


def _sample_images(state: CompressState) -> np.ndarray:
    for images, _ in state.data.test:
        return np.asarray(images, dtype=np.float32)[:16]
    raise ModelError("no test images to check the slimmed model against")
