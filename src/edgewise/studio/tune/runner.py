"""One tune worker: open (or join) the study and run trials until the study holds `trials` of them.

`trials` is the study's total, not this worker's share: two workers with `--trials 20` on one
PostgreSQL study finish 20 trials between them, and a rerun after a crash only runs what is left.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.distributions import BaseDistribution
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from edgewise.studio.tune.samplers import create_sampler
from edgewise.studio.tune.study import open_study

COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class TuneRequest:
    study_name: str
    storage: str | None
    sampler: str
    trials: int
    directions: list[str]
    seed: int | None = None
    pruner: str = "median"


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    from edgewise.core.errors import ConfigError

    if name == "median":
        # Small CNNs often sit at chance for the first epoch or two: judging them at epoch 1 prunes
        # trials that would have been good (seen on the parts sample), so wait two epochs.
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2)
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    raise ConfigError(f"unknown pruner {name!r}", "use one of: median, hyperband, none")


def counted_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=COUNTED_STATES))


def run_tune(
    request: TuneRequest,
    space: dict[str, BaseDistribution],
    objective: Callable[[optuna.Trial], float | tuple[float, ...]],
    *,
    show_progress: bool = True,
) -> optuna.Study:
    """Run this worker's share of the study; returns the study (all workers' trials)."""
    sampler = create_sampler(request.sampler, space, seed=request.seed, objectives=len(request.directions))
    pruner = make_pruner(request.pruner) if len(request.directions) == 1 else None
    study = open_study(request.study_name, request.storage, directions=request.directions,
                       sampler=sampler, pruner=pruner)
    remaining = request.trials - counted_trials(study)
    if remaining <= 0:
        return study
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(
        objective,
        n_trials=remaining,
        callbacks=[MaxTrialsCallback(request.trials, states=COUNTED_STATES)],
        catch=(),
        show_progress_bar=show_progress,
        gc_after_trial=True,
    )
    return study


def default_out_root(study_name: str) -> Path:
    return Path("runs") / "tune" / study_name
