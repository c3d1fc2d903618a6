"""A detector's raw outputs -> boxes, scores and classes, for the layouts detectors ship with.

Every layout ends as `Boxes`: x1, y1, x2, y2 in model-input pixels, one score and one class id
per box, after the score thresholds and (for layouts that are not already suppressed)
class-aware non-maximum suppression. Layouts (`OutputSpec.detection_layout`):

- `rows` (unset): N x 6 rows `[box, score, class]`, or N x (4 + C) rows `[box, score per class]`;
  `box_format` says xyxy or cxcywh.
- `yolov8`: 1 x (4 + C) x N (YOLOv8/11 heads: cx, cy, w, h then class scores, no objectness).
- `yolov5`: 1 x N x (5 + C) (cx, cy, w, h, objectness, class scores; score = objectness x class).
- `nms-rows`: 1 x K x 6 `[x1, y1, x2, y2, score, class]`, already suppressed (end-to-end exports).
- `ssd`: four outputs, boxes 1 x K x 4 `[ymin, xmin, ymax, xmax]` normalised to [0, 1],
  classes 1 x K, scores 1 x K, count 1 (the TFLite detection post-process layout).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgewise.core.errors import ModelError
from edgewise.core.manifest import OutputSpec


@dataclass
class Boxes:
    xyxy: np.ndarray  # (N, 4) float64, model-input pixels
    scores: np.ndarray  # (N,)
    classes: np.ndarray  # (N,) int

    def __len__(self) -> int:
        return len(self.scores)


def _cxcywh(boxes: np.ndarray) -> np.ndarray:
    return np.stack([boxes[:, 0] - boxes[:, 2] / 2, boxes[:, 1] - boxes[:, 3] / 2,
                     boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2], axis=1)


def box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-9))


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression; indices kept, best first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        order = rest[box_iou(boxes[best], boxes[rest]) <= iou_threshold]
    return keep


def _expect(condition: bool, layout: str, shapes: list[tuple[int, ...]], expected: str) -> None:
    if not condition:
        raise ModelError(f"detector outputs {shapes} do not fit layout {layout!r} ({expected})",
                         "set the card's output.detection_layout to the layout the model emits")


def _candidates(outputs: Sequence[np.ndarray], spec: OutputSpec, classes: int) -> tuple[Boxes, bool]:
    """(boxes before thresholds, whether they still need NMS)."""
    layout = spec.detection_layout or "rows"
    shapes = [tuple(o.shape) for o in outputs]
    first = np.asarray(outputs[0], dtype=np.float64)
    if layout == "yolov8":
        _expect(first.ndim == 3 and first.shape[1] == 4 + classes, layout, shapes, f"1 x {4 + classes} x N")
        rows = first[0].T
        return Boxes(_cxcywh(rows[:, :4]), rows[:, 4:].max(axis=1), rows[:, 4:].argmax(axis=1)), True
    if layout == "yolov5":
        _expect(first.ndim == 3 and first.shape[2] == 5 + classes, layout, shapes, f"1 x N x {5 + classes}")
        rows = first[0]
        per_class = rows[:, 5:] * rows[:, 4:5]
        return Boxes(_cxcywh(rows[:, :4]), per_class.max(axis=1), per_class.argmax(axis=1)), True
    if layout == "nms-rows":
        _expect(first.ndim >= 2 and first.shape[-1] == 6, layout, shapes, "1 x K x 6")
        rows = first.reshape(-1, 6)
        return Boxes(rows[:, :4], rows[:, 4], rows[:, 5].astype(int)), False
    if layout == "ssd":
        _expect(len(outputs) >= 4, layout, shapes, "boxes, classes, scores, count")
        count = int(np.asarray(outputs[3]).reshape(-1)[0])
        yx = np.asarray(outputs[0], dtype=np.float64).reshape(-1, 4)[:count]
        boxes = np.stack([yx[:, 1], yx[:, 0], yx[:, 3], yx[:, 2]], axis=1)  # normalised; scaled by the caller
        return Boxes(boxes, np.asarray(outputs[2], dtype=np.float64).reshape(-1)[:count],
                     np.asarray(outputs[1]).reshape(-1)[:count].astype(int)), False
    rows = first.reshape(-1, first.shape[-1]) if first.ndim >= 2 else first.reshape(0, 6)
    width = rows.shape[1]
    if width == 4 + classes and width != 6:
        scores, ids = rows[:, 4:].max(axis=1), rows[:, 4:].argmax(axis=1)
    else:
        _expect(width == 6, layout, shapes, f"rows of 6 or of 4 + {classes}")
        scores, ids = rows[:, 4], rows[:, 5].astype(int)
    boxes = _cxcywh(rows[:, :4]) if spec.box_format == "cxcywh" else rows[:, :4]
    return Boxes(boxes, scores, ids), True


def decode_boxes(outputs: Sequence[np.ndarray], spec: OutputSpec, labels: list[str],
                 input_size: tuple[int, int]) -> Boxes:
    """Thresholded, suppressed boxes in model-input pixels (height, width = `input_size`), best first."""
    found, needs_nms = _candidates(outputs, spec, len(labels))
    if (spec.detection_layout or "rows") == "ssd":
        height, width = input_size
        found.xyxy = found.xyxy * np.array([width, height, width, height], dtype=np.float64)
    if not np.all(np.isfinite(found.xyxy)) or not np.all(np.isfinite(found.scores)):
        raise ModelError("detector output contains NaN or infinity", "the model is broken; roll back")
    limits = np.full(len(labels), spec.score_threshold)
    for name, threshold in (spec.class_thresholds or {}).items():
        if name in labels:
            limits[labels.index(name)] = max(threshold, spec.score_threshold)
    valid = (found.classes >= 0) & (found.classes < len(labels))
    chosen = valid & (found.scores >= limits[np.clip(found.classes, 0, len(labels) - 1)])
    keep: list[int] = []
    for class_id in np.unique(found.classes[chosen]):
        index = np.nonzero(chosen & (found.classes == class_id))[0]
        kept = nms(found.xyxy[index], found.scores[index], spec.nms_iou) if needs_nms else range(len(index))
        keep.extend(int(index[k]) for k in kept)
    keep.sort(key=lambda i: -found.scores[i])
    keep = keep[: spec.max_detections] if spec.max_detections else keep
    return Boxes(found.xyxy[keep], found.scores[keep], found.classes[keep].astype(int))
