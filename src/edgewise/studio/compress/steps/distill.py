"""`distill`: knowledge distillation with soft labels and temperature.

Alone with `student` it trains a smaller zoo architecture from the teacher (the original model
by default); without `student` it fine-tunes the current model against the teacher, which is
how prune / decompose / separable recover accuracy.
"""

from __future__ import annotations

from pydantic import Field

from edgewise.core.errors import ModelError, RecipeError
from edgewise.studio.compress.state import CompressState
from edgewise.studio.compress.steps.base import Step, StepParams
from edgewise.studio.compress.training import fine_tune


class DistillParams(StepParams):
    student: str | None = Field(None, description="zoo architecture to train from the teacher; None: current model")
    epochs: int = Field(5, ge=1)
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.7, ge=0, le=1, description="weight of the soft-label loss")
    lr: float = Field(1e-3, gt=0)


class Distill(Step):
    """Knowledge distillation from the teacher into a zoo student or the current model."""

    name = "distill"
    Params = DistillParams
    params: DistillParams

    def apply(self, state: CompressState) -> CompressState:
        p = self.params
        if state.teacher is None:
            raise RecipeError("step 'distill' has no teacher model", "start compression from a torch checkpoint")
        if p.student is not None:
            state.model = _zoo_student(p.student, len(state.data.classes))
            state.notes.append(f"new student {p.student!r} trained from scratch by distillation")
        elif state.model is None or not state.torch_current:
            raise RecipeError("step 'distill' needs the torch model", "put distill before quantize/slim")
        fine_tune(state.model, state.data.train, epochs=p.epochs, lr=p.lr, teacher=state.teacher,
                  temperature=p.temperature, alpha=p.alpha, desc="distill")
        state.notes.append(f"distilled {p.epochs} epoch(s), T={p.temperature}, alpha={p.alpha}")
        state.torch_current = True
        state.onnx_path = None
        return state


def _zoo_student(arch: str, num_classes: int):
    try:
        from edgewise.studio.zoo import create_model
    except ImportError as error:
        raise ModelError("the model zoo (edgewise.studio.zoo) is not available") from error
    return create_model(arch, num_classes)
