"""Compression steps, one module each, and the registry of them all (built here, explicitly)."""

from edgewise.core.plugins import Registry
from edgewise.studio.compress.steps.base import Step, StepParams
from edgewise.studio.compress.steps.decompose import Decompose
from edgewise.studio.compress.steps.distill import Distill
from edgewise.studio.compress.steps.prune import Prune
from edgewise.studio.compress.steps.quantize import Quantize
from edgewise.studio.compress.steps.separable import Separable
from edgewise.studio.compress.steps.slim import Slim

STEPS: Registry[type[Step]] = Registry.of("compression step", {
    step.name: step for step in (Decompose, Distill, Prune, Quantize, Separable, Slim)})

__all__ = ["STEPS", "Step", "StepParams"]
