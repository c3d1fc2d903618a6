"""The `Step` plug-in point: one compression technique, configured by a strict params model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from edgewise.studio.compress.state import CompressState


class StepParams(BaseModel):
    """Base of every step's parameters; unknown keys are rejected so typos never pass silently."""

    model_config = ConfigDict(extra="forbid")


class Step(ABC):
    """A compression technique. `apply` takes the state and returns the changed state.

    `needs_torch`: the step changes torch weights, so it must run before any ONNX-only step.
    """

    name: ClassVar[str]
    Params: ClassVar[type[StepParams]]
    needs_torch: ClassVar[bool] = True

    def __init__(self, params: StepParams) -> None:
        self.params = params

    def needs_torch_for(self) -> bool:
        """Whether this configured step needs the torch model (some modes work on ONNX alone)."""
        return self.needs_torch

    def output_precision(self) -> str | None:
        """The precision this configured step leaves the model in; None: it keeps the one it got."""
        return None

    def leaves_onnx_only(self) -> bool:
        """Whether only ONNX steps may follow (the torch weights no longer describe the model)."""
        return False

    def takes_accuracy_budget(self) -> bool:
        """Whether `--max-drop` applies to this configured step (it has a `max_drop` parameter)."""
        return False

    @abstractmethod
    def apply(self, state: CompressState) -> CompressState:
        """Run the technique; record what happened in `state.notes` / `state.details`."""


