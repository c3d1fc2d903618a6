"""Standard optimisation test functions on discrete grids, for benchmarks and cheap tune runs.

Each function is minimised; its global minimum is 0. `grid_space(name, dims, levels)` builds the
matching Optuna space of ordinal int parameters x0..x{d-1}, each mapped onto the function's domain,
and `evaluate(name, params, levels)` scores a trial's params. `edgewise tune --objective ackley`
uses these instead of training, for smoke tests and for distributed/resume tests.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from optuna.distributions import BaseDistribution, IntDistribution

from edgewise.core.errors import ConfigError


def ackley(x: np.ndarray) -> float:
    d = len(x)
    return float(
        -20 * np.exp(-0.2 * np.sqrt(np.sum(x**2) / d)) - np.exp(np.sum(np.cos(2 * np.pi * x)) / d) + 20 + np.e
    )


def rastrigin(x: np.ndarray) -> float:
    return float(10 * len(x) + np.sum(x**2 - 10 * np.cos(2 * np.pi * x)))


def rosenbrock(x: np.ndarray) -> float:
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


def schwefel(x: np.ndarray) -> float:
    return float(418.9829 * len(x) - np.sum(x * np.sin(np.sqrt(np.abs(x)))))


def alpine(x: np.ndarray) -> float:
    return float(np.sum(np.abs(x * np.sin(x) + 0.1 * x)))


# Domains are shifted so the optimum is a grid point but not the grid's centre or corner.
FUNCTIONS: dict[str, tuple[Callable[[np.ndarray], float], float, float]] = {
    "ackley": (ackley, -32.768, 32.768 * 0.7),
    "rastrigin": (rastrigin, -5.12, 5.12 * 0.6),
    "rosenbrock": (rosenbrock, -2.048, 2.048),
    "schwefel": (schwefel, -500.0, 500.0),
    "alpine": (alpine, -10.0, 10.0 * 0.55),
}


def grid_space(dims: int, levels: int) -> dict[str, BaseDistribution]:
    return {f"x{i}": IntDistribution(0, levels - 1) for i in range(dims)}


def grid_point(name: str, indices: list[int], levels: int) -> np.ndarray:
    _, low, high = _lookup(name)
    return low + (high - low) * np.asarray(indices, dtype=float) / (levels - 1)


def evaluate(name: str, params: dict[str, int], levels: int) -> float:
    function, _, _ = _lookup(name)
    indices = [int(params[f"x{i}"]) for i in range(len(params))]
    return function(grid_point(name, indices, levels))


def grid_minimum(name: str, dims: int, levels: int) -> float:
    """Exact minimum over the grid (brute force on small grids; used to report regret)."""
    function, _, _ = _lookup(name)
    if levels**dims > 2_000_000:
        raise ConfigError(f"grid of {levels}^{dims} points is too large to enumerate")
    axes = np.indices([levels] * dims).reshape(dims, -1).T
    return float(min(function(grid_point(name, list(row), levels)) for row in axes))


def _lookup(name: str) -> tuple[Callable[[np.ndarray], float], float, float]:
    if name not in FUNCTIONS:
        raise ConfigError(f"unknown test function {name!r}", f"use one of: {', '.join(sorted(FUNCTIONS))}")
    return FUNCTIONS[name]
