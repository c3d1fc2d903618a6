"""Tuning real (tiny) training runs: pruning fed by per-epoch accuracy, multi-objective with a
target constraint, report, and `tune best` exporting checkpoint + ONNX."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import optuna
import pytest

from edgewise.core.errors import ConfigError
from edgewise.studio.tune.objective import TrainingObjective, parse_constraint, parse_objectives
from edgewise.studio.tune.space import parse_space

pytestmark = pytest.mark.slow

QUICK_SPACE = """
params:
  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
  width: {type: categorical, choices: [0.5, 1.0]}
fixed:
  arch: cnn-small
  epochs: 1
  batch_size: 64
  image_size: 16
  augment: false
  num_threads: 2
"""


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgewise.studio.samples import write_sample

    return write_sample("digits", tmp_path_factory.mktemp("digits"), size=150, seed=0, image_size=16)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgewise", "tune", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_tune_then_best_exports_a_checkpoint_and_a_working_onnx(digits_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text(QUICK_SPACE)
    result = run_cli("--data", str(digits_dir), "--space", "space.yaml", "--sampler", "tt", "--trials", "2",
                     "--storage", "t.db", "--study", "quick", "--seed", "0", "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trials = optuna.load_study(study_name="quick", storage=f"sqlite:///{tmp_path / 't.db'}").trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert all(0.0 <= t.value <= 1.0 for t in trials)
    assert all(t.intermediate_values == {1: t.value} for t in trials)  # per-epoch val accuracy was reported

    best = run_cli("best", "--study", "quick", "--storage", "t.db", "--out", "best", cwd=tmp_path)
    assert best.returncode == 0, best.stderr
    session = ort.InferenceSession(str(tmp_path / "best" / "model.onnx"))
    assert session.get_inputs()[0].shape[1:] == [3, 16, 16]
    assert (tmp_path / "best" / "model.pt").stat().st_size > 0
    chosen = json.loads((tmp_path / "best" / "trial.json").read_text())
    assert chosen["values"] == [max(t.value for t in trials)]


def test_pruner_stops_a_poor_trial_from_on_epoch(digits_dir: Path, tmp_path: Path) -> None:
    space = parse_space({"params": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2}},
                         "fixed": {"arch": "cnn-small", "epochs": 3, "image_size": 16, "augment": False}})
    objective = TrainingObjective(space, digits_dir, tmp_path / "runs", objectives=["acc"], num_threads=2)

    class AlwaysPrune(optuna.pruners.BasePruner):
        def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            return True

    study = optuna.create_study(direction="maximize", pruner=AlwaysPrune())
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [1]  # stopped after the first epoch, not all three


def test_multi_objective_with_a_target_constraint_marks_infeasible_trials(digits_dir: Path, tmp_path: Path) -> None:
    space = parse_space({"params": {"width": {"type": "categorical", "choices": [0.5, 1.0]}},
                         "fixed": {"arch": "cnn-small", "epochs": 1, "image_size": 16, "augment": False}})
    constraint = parse_constraint("rpi4:latency<=0.000001")  # impossible: every trial breaks it
    objective = TrainingObjective(space, digits_dir, tmp_path / "runs", objectives=["acc", "size"],
                                  constraint=constraint, num_threads=2)
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.values[1] == pytest.approx(trial.user_attrs["size_mb"])
    assert trial.user_attrs["feasible"] is False
    assert trial.user_attrs["constraint_value"] > 0
    assert Path(trial.user_attrs["onnx_path"]).is_file()
    from edgewise.studio.tune.results import best_trials

    assert best_trials(study) == []


@pytest.mark.parametrize("text", ["rpi4:latency<50", "latency<=fast", "nosuchboard:latency<=5", "energy<=3"])
def test_bad_constraints_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_constraint(text)


def test_objective_names_are_checked() -> None:
    assert parse_objectives("acc,latency") == ["acc", "latency"]
    with pytest.raises(ConfigError):
        parse_objectives("acc,speed")


@pytest.fixture(scope="module")
def trained_checkpoint(digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgewise.studio.train import TrainConfig, train

    config = TrainConfig(arch="cnn-small", epochs=1, image_size=16, augment=False, num_threads=2)
    return train(config, digits_dir, tmp_path_factory.mktemp("base"), progress=False).checkpoint_path


def test_recipe_search_scores_compressed_models_and_prunes_rejected_recipes(
    digits_dir: Path, trained_checkpoint: Path, tmp_path: Path
) -> None:
    from edgewise.studio.tune.recipe import RecipeObjective, recipe_from_params

    assert [s.step for s in recipe_from_params(
        {"use.prune": True, "use.quantize": True, "order": "quantize>prune"}, {}, "r").steps] == ["quantize", "prune"]
    space = parse_space({
        "kind": "recipe",
        "params": {"quantize.mode": {"type": "categorical", "choices": ["dynamic", "int4"]}},
        "fixed": {"model": str(trained_checkpoint), "target": "rpi4", "use.quantize": True},
    })
    objective = RecipeObjective(space, digits_dir, tmp_path / "runs", objectives=["acc", "latency"], latency_runs=5)
    grid = optuna.samplers.GridSampler({"quantize.mode": ["dynamic", "int4"]}, seed=0)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=grid)
    study.optimize(objective, n_trials=2)
    by_mode = {t.params["quantize.mode"]: t for t in study.trials}
    # rpi4 has no int4: that recipe is rejected (pruned, reason kept) and the study goes on.
    assert by_mode["int4"].state == optuna.trial.TrialState.PRUNED
    assert "int4" in by_mode["int4"].user_attrs["rejected"]
    done = by_mode["dynamic"]
    assert done.state == optuna.trial.TrialState.COMPLETE
    assert 0.0 <= done.values[0] <= 100.0 and done.values[1] > 0
    assert done.user_attrs["recipe"] == ["quantize{'mode': 'dynamic'}"]
    assert Path(done.user_attrs["onnx_path"]).is_file()


def test_recipe_space_needs_a_model_a_target_and_known_steps(digits_dir: Path, tmp_path: Path) -> None:
    from edgewise.studio.tune.recipe import RecipeObjective

    space = parse_space({"kind": "recipe", "params": {"use.slim": {"type": "categorical", "choices": [True]}}})
    with pytest.raises(ConfigError, match="fixed.model"):
        RecipeObjective(space, digits_dir, tmp_path, objectives=["acc"])
    bad = parse_space({"kind": "recipe", "params": {"use.slim": {"type": "categorical", "choices": [True]}},
                       "fixed": {"model": "m.pt", "target": "rpi4", "shrink.factor": 2}})
    with pytest.raises(ConfigError, match="unknown compression steps"):
        RecipeObjective(bad, digits_dir, tmp_path, objectives=["acc"])


def test_a_recipe_space_over_an_onnx_model_needs_its_card_before_any_trial(digits_dir: Path, tmp_path: Path) -> None:
    from edgewise.studio.tune.recipe import RecipeObjective
    from tests.registry.bundles import tiny_onnx

    bare = tiny_onnx(tmp_path / "vendor.onnx", card=False)
    params = {"use.slim": {"type": "categorical", "choices": [True]}}
    space = parse_space({"kind": "recipe", "params": params, "fixed": {"model": str(bare), "target": "rpi4"}})
    with pytest.raises(ConfigError, match="no model card"):
        RecipeObjective(space, digits_dir, tmp_path, objectives=["acc"])
    carded = tiny_onnx(tmp_path / "other.onnx")  # its card is written beside it
    card = tmp_path / "given.card.yaml"
    card.write_text((tmp_path / "other.card.yaml").read_text())
    given = parse_space({"kind": "recipe", "params": params,
                         "fixed": {"model": str(bare), "target": "rpi4", "card": str(card)}})
    assert RecipeObjective(given, digits_dir, tmp_path, objectives=["acc"]).card == card.resolve()
    assert carded.is_file()
