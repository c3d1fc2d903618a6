"""`edgewise tune best`: export the chosen trial's model (checkpoint + ONNX) to a folder.

Without `--trial`, the best feasible trial (single objective) is chosen; a multi-objective study
needs `--trial N` picked from the Pareto set, unless the set has a single member.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from edgewise.core.errors import ConfigError, ModelError
from edgewise.studio.tune.results import best_trials


@dataclass(frozen=True)
class ExportedTrial:
    trial_number: int
    checkpoint_path: Path | None
    onnx_path: Path
    params_path: Path


def choose_trial(study: optuna.Study, trial_number: int | None) -> optuna.trial.FrozenTrial:
    if trial_number is not None:
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if trial.number == trial_number:
                return trial
        raise ConfigError(f"study {study.study_name!r} has no completed trial {trial_number}",
                          "pick a number from `edgewise tune report`")
    best = best_trials(study)
    if not best:
        raise ConfigError(f"study {study.study_name!r} has no completed feasible trial", "run more trials")
    if len(best) > 1:
        numbers = ", ".join(str(t.number) for t in best)
        raise ConfigError(f"study {study.study_name!r} has {len(best)} Pareto-optimal trials ({numbers})",
                          "choose one with --trial N")
    return best[0]


def export_best(study: optuna.Study, out_dir: Path, trial_number: int | None = None) -> ExportedTrial:
    """Copy the trial's checkpoint and ONNX model (exporting the checkpoint when the trial kept none)."""
    trial = choose_trial(study, trial_number)
    checkpoint_source = _existing(trial.user_attrs.get("checkpoint_path"))
    onnx_source = _existing(trial.user_attrs.get("onnx_path"))
    if checkpoint_source is None and onnx_source is None:
        raise ModelError(
            f"trial {trial.number} has no model file on this machine",
            "run `tune best` where the trial ran, or share the runs folder between workers",
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / "model.pt"
    onnx_path = out_dir / "model.onnx"
    if checkpoint_source is not None:
        shutil.copyfile(checkpoint_source, checkpoint)
    if onnx_source is not None:  # the measured (possibly compressed) model itself
        shutil.copyfile(onnx_source, onnx_path)
    else:
        from edgewise.studio.checkpoints import load_checkpoint
        from edgewise.studio.tune.measure import measure_model

        loaded = load_checkpoint(checkpoint)
        image_size = int(trial.user_attrs.get("image_size") or loaded.image_size or 32)
        measure_model(loaded.model, onnx_path, image_size)
    params_path = out_dir / "trial.json"
    params_path.write_text(json.dumps({
        "study": study.study_name, "trial": trial.number, "values": trial.values, "params": trial.params,
        "user_attrs": trial.user_attrs,
    }, indent=2, default=str))
    return ExportedTrial(trial.number, checkpoint if checkpoint.exists() else None, onnx_path, params_path)


def _existing(path: object) -> Path | None:
    return Path(str(path)) if path and Path(str(path)).is_file() else None
