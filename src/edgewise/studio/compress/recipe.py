"""Recipes: an ordered list of compression steps with parameters, read from YAML.

    name: balanced
    description: prune to half the MACs, distill, then int8
    steps:
      - prune: {method: channel, target_macs_ratio: 0.5}
      - distill: {epochs: 3}
      - quantize: {mode: ptq-static, max_drop: 1.0}

Validation errors name the step (by position and name) and the field.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from edgewise.core.errors import RecipeError
from edgewise.core.validation import Location, validate_as
from edgewise.studio.compress.steps import STEPS, Step

BUILTIN_PACKAGE = "edgewise.studio.compress.recipes"


class StepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: str
    params: dict[str, Any] = Field(default_factory=dict)


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    steps: list[StepSpec] = Field(min_length=1)

    def build(self) -> list[Step]:
        """Instantiate every step, validating params and order; raises RecipeError."""
        built: list[Step] = []
        for position, spec in enumerate(self.steps, start=1):
            if spec.step not in STEPS:
                raise RecipeError(f"recipe {self.name!r} step {position}: unknown step {spec.step!r}",
                                  f"use one of: {', '.join(STEPS.names())}")
            step_class = STEPS.get(spec.step)
            params = validate_as(step_class.Params, spec.params, f"recipe {self.name!r} step {position} ({spec.step})",
                                 error=RecipeError, fix=f"see the `{spec.step}` parameters in docs/compress.md",
                                 where=_field)
            built.append(step_class(params))
        _check_order(self.name, built)
        return built

    def final_precision(self) -> str:
        """The precision the recipe will produce, known before anything runs (as each step declares it)."""
        precision = "fp32"
        for step in self.build():
            precision = step.output_precision() or precision
        return precision


def _field(loc: Location) -> str:
    return f"field {'.'.join(str(item) for item in loc) or 'params'!r}"


def _check_order(recipe_name: str, steps: list[Step]) -> None:
    onnx_only_from: str | None = None
    for position, step in enumerate(steps, start=1):
        if onnx_only_from is not None and step.needs_torch_for():
            raise RecipeError(
                f"recipe {recipe_name!r} step {position} ({step.name}) changes torch weights but comes after "
                f"{onnx_only_from}, which produced an ONNX-only model",
                "put prune/decompose/distill/separable/qat before post-training quantization",
            )
        if step.leaves_onnx_only():
            onnx_only_from = f"step {position} ({step.name})"


def parse_recipe(data: object, source: str) -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {source} must be a mapping with name and steps")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list):
        raise RecipeError(f"recipe {source}: 'steps' must be a list of steps")
    steps = []
    for position, item in enumerate(raw_steps, start=1):
        if isinstance(item, str):
            steps.append({"step": item})
        elif isinstance(item, dict) and "step" in item:
            steps.append({"step": item["step"], "params": {k: v for k, v in item.items() if k != "step"}})
        elif isinstance(item, dict) and len(item) == 1:
            (name, params), = item.items()
            if params is not None and not isinstance(params, dict):
                raise RecipeError(f"recipe {source} step {position} ({name}): params must be a mapping")
            steps.append({"step": name, "params": params or {}})
        else:
            raise RecipeError(f"recipe {source} step {position}: write it as `- STEP: {{param: value}}`")
    return validate_as(Recipe, {**data, "steps": steps, "name": data.get("name", source)}, f"recipe {source}",
                       error=RecipeError, where=_field)


def builtin_recipes() -> dict[str, Recipe]:
    recipes = {}
    for entry in sorted(resources.files(BUILTIN_PACKAGE).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            recipe = parse_recipe(yaml.safe_load(entry.read_text()), entry.name)
            recipes[recipe.name] = recipe
    return recipes


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A built-in recipe by name, or a YAML file; validated (steps built) before returning."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise RecipeError(f"recipe file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise RecipeError(f"recipe {path} is not valid YAML: {error}") from None
        recipe = parse_recipe(data, str(path))
    else:
        known = builtin_recipes()
        if str(name_or_path) not in known:
            raise RecipeError(f"unknown recipe {str(name_or_path)!r}",
                              f"use a YAML file or one of: {', '.join(known)}")
        recipe = known[str(name_or_path)]
    recipe.build()
    return recipe
