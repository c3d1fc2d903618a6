"""Compression for a named target: quantize, prune, decompose, distill, separable, slim.

    from edgewise.studio.compress import run_compression
    report = run_compression("best.pt", "data/parts", "rpi4", "balanced", "out/compress")
"""

from edgewise.studio.compress.inputs import InputModel, load_input_model
from edgewise.studio.compress.pipeline import RunOptions, run_compression
from edgewise.studio.compress.recipe import Recipe, builtin_recipes, load_recipe, parse_recipe
from edgewise.studio.compress.report import SCHEMA, CompressionReport, StepRecord, load_report
from edgewise.studio.compress.state import CompressState, DataBundle
from edgewise.studio.compress.steps import STEPS, Step, StepParams
from edgewise.studio.compress.targetcheck import TargetCheck, check_model

__all__ = [
    "SCHEMA", "STEPS", "CompressState", "CompressionReport", "DataBundle", "InputModel", "Recipe", "RunOptions",
    "Step", "StepParams", "StepRecord", "TargetCheck", "builtin_recipes", "check_model", "load_input_model",
    "load_recipe", "load_report", "parse_recipe", "run_compression",
]
