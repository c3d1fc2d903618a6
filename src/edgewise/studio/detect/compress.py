"""Compressing a detector, judged on COCO mAP: accuracy-aware int8 and structured pruning.

int8 (`quantize_int8`): static QDQ, per-channel int8 weights, uint8 activations, calibrated on
training frames through the card's own preprocessing. Only convolutions are quantized: the box
decode after them (softplus, strides, concatenation) stays float, because box corners in
pixels quantized to 256 levels would cost localisation, which mAP@[.5:.95] measures. With a
budget (`max_drop`, mAP@[.5:.95] points on the val split), the layers detectors are known to be
sensitive in (the heads' last convolutions, then the head towers) are kept in float, group by
group, until the drop fits; the report lists what was kept.

Pruning (`prune_detector`): torch-pruning removes whole channels of the backbone and the neck
(by L2 magnitude, dependencies followed across residuals and the PAN), never the heads' output
convolutions, then the model is fine-tuned with the detection loss. Fewer channels is what
makes a detector faster on every runtime, unlike unstructured sparsity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from edgewise.core.errors import ModelError
from edgewise.core.model_card import ModelCard
from edgewise.core.preprocess import Preprocessor, read_frame
from edgewise.studio.compress.steps import _ort_quant
from edgewise.studio.detect.annotations import DetectionSet
from edgewise.studio.detect.data import FittedFrames
from edgewise.studio.detect.evaluate import evaluate_detector_onnx
from edgewise.studio.detect.metrics import DetectionMetrics
from edgewise.studio.detect.model import Detector
from edgewise.studio.detect.train import DetectTrainConfig

# Kept in float, in this order, while the int8 model loses more than its budget.
SENSITIVE_GROUPS = (("head outputs", ("/classes/", "/box/")), ("head towers", ("/heads.",)))


@dataclass
class QuantizedDetector:
    path: Path
    metrics: DetectionMetrics
    reference: DetectionMetrics
    kept_float: list[str] = field(default_factory=list)  # the groups kept in float
    attempts: list[dict[str, float | str]] = field(default_factory=list)

    @property
    def drop_points(self) -> float:
        return 100 * (self.reference.map - self.metrics.map)


def calibration_tensors(card: ModelCard, dataset: DetectionSet, samples: int, seed: int = 0) -> list[np.ndarray]:
    """`samples` frames of `dataset` (a fixed random choice) as the model's input tensors."""
    preprocess = Preprocessor(card.input)
    order = np.random.default_rng(seed).permutation(len(dataset.images))[:samples]
    return [preprocess(read_frame(dataset.path_of(dataset.images[int(i)]))) for i in order]


def conv_nodes(path: Path, patterns: tuple[str, ...]) -> list[str]:
    model = onnx.load(str(path), load_external_data=False)
    return [node.name for node in model.graph.node if node.op_type == "Conv" and any(p in node.name for p in patterns)]


