"""Recipe search: trials choose compression steps, their order and their settings.

A recipe space is a search space with `kind: recipe`. Parameter names follow three patterns:

    use.<step>        categorical [true, false]: include the step
    order             categorical of step lists, e.g. "prune>slim>quantize": order of included steps
    <step>.<setting>  a setting of that step, e.g. prune.target_macs_ratio, quantize.mode

and `fixed` names the trained `model` checkpoint and the `target` (plus fixed step settings as
`<step>.<setting>`). Each trial builds a compression `Recipe`, runs it with the compression
pipeline, and is scored by the final model's accuracy and its MEASURED host latency (or size).
A recipe the pipeline rejects (bad order, a precision the target lacks) is pruned, so the tt
sampler learns to avoid it. A trial with no step runs `slim` alone (lossless), as a baseline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from edgewise.core.errors import ConfigError, RecipeError, TargetIncompatible
from edgewise.studio.tune.objective import Constraint, suggest
from edgewise.studio.tune.space import SearchSpace
from edgewise.studio.tune.study import worker_id

BASELINE_STEP = "slim"


def recipe_from_params(params: dict[str, Any], fixed: dict[str, Any], name: str) -> Any:
    """The compression Recipe a trial's parameters describe."""
    from edgewise.studio.compress.recipe import Recipe, StepSpec
    from edgewise.studio.compress.steps import STEPS

    values = {**fixed, **params}
    settings: dict[str, dict[str, Any]] = {}
    included: list[str] = []
    for key, value in values.items():
        if key.startswith("use."):
            if value is True or str(value).lower() == "true":
                included.append(key.removeprefix("use."))
        elif "." in key:
            step, setting = key.split(".", 1)
            settings.setdefault(step, {})[setting] = value
    unknown = sorted({s for s in included + list(settings) if s not in STEPS})
    if unknown:
        raise ConfigError(f"recipe space names unknown compression steps {unknown}",
                          f"use one of: {', '.join(STEPS.names())}")
    order_text = str(values.get("order", ""))
    order = [s.strip() for s in order_text.split(">") if s.strip()] if order_text else []
    ordered = [s for s in order if s in included] + [s for s in included if s not in order]
    if not ordered:
        ordered = [BASELINE_STEP]
    steps = [StepSpec(step=s, params=settings.get(s, {})) for s in ordered]
    return Recipe(name=name, description="chosen by edgewise tune", steps=steps)


class RecipeObjective:
    """Compress a trained checkpoint with the trial's recipe; values: accuracy and latency/size."""

    def __init__(self, space: SearchSpace, data_dir: Path, out_root: Path, *, objectives: list[str],
                 constraint: Constraint | None = None, latency_runs: int = 30) -> None:
        for key in ("model", "target"):
            if key not in space.fixed:
                raise ConfigError(f"a recipe space needs fixed.{key}", "see 'Recipe search' in docs/tune.md")
        self.space, self.data_dir, self.out_root = space, Path(data_dir), Path(out_root).resolve()
        self.objectives, self.constraint, self.latency_runs = objectives, constraint, latency_runs
        self.model = Path(space.fixed["model"]).resolve()
        self.target = str(space.fixed["target"])
        # An ONNX model is fed as its card says: fixed.card, else the card beside it (checked before any trial).
        self.card = Path(space.fixed["card"]).resolve() if space.fixed.get("card") else None
        if self.model.suffix == ".onnx":
            from edgewise.studio.cards import resolve_card

            resolve_card(self.model, self.card)
        self.step_fixed = {k: v for k, v in space.fixed.items() if k not in ("model", "target", "card")}
        recipe_from_params({}, self.step_fixed, "check")  # unknown step names fail before any trial

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        from edgewise.studio.compress.pipeline import RunOptions, run_compression

        params = {name: suggest(trial, name, dist) for name, dist in self.space.distributions().items()}
        trial.set_user_attr("worker", worker_id())
        out_dir = self.out_root / f"trial-{trial.number:04d}"
        try:
            recipe = recipe_from_params(params, self.step_fixed, f"tune-trial-{trial.number}")
            trial.set_user_attr("recipe", [f"{s.step}{s.params or ''}" for s in recipe.steps])
            report = run_compression(self.model, self.data_dir, self.target, recipe, out_dir,
                                     RunOptions(latency_runs=self.latency_runs), card=self.card)
        except (RecipeError, TargetIncompatible) as error:  # a bad point of the space, not a crash
            trial.set_user_attr("rejected", error.message)
            raise optuna.TrialPruned(error.message) from None
        final = next(s for s in report.steps if s.index == report.final_step)
        metrics = final.metrics
        trial.set_user_attr("onnx_path", final.model_path)
        trial.set_user_attr("checkpoint_path", final.checkpoint_path)
        trial.set_user_attr("host_latency_ms", metrics.host_latency_ms)
        trial.set_user_attr("size_mb", metrics.file_size_bytes / 1e6)
        trial.set_user_attr("est_target_latency_ms", metrics.est_target_latency_ms)
        if self.constraint is not None:
            observed = self._constraint_value(metrics)
            trial.set_user_attr("constraint_value", observed)
            trial.set_user_attr("feasible", observed <= self.constraint.limit)
        values = {"acc": float(metrics.accuracy), "latency": float(metrics.host_latency_ms),
                  "size": metrics.file_size_bytes / 1e6}
        out = tuple(values[name] for name in self.objectives)
        return out[0] if len(out) == 1 else out

    def _constraint_value(self, metrics: Any) -> float:
        constraint = self.constraint
        if constraint is None:
            return 0.0
        if constraint.metric == "size":
            return float(metrics.file_size_bytes / 1e6)
        if constraint.target:
            if constraint.target == self.target and metrics.est_target_latency_ms is not None:
                return float(metrics.est_target_latency_ms)
            from edgewise.core.targets import estimate_latency_ms, get_target

            target = get_target(constraint.target)
            precision = "fp32" if target.supports("fp32") else target.best_precision()
            return estimate_latency_ms(target, metrics.macs, metrics.file_size_bytes, precision)
        return float(metrics.host_latency_ms)
