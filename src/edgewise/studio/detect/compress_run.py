"""`edgewise compress` for a detector: a built-in recipe for a target, every variant measured.

Recipes (`DETECTION_RECIPES`):

- `fp32`: the exported model only (the reference every other variant is judged against).
- `balanced` (default): accuracy-aware int8 within 1 pt mAP@[.5:.95] of fp32 on the val split.
- `small`: channel pruning of backbone and neck to 75 % of the MACs, fine-tuned, then int8.

Every variant is written as `OUT/steps/NN-name/model.onnx` with its card and measured on the
val and test splits through the agent's own path (mAP@[.5:.95], mAP@.5), plus file size and host
latency; `OUT/report.json` has them all. For targets that cannot run NMS (the Edge TPU family,
phone NPUs) the variant keeps the raw form, decode on the host; otherwise NMS is in the graph.
Node and tensor names are compacted in every variant, the reference included, so sizes compare.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgewise.core.errors import ConfigError
from edgewise.core.model_card import ModelCard, card_beside, load_card
from edgewise.core.targets import get_target
from edgewise.studio.compress.onnx_rewrites import compact_names
from edgewise.studio.detect.compress import prune_detector, quantize_int8
from edgewise.studio.detect.data import FittedFrames
from edgewise.studio.detect.evaluate import evaluate_detector_onnx
from edgewise.studio.detect.export import GRAPH_SCORE_THRESHOLD, _append_nms, export_detector, output_spec
from edgewise.studio.detect.formats.coco import read_native
from edgewise.studio.detect.train import load_detector

DETECTION_RECIPES = {
    "fp32": "the exported detector, measured (the reference)",
    "balanced": "accuracy-aware int8 (<= 1 pt mAP@[.5:.95] on val), sensitive head layers kept in float if needed",
    "small": "channel pruning of backbone + neck to 75% MACs, fine-tuned, then accuracy-aware int8",
}
NO_NMS_FAMILIES = {"coral", "phone"}  # accelerators that cannot run NMS: decode and NMS on the host


@dataclass
class VariantReport:
    name: str
    precision: str
    form: str
    path: str
    size_bytes: int
    val_map: float
    val_map50: float
    test_map: float | None
    test_map50: float | None
    host_latency_ms: float
    notes: list[str] = field(default_factory=list)


def _measure(name: str, precision: str, path: Path, card: ModelCard, splits: dict, notes: list[str],  # type: ignore[type-arg]
             latency_runs: int) -> VariantReport:
    from edgewise.studio.bench import benchmark_onnx

    val = evaluate_detector_onnx(path, card, splits["val"])
    test = evaluate_detector_onnx(path, card, splits["test"]) if "test" in splits else None
    latency = benchmark_onnx(path, threads=1, runs=latency_runs, warmup=5, input_shape=list(card.input.shape))
    form = "nms" if card.output.detection_layout == "nms-rows" else "raw"
    return VariantReport(name, precision, form, str(path), path.stat().st_size, val.map, val.map50,
                         test.map if test else None, test.map50 if test else None, latency.p50_ms, notes)


def _finish(rows_path: Path, step_dir: Path, card: ModelCard, nms: bool) -> tuple[Path, ModelCard]:
    """The step's served file: NMS appended when the target runs it, names compacted, card beside."""
    model_path = step_dir / "model.onnx"
    shutil.copyfile(rows_path, model_path)
    if nms:
        out = card.output
        _append_nms(model_path, len(card.labels), min(out.score_threshold, GRAPH_SCORE_THRESHOLD), out.nms_iou,
                    out.max_detections or 100)
        card = card.model_copy(update={"output": output_spec("nms", out.score_threshold, out.nms_iou,
                                                              out.max_detections or 100)})
    compact_names(model_path)
    card_beside(model_path).write_text(card.to_yaml())
    return model_path, card


def compress_detector(checkpoint: Path, data_dir: Path, target: str, recipe: str, out_dir: Path, *,
                      max_drop: float | None = None, latency_runs: int = 30, progress: bool = True
                      ) -> list[VariantReport]:
    if recipe not in DETECTION_RECIPES:
        raise ConfigError(f"unknown detection recipe {recipe!r}", f"use one of: {', '.join(DETECTION_RECIPES)}")
    chosen_target = get_target(target)
    nms = chosen_target.family not in NO_NMS_FAMILIES
    model, _, labels, spec, _ = load_detector(checkpoint)
    splits = read_native(Path(data_dir))
    out_dir = Path(out_dir)
    work = out_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    reports: list[VariantReport] = []
    reference = export_detector(model, spec, labels, work / "fp32.onnx", form="raw")
    reference_card = load_card(reference.card_path)
    path, card = _finish(reference.path, _step(out_dir, 1, "fp32"), reference_card, nms)
    reports.append(_measure("fp32", "fp32", path, card, splits, [], latency_runs))
    rows, rows_card, notes = reference.path, reference_card, []
    if recipe == "small":
        pruned = prune_detector(model, FittedFrames(splits["train"], spec), FittedFrames(splits["val"], spec),
                                macs_ratio=0.75, progress=progress)
        notes.append(f"pruned to {pruned.macs_ratio:.2f}x MACs, {pruned.params_ratio:.2f}x params, fine-tuned")
        rows = export_detector(pruned.model, spec, labels, work / "pruned.onnx", form="raw").path
    if recipe in ("balanced", "small"):
        budget = 1.0 if max_drop is None else max_drop
        quantized = quantize_int8(rows, rows_card, splits["train"], splits["val"], work / "int8.onnx", max_drop=budget)
        notes.append(f"int8: kept in float: {', '.join(quantized.kept_float) or 'nothing'}; "
                     f"val mAP drop {quantized.drop_points:.2f} pt (budget {budget} pt)")
        path, card = _finish(quantized.path, _step(out_dir, 2, f"{recipe}-int8"), rows_card, nms)
        reports.append(_measure(f"{recipe}-int8", "int8", path, card, splits, notes, latency_runs))
    shutil.rmtree(work, ignore_errors=True)
    (out_dir / "report.json").write_text(json.dumps({"target": target, "recipe": recipe,
                                                     "variants": [asdict(r) for r in reports]}, indent=2))
    return reports


def _step(out_dir: Path, index: int, name: str) -> Path:
    step_dir = out_dir / "steps" / f"{index:02d}-{name}"
    step_dir.mkdir(parents=True, exist_ok=True)
    return step_dir

