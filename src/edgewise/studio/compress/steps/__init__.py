"""Compression steps, one module each; importing this package registers them all in STEPS."""

from edgewise.studio.compress.steps import decompose, distill, prune, quantize, separable, slim
from edgewise.studio.compress.steps.base import STEPS, Step, StepParams

__all__ = ["STEPS", "Step", "StepParams", "decompose", "distill", "prune", "quantize", "separable", "slim"]
