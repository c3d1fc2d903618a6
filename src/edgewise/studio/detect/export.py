"""ONNX export of a zoo detector, in the two forms deployments need, each verified and carded.

- `nms` (CPU / GPU runtimes): decode and class-aware NMS in the graph (ONNX `NonMaxSuppression`),
  output `detections` 1 x K x 6 `[x1, y1, x2, y2, score, class]`, best first: the card's layout
  is `nms-rows`, as end-to-end YOLO exports emit.
- `raw` (accelerators that cannot run NMS: Edge TPU, NPUs): decode in the graph (a few
  multiplies and adds, which quantize), output `detections` 1 x N x (4 + C) rows
  `[x1, y1, x2, y2, score per class]`; the host runs thresholds and NMS (card layout `rows`).

Both are checked in ONNX Runtime against torch plus the agent's own decode on random and
real-looking input before they are written, and get a model card beside them
(`MODEL.card.yaml`) with the labels, the letterbox input and the output layout, so
`bundle create`, `evaluate` and the agent read them without a guess.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from edgewise.core.detection_layouts import Boxes, decode_boxes
from edgewise.core.errors import ModelError
from edgewise.core.manifest import InputSpec, OutputSpec
from edgewise.core.model_card import ModelCard, card_beside
from edgewise.studio.detect.model import DecodedDetector, Detector

ExportForm = Literal["nms", "raw"]
INPUT_NAME, OUTPUT_NAME = "input", "detections"
OPSET = 18
# The card's served threshold: a detection below 0.25 is noise for an alarm. The NMS in the graph
# keeps boxes down to COCO evaluation's 0.01, so the file that is served is also the file that is
# measured (mAP needs the low-score end); the agent applies the card's threshold after it.
SCORE_THRESHOLD, NMS_IOU, MAX_DETECTIONS = 0.25, 0.5, 100
GRAPH_SCORE_THRESHOLD = 0.01
ROW_TOLERANCE = 1e-3  # px / probability: float32 kernels differ in summation order only


@dataclass
class DetectorExport:
    path: Path
    card_path: Path
    form: ExportForm
    max_abs_diff: float


def output_spec(form: ExportForm, score_threshold: float = SCORE_THRESHOLD, nms_iou: float = NMS_IOU,
                max_detections: int = MAX_DETECTIONS) -> OutputSpec:
    return OutputSpec(decode="detection", score_threshold=score_threshold, nms_iou=nms_iou, box_format="xyxy",
                      detection_layout="nms-rows" if form == "nms" else "rows", max_detections=max_detections)


def _append_nms(path: Path, classes: int, score_threshold: float, nms_iou: float, max_detections: int) -> None:
    """Rows (1, N, 4 + C) -> NonMaxSuppression per class -> the best `max_detections` as (1, K, 6)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    graph = model.graph
    rows = graph.output[0].name
    if rows == OUTPUT_NAME:  # a raw-form file: its output becomes the NMS's input
        rows = "rows"
        for node in graph.node:
            node.output[:] = [rows if name == OUTPUT_NAME else name for name in node.output]
            node.input[:] = [rows if name == OUTPUT_NAME else name for name in node.input]
    graph.ClearField("output")
    const = [
        helper.make_tensor("nms_max_per_class", TensorProto.INT64, [1], [max_detections]),
        helper.make_tensor("nms_iou", TensorProto.FLOAT, [1], [nms_iou]),
        helper.make_tensor("nms_score", TensorProto.FLOAT, [1], [score_threshold]),
        helper.make_tensor("nms_k", TensorProto.INT64, [1], [max_detections]),
        helper.make_tensor("nms_box_cols", TensorProto.INT64, [4], [0, 1, 2, 3]),
        helper.make_tensor("nms_score_cols", TensorProto.INT64, [classes], list(range(4, 4 + classes))),
        helper.make_tensor("nms_zero", TensorProto.INT64, [1], [0]),
        helper.make_tensor("nms_flat", TensorProto.INT64, [1], [-1]),
    ]
    graph.initializer.extend(const)
    nodes = [
        helper.make_node("Gather", [rows, "nms_box_cols"], ["nms_boxes"], axis=2),  # (1, N, 4)
        helper.make_node("Gather", [rows, "nms_score_cols"], ["nms_scores_nc"], axis=2),  # (1, N, C)
        helper.make_node("Transpose", ["nms_scores_nc"], ["nms_scores"], perm=[0, 2, 1]),  # (1, C, N)
        # IoU is symmetric in x and y, so [x1, y1, x2, y2] serves for ONNX's corner form.
        helper.make_node("NonMaxSuppression", ["nms_boxes", "nms_scores", "nms_max_per_class", "nms_iou", "nms_score"],
                         ["nms_selected"], center_point_box=0),  # (M, 3): batch, class, box
        helper.make_node("Split", ["nms_selected"], ["nms_b", "nms_c", "nms_i"], axis=1, num_outputs=3),
        helper.make_node("Squeeze", ["nms_c", "nms_flat_axis"], ["nms_class"]),
        helper.make_node("Squeeze", ["nms_i", "nms_flat_axis"], ["nms_index"]),
        helper.make_node("Squeeze", ["nms_boxes", "nms_zero"], ["nms_boxes0"]),  # (N, 4)
        helper.make_node("Gather", ["nms_boxes0", "nms_index"], ["nms_sel_boxes"], axis=0),  # (M, 4)
        helper.make_node("Shape", ["nms_boxes0"], ["nms_shape"]),
        helper.make_node("Gather", ["nms_shape", "nms_zero"], ["nms_n"], axis=0),  # (1,) = N
        helper.make_node("Mul", ["nms_class", "nms_n"], ["nms_offset"]),
        helper.make_node("Add", ["nms_offset", "nms_index"], ["nms_flat_index"]),
        helper.make_node("Reshape", ["nms_scores", "nms_flat"], ["nms_scores_flat"]),  # (C * N,)
        helper.make_node("Gather", ["nms_scores_flat", "nms_flat_index"], ["nms_sel_scores"], axis=0),  # (M,)
        helper.make_node("Shape", ["nms_sel_scores"], ["nms_m"]),
        helper.make_node("Min", ["nms_m", "nms_k"], ["nms_top"]),
        helper.make_node("TopK", ["nms_sel_scores", "nms_top"], ["nms_top_scores", "nms_order"], axis=0, largest=1,
                         sorted=1),
        helper.make_node("Gather", ["nms_sel_boxes", "nms_order"], ["nms_top_boxes"], axis=0),
        helper.make_node("Gather", ["nms_class", "nms_order"], ["nms_top_class"], axis=0),
        helper.make_node("Cast", ["nms_top_class"], ["nms_top_class_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["nms_top_scores", "nms_last_axis"], ["nms_score_col"]),
        helper.make_node("Unsqueeze", ["nms_top_class_f", "nms_last_axis"], ["nms_class_col"]),
        helper.make_node("Concat", ["nms_top_boxes", "nms_score_col", "nms_class_col"], ["nms_rows"], axis=1),
        helper.make_node("Unsqueeze", ["nms_rows", "nms_zero"], [OUTPUT_NAME]),  # (1, K, 6)
    ]
    graph.initializer.extend([helper.make_tensor("nms_flat_axis", TensorProto.INT64, [1], [1]),
                              helper.make_tensor("nms_last_axis", TensorProto.INT64, [1], [1])])
    graph.node.extend(nodes)
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, "detections", 6]))
    # NonMaxSuppression and Split-with-num_outputs need opset 18; the rest is unchanged by it.
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = max(entry.version, 18)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path), save_as_external_data=False)


