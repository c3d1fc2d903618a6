"""The `Step` plug-in point: one compression technique, configured by a strict params model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from edgewise.core.plugins import Registry
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

    @abstractmethod
    def apply(self, state: CompressState) -> CompressState:
        """Run the technique; record what happened in `state.notes` / `state.details`."""


STEPS: Registry[type[Step]] = Registry("compression step")
