"""Running a recipe: every step applied in order, exported, kept on disk and measured.

    out_dir/steps/00-baseline/model.onnx, 01-prune/model.onnx + model.pt, ...
    out_dir/report.json | report.md | report.html | pareto.png
"""

from __future__ import annotations

import copy
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import onnxruntime as ort
import torch
from rich.progress import Progress

from edgewise.core.errors import RecipeError, TargetIncompatible
from edgewise.core.hashing import sha256_file
from edgewise.core.targets import Target, get_target
from edgewise.studio.compress import measure
from edgewise.studio.compress.agreement import calibration_sample, check_agreement
from edgewise.studio.compress.inputs import (
    InputModel,
    check_model_matches_data,
    load_data,
    load_input_model,
    save_step_checkpoint,
)
from edgewise.studio.compress.onnx_rewrites import fix_input_size
from edgewise.studio.compress.recipe import Recipe, load_recipe
from edgewise.studio.compress.report import CompressionReport, StepMetrics, StepRecord, write_report
from edgewise.studio.compress.state import CompressState, DataBundle
from edgewise.studio.compress.steps import Step
from edgewise.studio.compress.targetcheck import check_model

SLOWER_TOLERANCE = 1.05  # host timing noise: only flag a step more than 5 % slower


@dataclass
class RunOptions:
    batch_size: int = 64
    latency_runs: int = 60
    latency_threads: int = 1
    allow_incompatible: bool = False
    best_max_drop: float = 1.5
    seed: int = 0


def run_compression(
    model: Path | InputModel, data: Path | DataBundle, target: str | Target, recipe: str | Path | Recipe,
    out_dir: Path, options: RunOptions | None = None, card: Path | None = None,
) -> CompressionReport:
    """Run `recipe` on `model` for `target`, measuring after every step; returns (and writes) the report.

    An ONNX model is fed as its card says (`card`, else the one beside it or recorded in it).

    Raises TargetIncompatible (after writing the report) when the final model cannot run on the target.
    """
    options = options or RunOptions()
    torch.manual_seed(options.seed)
    target = target if isinstance(target, Target) else get_target(target)
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    steps = recipe.build()
    _check_precision_early(recipe, target, options)
    source = model if isinstance(model, InputModel) else load_input_model(model, card)
    if source.model is None and any(step.needs_torch_for() for step in steps):
        raise RecipeError(f"recipe {recipe.name!r} has torch steps but {source.path.name} is an ONNX file",
                          "start from the training checkpoint (.pt) or use an ONNX-only recipe (quantize, slim)")
    input_hash = sha256_file(source.path)
    bundle = data if isinstance(data, DataBundle) else load_data(Path(data), source.image_size, options.batch_size,
                                                                 source.card)
    check_model_matches_data(source, bundle, "the data" if isinstance(data, DataBundle) else Path(data))
    out_dir = Path(out_dir)
    runner = _Runner(source, bundle, target, out_dir, options)
    records = [runner.baseline()]
    with Progress(transient=True) as progress:
        task = progress.add_task(f"compress ({recipe.name})", total=len(steps))
        for index, step in enumerate(steps, start=1):
            progress.update(task, description=f"step {index}/{len(steps)}: {step.name}")
            records.append(runner.run_step(index, step, records))
            progress.advance(task)
    records = _remeasure_latency_paired(records, source.input_shape, options)
    if sha256_file(source.path) != input_hash:
        raise RuntimeError(f"input model {source.path} changed during compression")  # a bug, never expected
    report = _assemble(source, input_hash, bundle, data, target, recipe, records, options)
    write_report(report, out_dir)
    final = records[-1]
    if not final.target_check.ok and not options.allow_incompatible:
        raise TargetIncompatible(f"the compressed model cannot run on {target.name}: "
                                 + "; ".join(final.target_check.issues) + f" (report in {out_dir})")
    return report


def _check_precision_early(recipe: Recipe, target: Target, options: RunOptions) -> None:
    precision = recipe.final_precision()
    runs_as = {"binary": "fp32", "ternary": "fp32"}.get(precision, precision)
    if not target.supports(runs_as) and not options.allow_incompatible:
        raise TargetIncompatible(
            f"recipe {recipe.name!r} produces a {precision} model, but {target.name} runs only "
            f"{', '.join(target.precisions)}",
            f"use a recipe ending in a {target.best_precision()} quantize step (e.g. `--recipe "
            f"{'edge-tpu-int8' if target.family == 'coral' else 'rpi-int8'}`)",
        )