def export_detector(model: Detector, spec: InputSpec, labels: list[str], path: Path, *, form: ExportForm = "nms",
                    score_threshold: float = SCORE_THRESHOLD, nms_iou: float = NMS_IOU,
                    max_detections: int = MAX_DETECTIONS, check_frames: np.ndarray | None = None) -> DetectorExport:
    """Write `path` (and its card) for an input of `spec`'s fixed size; ModelError if ORT disagrees."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = spec.resize
    wrapped = DecodedDetector(copy.deepcopy(model).cpu().eval(), height, width).eval()
    example = torch.zeros(1, 3, height, width)
    rows_path = path if form == "raw" else path.with_suffix(".rows.onnx")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapped, (example,), str(rows_path), input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME if form == "raw" else "rows"], opset_version=OPSET,
                              dynamo=False, do_constant_folding=True)
        difference = verify_rows(wrapped, rows_path, spec, check_frames)
        if form == "nms":
            in_graph_threshold = min(score_threshold, GRAPH_SCORE_THRESHOLD)
            _append_nms(rows_path, len(labels), in_graph_threshold, nms_iou, max_detections)
            rows_path.replace(path)
    except ModelError:
        raise
    except Exception as error:
        raise ModelError(f"detector export failed: {error}", "report the architecture as an export bug") from error
    finally:
        if rows_path != path:
            rows_path.unlink(missing_ok=True)
    out_spec = output_spec(form, score_threshold, nms_iou, max_detections)
    if form == "nms":
        in_graph = out_spec.model_copy(update={"score_threshold": min(score_threshold, GRAPH_SCORE_THRESHOLD)})
        verify_nms(wrapped, path, in_graph, labels, spec, check_frames, max_detections)
    card = ModelCard(task="detect", labels=list(labels), input=spec, output=out_spec)
    card_path = card_beside(path)
    card_path.write_text(card.to_yaml())
    return DetectorExport(path, card_path, form, difference)


def _inputs(spec: InputSpec, frames: np.ndarray | None) -> list[np.ndarray]:
    from edgewise.core.preprocess import Preprocessor

    height, width = spec.resize
    inputs = [torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0)).numpy()]
    return inputs + ([Preprocessor(spec)(frame) for frame in frames] if frames is not None else [])


def verify_rows(wrapped: DecodedDetector, path: Path, spec: InputSpec, frames: np.ndarray | None) -> float:
    """Largest difference between ORT's decoded rows and torch's: boxes, and each row's best
    score (which class holds it may differ where two classes tie to float precision)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for tensor in _inputs(spec, frames):
        with torch.no_grad():
            expected = wrapped(torch.from_numpy(tensor)).numpy()
        (actual,) = session.run(None, {INPUT_NAME: tensor})
        worst = max(worst, float(np.max(np.abs(actual[..., :4] - expected[..., :4]))),
                    float(np.max(np.abs(actual[..., 4:].max(-1) - expected[..., 4:].max(-1)))))
    if not worst <= ROW_TOLERANCE:
        raise ModelError(f"ONNX Runtime's detections differ from torch's by {worst:.3g} (tolerance {ROW_TOLERANCE:g})",
                         "report this as an export bug")
    return worst


