"""The sampler family: `grid`, `random`, `tpe` (Optuna's) and `tt` (our tensor-train sampler).

`create_sampler(name, space, seed=..., objectives=...)` builds any of them; an unknown name raises
a ConfigError listing the known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from edgewise.core.plugins import Registry
from edgewise.studio.tune.samplers.discretize import discrete_values
from edgewise.studio.tune.samplers.tt import TensorTrainSampler

SamplerFactory = Callable[[dict[str, BaseDistribution], int | None, int], optuna.samplers.BaseSampler]

def _grid(space: dict[str, BaseDistribution], seed: int | None, objectives: int) -> optuna.samplers.BaseSampler:
    grid: dict[str, Any] = {name: discrete_values(dist, float_levels=5) for name, dist in space.items()}
    return optuna.samplers.GridSampler(grid, seed=seed)


def _random(space: dict[str, BaseDistribution], seed: int | None, objectives: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


def _tpe(space: dict[str, BaseDistribution], seed: int | None, objectives: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=10)


def _tt(space: dict[str, BaseDistribution], seed: int | None, objectives: int) -> optuna.samplers.BaseSampler:
    return TensorTrainSampler(space, seed=seed)


SAMPLERS: Registry[SamplerFactory] = Registry.of("sampler", {
    "grid": (_grid, "every combination of the discretised space, in shuffled order"),
    "random": (_random, "independent uniform draws"),
    "tpe": (_tpe, "Optuna's tree-structured Parzen estimator (multivariate)"),
    "tt": (_tt, "tensor-train distribution fitted to elite trials (PROTES)"),
})


def create_sampler(
    name: str, space: dict[str, BaseDistribution], *, seed: int | None = None, objectives: int = 1
) -> optuna.samplers.BaseSampler:
    """Build the named sampler for `space` (unknown names raise ConfigError)."""
    return SAMPLERS.get(name)(space, seed, objectives)


__all__ = ["SAMPLERS", "TensorTrainSampler", "create_sampler"]
