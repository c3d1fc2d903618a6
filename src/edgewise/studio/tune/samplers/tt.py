"""Tensor-train sampler: PROTES-style probabilistic optimisation over the discretised space.

Implements the method of

    A. Batsulina, A. Chertkov, G. Ryzhakov, I. Oseledets, "PROTES: Probabilistic Optimization
    with Tensor Sampling", NeurIPS 2023 (arXiv:2301.12162),

which builds on the tensor-train black-box optimiser TTOpt (K. Sozykin, A. Chertkov, R. Schutski,
A.-H. Phan, A. Cichocki, I. Oseledets, "TTOpt: A Maximum Volume Quantized Tensor Train-based
Optimization and its Application to Reinforcement Learning", NeurIPS 2022).

Every parameter is discretised (categoricals as is, ints by value, floats on a linear or log grid),
so the space is a d-dimensional grid. A probability distribution over that grid is held in TT
format (`TTDistribution`, rank r, O(d n r^2) numbers instead of n^d). Trials are drawn from it in
generations of `batch_size`; after each generation the `elite_size` best trials become targets of
`gradient_steps` Adam steps of gradient ascent on their log-likelihood, so mass moves towards good
regions while the low-rank structure shares what was learned across the whole grid.

Adapted to hyperparameter budgets (tens to hundreds of trials, where PROTES uses 100 samples per
iteration over 10^4+ evaluations): by default a generation is one trial and the elite is the top 5
of all trials so far (`elite_from="all"`), and with probability `local_moves` a trial is the best
point so far with one coordinate redrawn from the TT conditional p(x_k | x_-k) mixed 50/50 with
uniform; grid points already tried are not proposed again. `benchmarks/tune.py` measures these
defaults against grid, random and TPE.

The distribution is a pure function of the seed and of the finished trials (sorted by number),
so any worker, or a resumed run, rebuilds it from the Optuna storage: it works with RDB storages,
pruners (pruned trials count as the worst) and the dashboard like any Optuna sampler.
Multi-objective studies rank trials by Pareto front (ties broken by the mean per-objective rank),
or by a weighted sum when `objective_weights` is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from edgewise.core.errors import ConfigError
from edgewise.studio.tune.samplers.discretize import discrete_values, nearest_index
from edgewise.studio.tune.samplers.tt_distribution import Adam, TTDistribution


class TensorTrainSampler(BaseSampler):
    """Optuna sampler drawing from a tensor-train distribution fitted to the elite trials."""

    def __init__(
        self,
        search_space: dict[str, BaseDistribution] | None = None,
        *,
        rank: int = 4,
        batch_size: int = 1,
        elite_size: int = 5,
        learning_rate: float = 0.03,
        gradient_steps: int = 1,
        elite_from: str = "all",
        float_levels: int = 16,
        avoid_duplicates: bool = True,
        local_moves: float = 0.7,
        objective_weights: Sequence[float] | None = None,
        seed: int | None = None,
    ) -> None:
        if rank < 1 or batch_size < 1 or elite_size < 1 or gradient_steps < 1:
            raise ConfigError("tt sampler needs rank, batch_size, elite_size and gradient_steps >= 1")
        if elite_from == "batch" and elite_size > batch_size:
            raise ConfigError("tt sampler with elite_from='batch' needs elite_size <= batch_size")
        if elite_from not in ("all", "batch"):
            raise ConfigError(f"tt sampler elite_from must be 'all' or 'batch', got {elite_from!r}")
        self._explicit_space = dict(search_space) if search_space else None
        self.rank, self.batch_size, self.elite_size = rank, batch_size, elite_size
        self.learning_rate, self.gradient_steps, self.elite_from = learning_rate, gradient_steps, elite_from
        self.float_levels, self.avoid_duplicates = float_levels, avoid_duplicates
        self.local_moves = local_moves
        self.objective_weights = list(objective_weights) if objective_weights else None
        self._seed = int(seed) if seed is not None else int(np.random.SeedSequence().entropy % 2**31)
        self._fallback = RandomSampler(seed=self._seed)
        self._intersection = IntersectionSearchSpace(include_pruned=True)
        self._cache: _FitCache | None = None

    # --- optuna BaseSampler interface -------------------------------------------------------------
    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if self._explicit_space is not None:
            return dict(self._explicit_space)
        return {name: dist for name, dist in self._intersection.calculate(study).items() if not dist.single()}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        names = sorted(search_space)
        grids = [discrete_values(search_space[name], self.float_levels) for name in names]
        distribution, points, scores = self._fitted(study, names, grids)
        rng = np.random.default_rng([self._seed, trial.number])
        seen = self._seen_points(study, names, grids) if self.avoid_duplicates else set()
        point = None
        if len(points) >= self.batch_size and rng.random() < self.local_moves:
            point = _local_move(distribution, rng, points[int(np.argmax(scores))], seen)
        if point is None:
            point = _unseen_point(distribution, rng, seen, [len(g) for g in grids])
        return {name: grid[int(index)] for name, grid, index in zip(names, grids, point, strict=True)}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def reseed_rng(self) -> None:
        self._fallback.reseed_rng()

    # --- fitting ------------------------------------------------------------------------------------
    def _fitted(
        self, study: optuna.Study, names: list[str], grids: list[list[Any]]
    ) -> tuple[TTDistribution, np.ndarray, np.ndarray]:
        finished = _finished_trials(study, names)
        points = np.array(
            [[nearest_index(grid, t.params[n]) for n, grid in zip(names, grids, strict=True)] for t in finished],
            dtype=np.int64,
        ).reshape(len(finished), len(names))
        scores = self._scores(study, finished)
        key_prefix = (tuple(names), tuple(len(g) for g in grids))
        trial_keys = [(t.number, float(s)) for t, s in zip(finished, scores, strict=True)]
        generations = len(finished) // self.batch_size
        cache = self._cache
        if cache is None or cache.space_key != key_prefix or trial_keys[: cache.used] != cache.trial_keys:
            rng = np.random.default_rng(self._seed)
            tt = TTDistribution.near_uniform([len(g) for g in grids], self.rank, rng)
            cache = _FitCache(key_prefix, tt, Adam([c.shape for c in tt.cores], self.learning_rate), 0, [])
        while cache.used // self.batch_size < generations:
            end = cache.used + self.batch_size
            start = 0 if self.elite_from == "all" else cache.used
            self._ascend(cache, points[start:end], scores[start:end])
            cache.used = end
            cache.trial_keys = trial_keys[:end]
        self._cache = cache
        return cache.distribution, points, scores

    def _ascend(self, cache: _FitCache, points: np.ndarray, scores: np.ndarray) -> None:
        order = np.argsort(-scores, kind="stable")[: self.elite_size]
        elite = points[order]
        for _ in range(self.gradient_steps):
            _, grads = cache.distribution.log_likelihood_and_gradient(elite)
            cache.optimizer.ascend(cache.distribution.cores, grads)
        cache.distribution.normalise()

    def _scores(self, study: optuna.Study, trials: list[FrozenTrial]) -> np.ndarray:
        """Higher is better; pruned trials score below every finished one."""
        if not trials:
            return np.zeros(0)
        signs = np.array([1.0 if d == StudyDirection.MAXIMIZE else -1.0 for d in study.directions])
        complete = [t.state == TrialState.COMPLETE and t.values is not None for t in trials]
        values = np.array([t.values if ok else [np.nan] * len(signs) for t, ok in zip(trials, complete, strict=True)])
        oriented = values * signs
        if len(signs) == 1:
            scores = oriented[:, 0]
        elif self.objective_weights is not None:
            if len(self.objective_weights) != len(signs):
                raise ConfigError(f"tt sampler has {len(self.objective_weights)} weights for {len(signs)} objectives")
            scores = oriented @ np.array(self.objective_weights)
        else:
            scores = _pareto_scores(oriented)
        floor = np.nanmin(scores) - 1.0 if np.any(np.isfinite(scores)) else 0.0
        return np.where(np.isfinite(scores), scores, floor)

    def _seen_points(self, study: optuna.Study, names: list[str], grids: list[list[Any]]) -> set[tuple[int, ...]]:
        seen = set()
        for trial in study.get_trials(deepcopy=False):
            if all(name in trial.params for name in names):
                seen.add(tuple(nearest_index(g, trial.params[n]) for n, g in zip(names, grids, strict=True)))
        return seen


def _unseen_point(
    distribution: TTDistribution, rng: np.random.Generator, seen: set[tuple[int, ...]], levels: list[int]
) -> np.ndarray:
    """A draw not evaluated before: redraw a few times, then mutate one coordinate at a time.

    A grid point already evaluated teaches nothing new; once the distribution has concentrated,
    redraws repeat it, so we move one coordinate to a random level: a search around the mode.
    """
    point = distribution.sample(rng)[0]
    for _ in range(10):
        if tuple(int(i) for i in point) not in seen:
            return point
        point = distribution.sample(rng)[0]
    for _ in range(200):
        if tuple(int(i) for i in point) not in seen:
            return point
        axis = int(rng.integers(len(levels)))
        point = point.copy()
        point[axis] = int(rng.integers(levels[axis]))
    return point


def _local_move(
    distribution: TTDistribution, rng: np.random.Generator, best: np.ndarray, seen: set[tuple[int, ...]]
) -> np.ndarray | None:
    """Change one coordinate of the best point, drawn from the TT conditional p(x_k | x_-k).

    Half of the conditional's mass is spread uniformly so moves still explore; None when every
    tried neighbour was already evaluated.
    """
    for _ in range(20):
        axis = int(rng.integers(len(best)))
        conditional = distribution.conditional(best, axis)
        probs = 0.5 * conditional + 0.5 / len(conditional)
        probs[best[axis]] = 0.0
        if probs.sum() <= 0:
            continue
        candidate = best.copy()
        candidate[axis] = int(rng.choice(len(probs), p=probs / probs.sum()))
        if tuple(int(i) for i in candidate) not in seen:
            return candidate
    return None


class _FitCache:
    """The distribution fitted so far and which trials it has seen (to extend it incrementally)."""

    def __init__(
        self, space_key: tuple[Any, ...], distribution: TTDistribution, optimizer: Adam, used: int,
        trial_keys: list[tuple[int, float]],
    ) -> None:
        self.space_key, self.distribution, self.optimizer = space_key, distribution, optimizer
        self.used, self.trial_keys = used, trial_keys


def _finished_trials(study: optuna.Study, names: list[str]) -> list[FrozenTrial]:
    states = (TrialState.COMPLETE, TrialState.PRUNED)
    trials = [t for t in study.get_trials(deepcopy=False, states=states) if all(n in t.params for n in names)]
    return sorted(trials, key=lambda t: t.number)


def _pareto_scores(oriented: np.ndarray) -> np.ndarray:
    """Minus the Pareto front index (0 = non-dominated), plus a tie-break in (0, 1) by mean rank."""
    count = len(oriented)
    valid = np.all(np.isfinite(oriented), axis=1)
    front = np.full(count, np.nan)
    remaining = set(np.flatnonzero(valid).tolist())
    level = 0
    while remaining:
        current = [
            i for i in remaining
            if not any(np.all(oriented[j] >= oriented[i]) and np.any(oriented[j] > oriented[i]) for j in remaining)
        ]
        for i in current:
            front[i] = level
            remaining.discard(i)
        level += 1
    ranks = np.argsort(np.argsort(np.where(valid[:, None], oriented, -np.inf), axis=0), axis=0)
    tie_break = ranks.mean(axis=1) / max(count, 1)
    return np.where(valid, -front + 0.5 * tie_break, np.nan)
