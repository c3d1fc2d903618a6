"""The tensor-train sampler: exact TT math, convergence vs random, determinism, Optuna storages."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import optuna
import pytest

from edgewise.core.errors import ConfigError
from edgewise.studio.tune.samplers import SAMPLERS, TensorTrainSampler, create_sampler
from edgewise.studio.tune.samplers.tt_distribution import TTDistribution
from edgewise.studio.tune.testfunctions import evaluate, grid_space

optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_tt(levels: list[int], seed: int = 0) -> TTDistribution:
    return TTDistribution.near_uniform(levels, rank=3, rng=np.random.default_rng(seed), noise=0.5)


def test_tt_log_likelihood_matches_the_full_tensor_and_its_gradient_matches_finite_differences() -> None:
    tt = make_tt([3, 4, 2, 5])
    full = tt.probabilities()
    assert full.sum() == pytest.approx(1.0)
    points = np.array([[0, 1, 1, 4], [2, 3, 0, 0], [1, 0, 1, 2]])
    log_likelihood, grads = tt.log_likelihood_and_gradient(points)
    assert log_likelihood == pytest.approx(np.mean([np.log(full[tuple(p)]) for p in points]))
    for core_index, entry in [(0, (0, 2, 1)), (2, (1, 0, 2)), (3, (2, 4, 0))]:
        tt.cores[core_index][entry] += 1e-6
        shifted, _ = tt.log_likelihood_and_gradient(points)
        tt.cores[core_index][entry] -= 1e-6
        assert (shifted - log_likelihood) / 1e-6 == pytest.approx(grads[core_index][entry], rel=1e-3, abs=1e-6)


def test_tt_samples_follow_the_distribution() -> None:
    tt = make_tt([3, 4, 2])
    samples = tt.sample(np.random.default_rng(1), 5000)
    counts = np.zeros(tt.levels)
    np.add.at(counts, tuple(samples.T), 1)
    assert np.abs(counts / len(samples) - tt.probabilities()).max() < 0.03


def test_likelihood_ascent_concentrates_mass_on_the_elite() -> None:
    tt = make_tt([6, 6, 6, 6])
    elite = np.array([[1, 2, 3, 4], [1, 2, 3, 5]])
    before = tt.probabilities()[1, 2, 3, 4]
    from edgewise.studio.tune.samplers.tt_distribution import Adam

    optimizer = Adam([c.shape for c in tt.cores], lr=0.05)
    for _ in range(100):
        _, grads = tt.log_likelihood_and_gradient(elite)
        optimizer.ascend(tt.cores, grads)
    after = tt.probabilities()
    assert after[1, 2, 3, 4] > 20 * before
    assert after[1, 2, 3, 4] + after[1, 2, 3, 5] > 0.5


def best_value(sampler: optuna.samplers.BaseSampler, function: str, dims: int, levels: int, trials: int,
               storage: optuna.storages.BaseStorage | str | None = None) -> tuple[float, list[dict[str, int]]]:
    space = grid_space(dims, levels)
    study = optuna.create_study(sampler=sampler, storage=storage)
    study.optimize(lambda t: evaluate(function, {n: t.suggest_int(n, 0, levels - 1) for n in space}, levels),
                   n_trials=trials)
    return study.best_value, [t.params for t in study.trials]


def test_tt_beats_random_on_a_discrete_test_function() -> None:
    space = grid_space(5, 10)
    tt = [best_value(TensorTrainSampler(space, seed=s), "rastrigin", 5, 10, 80)[0] for s in range(4)]
    rnd = [best_value(optuna.samplers.RandomSampler(seed=s), "rastrigin", 5, 10, 80)[0] for s in range(4)]
    assert statistics.median(tt) < statistics.median(rnd)


def test_tt_is_deterministic_by_seed() -> None:
    space = grid_space(4, 8)
    _, first = best_value(TensorTrainSampler(space, seed=3), "ackley", 4, 8, 25)
    _, again = best_value(TensorTrainSampler(space, seed=3), "ackley", 4, 8, 25)
    _, other = best_value(TensorTrainSampler(space, seed=4), "ackley", 4, 8, 25)
    assert first == again
    assert first != other


def test_tt_works_with_rdb_storage_and_rebuilds_its_state_from_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    space = grid_space(3, 6)
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(study_name="s", storage=storage, sampler=TensorTrainSampler(space, seed=0))
    objective = lambda t: evaluate("ackley", {n: t.suggest_int(n, 0, 5) for n in space}, 6)  # noqa: E731
    study.optimize(objective, n_trials=15)
    # A fresh sampler (a resumed run, another worker) rebuilds the same distribution from storage.
    resumed = optuna.load_study(study_name="s", storage=url, sampler=TensorTrainSampler(space, seed=0))
    resumed.optimize(objective, n_trials=5)
    assert len(resumed.trials) == 20
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in resumed.trials)
    continued = optuna.create_study(sampler=TensorTrainSampler(space, seed=0))
    continued.optimize(objective, n_trials=20)
    assert [t.params for t in continued.trials] == [t.params for t in resumed.trials]


def test_tt_infers_the_space_when_none_is_given_and_handles_categoricals() -> None:
    sampler = TensorTrainSampler(seed=0)
    study = optuna.create_study(sampler=sampler, direction="maximize")

    def objective(trial: optuna.Trial) -> float:
        kind = trial.suggest_categorical("kind", ["a", "b", "c"])
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        return (kind == "b") - abs(np.log10(lr) + 2)

    study.optimize(objective, n_trials=40)
    assert study.best_params["kind"] == "b"
    assert study.best_value > -0.5


def test_tt_multi_objective_ranks_by_pareto_front() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=TensorTrainSampler(seed=0))

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_int("x", 0, 9)
        y = trial.suggest_int("y", 0, 9)
        return float(x + y), float(abs(x - y))

    study.optimize(objective, n_trials=40)
    assert len(study.best_trials) >= 1
    assert max(t.values[0] for t in study.best_trials) >= 16


def test_every_registered_sampler_runs() -> None:
    space = grid_space(2, 4)
    for name in SAMPLERS.names():
        value, params = best_value(create_sampler(name, space, seed=0), "ackley", 2, 4, 6)
        assert len(params) == 6, name


def test_unknown_sampler_is_a_config_error_listing_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        create_sampler("annealing", grid_space(2, 4))
    assert "unknown sampler 'annealing'" in caught.value.message
    assert "tt" in caught.value.fix


def test_bad_tt_settings_are_rejected() -> None:
    with pytest.raises(ConfigError):
        TensorTrainSampler(rank=0)
    with pytest.raises(ConfigError):
        TensorTrainSampler(elite_from="batch", batch_size=2, elite_size=5)


def test_tt_conditional_matches_the_full_tensor() -> None:
    tt = make_tt([3, 4, 5])
    full = tt.probabilities()
    point = np.array([2, 1, 3])
    expected = full[2, :, 3] / full[2, :, 3].sum()
    assert np.allclose(tt.conditional(point, 1), expected)