def quantize_int8(fp32_rows: Path, card: ModelCard, calibration: DetectionSet, val: DetectionSet, out: Path, *,
                  max_drop: float | None = 1.0, samples: int = 128, reference: DetectionMetrics | None = None,
                  calibration_method: str = "minmax") -> QuantizedDetector:
    """int8 of a `raw`-form (rows) detector; with `max_drop`, sensitive groups stay float until
    val mAP@[.5:.95] is within `max_drop` points of the fp32 model's."""
    if (card.output.detection_layout or "rows") != "rows":
        raise ModelError("int8 calibration needs the detector's raw form (boxes and scores before NMS)",
                         "export with --form raw; NMS is added back after quantization")
    reference = reference or evaluate_detector_onnx(fp32_rows, card, val)
    tensors = calibration_tensors(card, calibration, samples)
    prepared = _ort_quant.preprocess(fp32_rows, out.with_suffix(".pre.onnx"))
    _ort_quant.name_nodes(prepared)  # every node named: the exclusion lists below match node names
    excluded: list[str] = []
    kept: list[str] = []
    attempts: list[dict[str, float | str]] = []
    best: tuple[float, DetectionMetrics, list[str]] | None = None
    for group, patterns in ((None, ()), *SENSITIVE_GROUPS):
        if group is not None:
            excluded += conv_nodes(prepared, patterns)
            kept.append(group)
        _ort_quant.static_int8(prepared, out, tensors, calibration=calibration_method, per_channel=True,
                               percentile=99.999, exclude=excluded, op_types=["Conv"])
        metrics = evaluate_detector_onnx(out, card, val)
        drop = 100 * (reference.map - metrics.map)
        attempts.append({"kept_float": ", ".join(kept) or "nothing", "map": metrics.map, "drop_points": drop})
        if best is None or metrics.map > best[0]:
            best = (metrics.map, metrics, list(kept))
        if max_drop is None or drop <= max_drop:
            break
    if best is None:
        raise ModelError("no int8 attempt was made", "report this as a bug")
    if best[2] != kept:  # the last attempt was not the best: write the best one again
        excluded = [name for group, patterns in SENSITIVE_GROUPS if group in best[2]
                    for name in conv_nodes(prepared, patterns)]
        _ort_quant.static_int8(prepared, out, tensors, calibration=calibration_method, per_channel=True,
                               percentile=99.999, exclude=excluded, op_types=["Conv"])
    prepared.unlink(missing_ok=True)
    return QuantizedDetector(out, best[1], reference, best[2], attempts)


def ort_default_int8(fp32_rows: Path, card: ModelCard, calibration: DetectionSet, out: Path,
                     samples: int = 128) -> Path:
    """ONNX Runtime's static quantization with its defaults (QDQ, per-tensor, MinMax, every op it
    supports): the baseline a user would reach for first."""
    from onnxruntime.quantization import quantize_static

    tensors = calibration_tensors(card, calibration, samples)
    input_name = onnx.load(str(fp32_rows), load_external_data=False).graph.input[0].name
    quantize_static(str(fp32_rows), str(out), _ort_quant.ArrayCalibrationReader(input_name, tensors))
    return out


@dataclass
class PrunedDetector:
    model: Detector
    macs_ratio: float
    params_ratio: float
    history: list[dict[str, object]]


def prune_detector(model: Detector, train_frames: FittedFrames, val_frames: FittedFrames, *, macs_ratio: float = 0.6,
                   fine_tune: DetectTrainConfig | None = None, progress: bool = False,
                   distill: bool = True) -> PrunedDetector:
    """Remove whole channels from backbone and neck until MACs are `macs_ratio` of before, then
    fine-tune from the pruned weights, with the unpruned model as teacher when `distill`
    (`studio/detect/distill.py`), else on the labels alone."""
    import copy

    import torch
    import torch_pruning as tp

    from edgewise.studio.detect.train import fit_detector

    pruned = copy.deepcopy(model).train()
    example = torch.zeros(1, 3, train_frames.height, train_frames.width)
    outputs = [m for head in pruned.heads for m in (head.classes, head.box)]  # their channels are the format
    base_macs, base_params = tp.utils.count_ops_and_params(pruned, example)
    steps = 20
    pruner = tp.pruner.MetaPruner(pruned, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                  pruning_ratio=0.8, iterative_steps=steps, ignored_layers=outputs, round_to=8)
    macs, params = base_macs, base_params
    for _ in range(steps):
        if macs <= macs_ratio * base_macs:
            break
        pruner.step()
        macs, params = tp.utils.count_ops_and_params(pruned, example)
    config = fine_tune or DetectTrainConfig(epochs=6, lr=1e-3, warmup_steps=20, mosaic=0.3, plain_last_epochs=2)
    from edgewise.studio.detect.distill import distillation_loss

    loss_fn = distillation_loss(copy.deepcopy(model)) if distill else None
    best, history = fit_detector(pruned, train_frames, val_frames, config, progress=progress, loss_fn=loss_fn)
    return PrunedDetector(best.eval(), macs / base_macs, params / base_params, history)
