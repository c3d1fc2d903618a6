"""Detector predictions as the agent would make them, and their COCO metrics.

Raw head -> boxes and class scores (`model.decode`) -> `core.detection_layouts.decode_boxes`,
the thresholds and class-aware NMS the agent runs, with the low score threshold COCO
evaluation expects (a high one would cut the recall end of every precision curve).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgewise.core.detection_layouts import decode_boxes
from edgewise.core.manifest import OutputSpec
from edgewise.studio.detect.annotations import AnnotatedImage, DetectionSet
from edgewise.studio.detect.data import FittedFrames
from edgewise.studio.detect.metrics import DetectionMetrics, ImageDetections, coco_metrics
from edgewise.studio.detect.model import Detector, decode, points

EVAL_SCORE_THRESHOLD = 0.01
EVAL_NMS_IOU = 0.6
PRE_NMS_TOP_K = 400  # candidates per image kept before NMS, by best class score


def evaluation_spec() -> OutputSpec:
    return OutputSpec(decode="detection", score_threshold=EVAL_SCORE_THRESHOLD, nms_iou=EVAL_NMS_IOU)


def rows_to_detections(rows: np.ndarray, labels: list[str], spec: OutputSpec, size: tuple[int, int]) -> ImageDetections:
    """One image's `(N, 4 + C)` decoded rows -> suppressed detections in input pixels."""
    best = rows[:, 4:].max(axis=1)
    top = np.argsort(-best, kind="stable")[:PRE_NMS_TOP_K]
    found = decode_boxes([rows[top]], spec, labels, size)
    return ImageDetections(found.xyxy, found.scores, found.classes)


@torch.no_grad()
def predict_fitted(model: Detector, frames: FittedFrames, batch_size: int = 32,
                   spec: OutputSpec | None = None) -> list[ImageDetections]:
    """Detections (input pixels) for every fitted frame."""
    model.eval()
    spec = spec or evaluation_spec()
    centres, strides = points(frames.height, frames.width)
    results = []
    for start in range(0, len(frames), batch_size):
        images = np.stack(frames.images[start:start + batch_size])
        boxes, scores = decode(model(torch.from_numpy(frames.preprocess.to_tensor(images))), centres, strides)
        rows = torch.cat([boxes, scores], dim=-1).numpy().astype(np.float64)
        results += [rows_to_detections(r, frames.labels, spec, (frames.height, frames.width)) for r in rows]
    return results


def fitted_truth(frames: FittedFrames) -> DetectionSet:
    """The frames' boxes (input pixels) as a dataset, for metrics on fitted frames."""
    images = [AnnotatedImage(str(i), frames.width, frames.height, b, c)
              for i, (b, c) in enumerate(zip(frames.boxes, frames.classes, strict=True))]
    return DetectionSet(Path("."), frames.labels, images)


def evaluate_fitted(model: Detector, frames: FittedFrames) -> DetectionMetrics:
    return coco_metrics(fitted_truth(frames), predict_fitted(model, frames))
