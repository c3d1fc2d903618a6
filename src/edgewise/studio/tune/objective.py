"""What a trial optimises: train with the sampled config, report per-epoch val accuracy for pruning,
and optionally measure the exported model for the edge objectives and a hard constraint.

Objectives: `acc` (maximise best val accuracy), `latency` (minimise MEASURED host latency of the
exported ONNX, ms), `size` (minimise ONNX size, MB). Constraint: `[TARGET:]METRIC<=VALUE`, e.g.
`rpi4:latency<=50` (ESTIMATED on the catalog target), `latency<=5` (host) or `size<=4` (MB).
A trial that breaks the constraint is kept but marked `feasible = False`; results and `tune best`
only choose feasible trials, and the tt sampler never uses them as elites.

`TestFunctionObjective` replaces training by a discrete test function (for smoke tests,
benchmarks and the distributed/resume tests).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from edgewise.core.errors import ConfigError
from edgewise.core.validation import describe_validation
from edgewise.studio.tune.space import SearchSpace
from edgewise.studio.tune.study import worker_id
from edgewise.studio.tune.testfunctions import evaluate, grid_space

OBJECTIVES = {"acc": "maximize", "accuracy": "maximize", "latency": "minimize", "size": "minimize"}
_CONSTRAINT = re.compile(r"^\s*(?:(?P<target>[\w.-]+)\s*:)?\s*(?P<metric>latency|size)\s*<=\s*(?P<limit>[\d.]+)\s*$")


@dataclass(frozen=True)
class Constraint:
    metric: str  # "latency" (ms) or "size" (MB)
    limit: float
    target: str | None = None  # None: measured on this host

    def value(self, measure: Any) -> float:
        if self.metric == "size":
            return float(measure.size_mb)
        if self.target:
            return float(measure.target_latency_ms(self.target))
        return float(measure.host_latency_ms)


def parse_objectives(text: str) -> list[str]:
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in OBJECTIVES]
    if not names or unknown:
        raise ConfigError(f"unknown objective(s) {unknown or text!r}", "use a comma list of: acc, latency, size")
    return ["acc" if name == "accuracy" else name for name in names]


def parse_constraint(text: str | None) -> Constraint | None:
    if not text:
        return None
    match = _CONSTRAINT.match(text)
    if match is None:
        raise ConfigError(f"cannot parse constraint {text!r}", "write e.g. rpi4:latency<=50, latency<=5 or size<=4")
    target = match["target"]
    if target:
        from edgewise.core.targets import get_target

        get_target(target)  # unknown target -> ConfigError listing the catalog
        if match["metric"] == "size":
            target = None
    return Constraint(match["metric"], float(match["limit"]), target)


def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, list(dist.choices))  # type: ignore[arg-type]
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    raise ConfigError(f"parameter {name!r}: unsupported distribution {dist!r}")


def _is_detection(data_dir: Path) -> bool:
    return any((Path(data_dir) / split / "annotations.json").is_file() for split in ("train", "val"))


class TrainingObjective:
    """Train one model per trial with `edgewise.studio.train.train`; returns the objective values.

    On a detection dataset (COCO per split) each trial trains a detector with
    `studio.detect.train.train_detector` and `acc` is its best val mAP@[.5:.95]."""

    def __init__(
        self, space: SearchSpace, data_dir: Path, out_root: Path, *, objectives: list[str],
        constraint: Constraint | None = None, num_threads: int | None = None, progress: bool = False,
    ) -> None:
        from edgewise.studio.detect.train import DetectTrainConfig
        from edgewise.studio.train import TrainConfig

        self.space, self.data_dir, self.out_root = space, Path(data_dir), Path(out_root).resolve()
        self.objectives, self.constraint, self.progress = objectives, constraint, progress
        self.num_threads = num_threads
        self.detection = _is_detection(self.data_dir)
        self.config_type: Any = DetectTrainConfig if self.detection else TrainConfig
        unknown = sorted((set(space.params) | set(space.fixed)) - set(self.config_type.model_fields))
        if unknown:
            raise ConfigError(
                f"search space names {unknown} are not training settings",
                f"use fields of {self.config_type.__name__}: {', '.join(sorted(self.config_type.model_fields))}",
            )
        if self.detection and (set(objectives) - {"acc"} or constraint is not None):
            raise ConfigError("latency and size objectives are not measured for detectors yet",
                              "tune detectors on --objective acc (val mAP@[.5:.95]); compress the best one after")

    def config_for(self, params: dict[str, Any]) -> Any:
        from pydantic import ValidationError

        values = {**self.space.fixed, **params}
        if self.num_threads is not None:
            values.setdefault("num_threads", self.num_threads)
        try:
            return self.config_type(**values)
        except ValidationError as error:
            raise ConfigError("search space gives an invalid training config: "
                              + describe_validation(error, first_only=True)) from None

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        from edgewise.studio.train import train

        params = {name: suggest(trial, name, dist) for name, dist in self.space.distributions().items()}
        config = self.config_for(params)
        out_dir = self.out_root / f"trial-{trial.number:04d}"
        trial.set_user_attr("worker", worker_id())
        trial.set_user_attr("out_dir", str(out_dir))
        single = len(self.objectives) == 1

        def on_epoch(epoch: int, metrics: dict[str, Any]) -> None:
            quality = metrics.get("val_map" if self.detection else "val_accuracy")
            if single and quality is not None:  # Optuna prunes single-objective studies only
                trial.report(float(quality), epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        if self.detection:
            return self._detector_trial(trial, config, out_dir, on_epoch)
        result = train(config, self.data_dir, out_dir, on_epoch=on_epoch, progress=self.progress)
        trial.set_user_attr("checkpoint_path", str(result.checkpoint_path))
        trial.set_user_attr("test_accuracy", float(result.test_accuracy))
        trial.set_user_attr("image_size", int(config.image_size))
        values: dict[str, float] = {"acc": float(result.best_val_accuracy)}
        if set(self.objectives) - {"acc"} or self.constraint is not None:
            values.update(self._measure(trial, result.model, out_dir, config.image_size))
        out = tuple(values[name] for name in self.objectives)
        return out[0] if single else out

    def _detector_trial(self, trial: optuna.Trial, config: Any, out_dir: Path, on_epoch: Any) -> float:
        from edgewise.studio.detect.train import train_detector

        result = train_detector(config, self.data_dir, out_dir, on_epoch=on_epoch, progress=self.progress)
        trial.set_user_attr("checkpoint_path", str(result.checkpoint_path))
        trial.set_user_attr("val_map50", float(result.val.map50))
        if result.test is not None:
            trial.set_user_attr("test_map", float(result.test.map))
        return float(result.val.map)

    def _measure(self, trial: optuna.Trial, model: Any, out_dir: Path, image_size: int) -> dict[str, float]:
        from edgewise.studio.tune.measure import measure_model

        measure = measure_model(model, out_dir / "model.onnx", image_size, threads=1)
        trial.set_user_attr("onnx_path", str(measure.onnx_path))
        trial.set_user_attr("host_latency_ms", measure.host_latency_ms)
        trial.set_user_attr("size_mb", measure.size_mb)
        if self.constraint is not None:
            observed = self.constraint.value(measure)
            trial.set_user_attr("constraint_value", observed)
            trial.set_user_attr("feasible", observed <= self.constraint.limit)
        return {"latency": measure.host_latency_ms, "size": measure.size_mb}


class TestFunctionObjective:
    """A discrete test function (minimised) in place of training: `--objective ackley`."""

    __test__ = False  # not a pytest class

    def __init__(self, function: str, dims: int, levels: int, sleep_s: float = 0.0) -> None:
        evaluate(function, {f"x{i}": 0 for i in range(dims)}, levels)  # unknown name -> ConfigError now
        self.function, self.dims, self.levels, self.sleep_s = function, dims, levels, sleep_s

    def space(self) -> dict[str, BaseDistribution]:
        return grid_space(self.dims, self.levels)

    def __call__(self, trial: optuna.Trial) -> float:
        import time

        params = {name: suggest(trial, name, dist) for name, dist in self.space().items()}
        trial.set_user_attr("worker", worker_id())
        if self.sleep_s:
            time.sleep(self.sleep_s)  # stands in for training time in distributed/resume tests
        return evaluate(self.function, params, self.levels)
