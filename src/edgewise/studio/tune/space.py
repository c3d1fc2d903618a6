"""The search space file: which parameters a tune run may choose, and over which values.

A space is YAML with a `params` mapping (searched) and an optional `fixed` mapping (passed to
the objective unchanged)::

    params:
      lr: {type: float, low: 1.0e-4, high: 0.1, log: true}
      width: {type: float, low: 0.25, high: 1.0, step: 0.25}
      epochs: {type: int, low: 2, high: 8}
      optimizer: {type: categorical, choices: [sgd, adamw]}
    fixed:
      arch: tinycnn

Every error names the parameter and the file, so a typo is found without reading code.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgewise.core.errors import ConfigError
from edgewise.core.validation import Location, validate_as

CategoricalChoice = str | int | float | bool | None


class IntParam(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["int"]
    low: int
    high: int
    step: int = 1
    log: bool = False

    @model_validator(mode="after")
    def _check_bounds(self) -> IntParam:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        if self.step < 1:
            raise ValueError(f"step must be >= 1, got {self.step}")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("log scale needs low >= 1 and step 1")
        return self

    def distribution(self) -> BaseDistribution:
        return IntDistribution(self.low, self.high, log=self.log, step=self.step)


class FloatParam(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = None

    @model_validator(mode="after")
    def _check_bounds(self) -> FloatParam:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("low and high must be finite numbers")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got {self.low}")
        if self.step is not None and (self.step <= 0 or self.log):
            raise ValueError("step must be > 0 and cannot be combined with log")
        return self

    def distribution(self) -> BaseDistribution:
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)


class CategoricalParam(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["categorical"]
    choices: list[CategoricalChoice] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_unique(self) -> CategoricalParam:
        if len({repr(choice) for choice in self.choices}) != len(self.choices):
            raise ValueError("choices must be unique")
        return self

    def distribution(self) -> BaseDistribution:
        return CategoricalDistribution(self.choices)


Param = Annotated[IntParam | FloatParam | CategoricalParam, Field(discriminator="type")]
PARAM_TYPES = ("int", "float", "categorical")


class SearchSpace(BaseModel):
    """Parsed, validated search space; `distributions()` gives what Optuna samples from."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["train", "recipe"] = "train"  # recipe: trials choose compression steps (tune/recipe.py)
    params: dict[str, Param] = Field(min_length=1)
    fixed: dict[str, Any] = Field(default_factory=dict)

    def distributions(self) -> dict[str, BaseDistribution]:
        return {name: param.distribution() for name, param in self.params.items()}

    def grid(self, float_levels: int = 5) -> dict[str, list[Any]]:
        """Every parameter as a finite list of values, for the grid sampler."""
        from edgewise.studio.tune.samplers.discretize import discrete_values

        return {name: discrete_values(dist, float_levels) for name, dist in self.distributions().items()}


def parse_space(data: object, source: str = "<space>") -> SearchSpace:
    """Validate a mapping loaded from YAML; errors name the offending parameter."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: a search space must be a mapping with a 'params' key, got {type(data).__name__}",
            "see docs/tune.md for the format",
        )
    params = data.get("params")
    if not isinstance(params, dict) or not params:
        raise ConfigError(f"{source}: 'params' must be a non-empty mapping of name -> definition")
    for name, definition in params.items():
        _check_param_shape(source, str(name), definition)
    return validate_as(SearchSpace, data, source, fix="see docs/tune.md for the space format", where=_where,
                       first_only=True)


def _check_param_shape(source: str, name: str, definition: object) -> None:
    if not isinstance(definition, dict):
        raise ConfigError(f"{source}: parameter {name!r} must be a mapping with a 'type', got {definition!r}")
    kind = definition.get("type")
    if kind not in PARAM_TYPES:
        raise ConfigError(
            f"{source}: parameter {name!r} has unknown type {kind!r}", f"use one of: {', '.join(PARAM_TYPES)}"
        )


def _where(loc: Location) -> str:
    """`parameter 'lr' field 'low'` rather than pydantic's `params.lr.float.low`."""
    location = [str(part) for part in loc if str(part) not in PARAM_TYPES]
    if len(location) >= 2 and location[0] == "params":
        return f"parameter {location[1]!r}" + (f" field {'.'.join(location[2:])!r}" if location[2:] else "")
    return ".".join(location)


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search space YAML file."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"search space file {str(file)!r} does not exist", "pass --space PATH to a YAML file")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{file}: malformed YAML: {error}", "fix the YAML syntax at the line shown") from None
    return parse_space(data, str(file))