class _Runner:
    def __init__(self, source: InputModel, data: DataBundle, target: Target, out_dir: Path, options: RunOptions):
        self.source, self.target, self.out_dir, self.options = source, target, out_dir, options
        teacher = copy.deepcopy(source.model).eval() if source.model is not None else None
        self.state = CompressState(model=copy.deepcopy(source.model), onnx_path=None, image_size=source.image_size,
                                   data=data, teacher=teacher, work_dir=out_dir, seed=options.seed,
                                   input_shape=source.input_shape)

    def baseline(self) -> StepRecord:
        work = self._step_dir(0, "baseline")
        state = self.state
        if self.source.onnx_path is not None:
            # Dynamic height/width fixed at the card's size: what a device runs, and what quantizers want.
            fix_input_size(self.source.onnx_path, work / "model.onnx", state.sample_shape)
            state.onnx_path = work / "model.onnx"
            state.torch_current = False
            check_agreement("fixing the input size", self.source.onnx_path, state.onnx_path,
                            calibration_sample(state.data.val), "fp32")
        state.work_dir = work
        return self._record(0, "baseline", {}, state, [], 0.0, None)

    def run_step(self, index: int, step: Step, previous: list[StepRecord]) -> StepRecord:
        state = self.state
        state.work_dir = self._step_dir(index, step.name)
        state.notes, state.details = [], {}
        if state.model is not None:
            state.model = copy.deepcopy(state.model)  # the previous step's kept model stays as it was
        started = time.perf_counter()
        before = state.onnx_path
        step.apply(state)
        seconds = time.perf_counter() - started
        if not step.needs_torch_for() and before is not None and state.onnx_path is not None:  # an ONNX rewrite
            found = check_agreement(f"step {index} ({step.name})", before, state.onnx_path,
                                    calibration_sample(state.data.val), state.precision)
            state.details["agreement_with_input_model"] = found.as_dict()
        return self._record(index, step.name, step.params.model_dump(mode="json"), state, previous, seconds, step)

    def _step_dir(self, index: int, name: str) -> Path:
        path = self.out_dir / "steps" / f"{index:02d}-{name}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _record(self, index: int, name: str, params: dict[str, Any], state: CompressState,
                previous: list[StepRecord], seconds: float, step: Step | None) -> StepRecord:
        if state.onnx_path is None or state.onnx_path.parent != state.work_dir:
            if state.onnx_path is None or state.torch_current:
                state.onnx_path = measure.export_model(state.model, state.work_dir / "model.onnx", state.image_size)
            else:  # an ONNX step that left the file elsewhere: keep a copy with this step
                copy_path = state.work_dir / "model.onnx"
                copy_path.write_bytes(state.onnx_path.read_bytes())
                state.onnx_path = copy_path
        checkpoint = None
        if state.model is not None and state.torch_current:
            checkpoint = save_step_checkpoint(state.work_dir / "model.pt", state.model, self.source.arch,
                                              self.source.classes, state.image_size)
        path = state.onnx_path
        counts = measure.count_graph(path)
        accuracy = measure.onnx_accuracy(path, state.data.test)
        latency = measure.host_latency(path, state.sample_shape, runs=max(10, self.options.latency_runs // 4),
                                       threads=self.options.latency_threads)  # a first look; see paired below
        check = check_model(path, state.precision, self.target, counts)
        base = previous[0].metrics if previous else None
        size = path.stat().st_size
        metrics = StepMetrics(
            accuracy=round(accuracy, 3), delta_accuracy=round(accuracy - base.accuracy, 3) if base else 0.0,
            params=counts.params, macs=counts.macs, file_size_bytes=size,
            host_latency_ms=round(latency.p50_ms, 4), host_latency_p95_ms=round(latency.p95_ms, 4),
            host_speedup=round(base.host_latency_ms / latency.p50_ms, 3) if base else 1.0,
            size_ratio=round(size / base.file_size_bytes, 4) if base else 1.0,
            est_target_latency_ms=check.est_latency_ms, est_energy_mj=check.est_energy_mj,
        )
        notes = list(state.notes)
        if check.est_latency_ms is None:
            notes.append(f"no latency estimate: {self.target.name} has no {state.precision} throughput")
        return StepRecord(
            index=index, name=name, params=params, dir=str(state.work_dir), model_path=str(path),
            checkpoint_path=str(checkpoint) if checkpoint else None, precision=state.precision, metrics=metrics,
            target_check=check, flags=[], notes=notes, details=dict(state.details), seconds=round(seconds, 2),
        )


def _remeasure_latency_paired(records: list[StepRecord], shape: list[int], options: RunOptions) -> list[StepRecord]:
    """Final host latencies: every kept model timed interleaved with the others, then flags."""
    latencies = measure.paired_latency([Path(r.model_path) for r in records], shape,
                                       runs=options.latency_runs, threads=options.latency_threads)
    base = latencies[0].p50_ms
    updated: list[StepRecord] = []
    for record, latency in zip(records, latencies, strict=True):
        metrics = record.metrics.model_copy(update={
            "host_latency_ms": round(latency.p50_ms, 4), "host_latency_p95_ms": round(latency.p95_ms, 4),
            "host_speedup": round(base / latency.p50_ms, 3)})
        record = record.model_copy(update={"metrics": metrics})
        weights_only = record.name == "distill" and not record.params.get("student")
        record.flags = _flags(metrics, record.precision, updated, expect_smaller=not weights_only)
        updated.append(record)
    return updated


def _flags(metrics: StepMetrics, precision: str, previous: list[StepRecord], expect_smaller: bool = True) -> list[str]:
    """Red flags. `expect_smaller` is False only for fine-tuning by distillation, which changes
    weights, never shapes, so an unchanged size is its design rather than a failure."""
    if not previous:
        return []
    flags: list[str] = []
    before = previous[-1].metrics
    if metrics.host_latency_ms > before.host_latency_ms * SLOWER_TOLERANCE:
        flags.append(f"SLOWER on this host than the step before: {metrics.host_latency_ms:.3f} ms vs "
                     f"{before.host_latency_ms:.3f} ms (measured)")
    if expect_smaller and metrics.file_size_bytes >= before.file_size_bytes * 0.99:
        flags.append(f"NO SMALLER after export: {metrics.file_size_bytes} bytes vs {before.file_size_bytes}")
    baseline = previous[0].metrics
    if precision.startswith("int8") and metrics.host_latency_ms >= baseline.host_latency_ms / SLOWER_TOLERANCE:
        flags.append("int8 is NO FASTER than fp32 on this host (measured); ONNX Runtime int8 needs VNNI/dot-product "
                     "instructions to pay off; the target estimate uses the target's int8 throughput")
    if metrics.delta_accuracy < -5.0:
        flags.append(f"ACCURACY COLLAPSED: {metrics.delta_accuracy:+.2f} points against the baseline")
    return flags


def _assemble(source: InputModel, input_hash: str, bundle: DataBundle, data: Path | DataBundle, target: Target,
              recipe: Recipe, records: list[StepRecord], options: RunOptions) -> CompressionReport:
    eligible = [r for r in records if r.metrics.delta_accuracy >= -options.best_max_drop and r.target_check.ok]
    best = min(eligible or records, key=lambda r: r.metrics.host_latency_ms)
    host = {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "onnxruntime": ort.__version__, "torch": torch.__version__,
            "latency_threads": options.latency_threads, "latency_runs": options.latency_runs}
    return CompressionReport(
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        input={"path": str(source.path), "sha256": input_hash, "arch": source.arch, "classes": source.classes,
               "image_size": source.image_size, "unchanged": True,
               **({"card": source.card.model_dump(mode="json")} if source.card else {})},
        target=target.model_dump(mode="json"),
        recipe=recipe.model_dump(mode="json"),
        data={"dir": str(data) if isinstance(data, Path) else "<in-memory>", "classes": bundle.classes,
              "accuracy_split": "test", "sensitivity_split": "val", "calibration_split": "train"},
        host=host, steps=records, final_step=records[-1].index, best_step=best.index,
        notes=["host latency: measured, batch 1, ONNX Runtime CPU; target latency/energy: roofline ESTIMATES",
               f"best step (fastest measured within {options.best_max_drop} pt and passing the target check): "
               f"{best.index} {best.name}"],
    )