def verify_nms(wrapped: DecodedDetector, path: Path, out_spec: OutputSpec, labels: list[str], spec: InputSpec,
               frames: np.ndarray | None, max_detections: int = MAX_DETECTIONS) -> None:
    """The graph's NMS keeps the boxes the agent's NMS keeps from the same rows. Scores equal to
    float precision can be ordered either way, so boxes are matched (same class, IoU >= 0.95)
    rather than compared in order; 1 % may differ on such ties."""
    import onnxruntime as ort

    from edgewise.core.detection_layouts import box_iou

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    height, width = spec.resize
    matched = total = 0
    for tensor in _inputs(spec, frames):
        with torch.no_grad():
            rows = wrapped(torch.from_numpy(tensor)).numpy().astype(np.float64)
        expected = decode_boxes([rows], out_spec.model_copy(update={"detection_layout": None}), labels, (height, width))
        (actual,) = session.run(None, {INPUT_NAME: tensor})
        got = decode_boxes([actual], out_spec, labels, (height, width))
        reference = Boxes(expected.xyxy[:max_detections], expected.scores[:max_detections],
                          expected.classes[:max_detections])
        total += max(len(got), len(reference))
        for box, class_id in zip(got.xyxy, got.classes, strict=True):
            same = reference.classes == class_id
            if same.any() and box_iou(box, reference.xyxy[same]).max() >= 0.95:
                matched += 1
    if total and matched < 0.99 * total:
        raise ModelError(f"the exported NMS keeps {matched} of {total} boxes the agent's NMS keeps",
                         "report this as an export bug")
