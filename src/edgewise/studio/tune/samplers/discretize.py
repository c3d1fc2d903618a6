"""Turn Optuna distributions into finite lists of values (for grid and tensor-train sampling)."""

from __future__ import annotations

from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from edgewise.core.errors import ConfigError

# An int range wider than this is thinned to this many levels; keeps TT cores small.
MAX_INT_LEVELS = 32


def discrete_values(dist: BaseDistribution, float_levels: int = 16) -> list[Any]:
    """The finite set of values a discrete sampler chooses from for one parameter."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution):
        return _int_values(dist)
    if isinstance(dist, FloatDistribution):
        return _float_values(dist, float_levels)
    raise ConfigError(f"cannot discretize distribution {dist!r}")


def _int_values(dist: IntDistribution) -> list[int]:
    values = list(range(dist.low, dist.high + 1, dist.step))
    if len(values) <= MAX_INT_LEVELS:
        return values
    if dist.log:
        grid = np.geomspace(dist.low, dist.high, MAX_INT_LEVELS)
    else:
        grid = np.linspace(dist.low, dist.high, MAX_INT_LEVELS)
    snapped = {dist.low + round((float(v) - dist.low) / dist.step) * dist.step for v in grid}
    return sorted(min(max(v, dist.low), dist.high) for v in snapped)


def _float_values(dist: FloatDistribution, float_levels: int) -> list[float]:
    if dist.low == dist.high:
        return [dist.low]
    if dist.step is not None:
        count = int(round((dist.high - dist.low) / dist.step)) + 1
        if count <= max(float_levels, MAX_INT_LEVELS):
            return [float(dist.low + i * dist.step) for i in range(count)]
    if dist.log:
        return [float(v) for v in np.geomspace(dist.low, dist.high, float_levels)]
    return [float(v) for v in np.linspace(dist.low, dist.high, float_levels)]


def nearest_index(values: list[Any], value: Any) -> int:
    """Index of `value` (or the closest numeric level) in `values`."""
    for index, candidate in enumerate(values):
        if candidate == value and type(candidate) is type(value):
            return index
    for index, candidate in enumerate(values):
        if candidate == value:
            return index
    try:
        numeric = np.asarray(values, dtype=float)
        return int(np.argmin(np.abs(numeric - float(value))))
    except (TypeError, ValueError):
        return 0
