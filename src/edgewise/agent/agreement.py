"""How far a shadow candidate agrees with the serving model on one frame (0..1).

    classifiers  1 when the top-1 labels are the same, else 0
    detectors    the candidate's boxes, best score first, each take the unmatched serving box of the
                 same label with the highest IoU, if it is at least MATCH_IOU; agreement is
                 matched / max(candidate boxes, serving boxes), and 1 when neither found anything

A candidate of another task than the serving model's never agrees. Shadow reports (agent/shadow.py)
average the figure over frames, and capture (agent/capture.py) keeps frames where it is below 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgewise.agent.pipeline import Detection, Result
from edgewise.core.detection_layouts import box_iou

MATCH_IOU = 0.5


@dataclass(frozen=True)
class BoxMatch:
    matched: int
    candidate_only: int
    serving_only: int

    @property
    def agreement(self) -> float:
        most = self.matched + max(self.candidate_only, self.serving_only)
        return self.matched / most if most else 1.0


@dataclass(frozen=True)
class Agreement:
    value: float
    boxes: BoxMatch | None = None  # detectors only


def match_boxes(serving: Sequence[Detection], candidate: Sequence[Detection], min_iou: float = MATCH_IOU) -> BoxMatch:
    """Greedy one-to-one matching of same-label boxes at IoU >= `min_iou`, best candidate score first."""
    ranked = sorted(serving, key=lambda d: -d.score)  # on equal IoU the better serving box wins
    boxes = np.array([d.box for d in ranked], dtype=np.float64).reshape(-1, 4)
    free = [True] * len(ranked)
    matched = 0
    for det in sorted(candidate, key=lambda d: -d.score):
        pool = [i for i, d in enumerate(ranked) if free[i] and d.label == det.label]
        if not pool:
            continue
        ious = box_iou(np.asarray(det.box, dtype=np.float64), boxes[pool])
        best = int(np.argmax(ious))
        if ious[best] >= min_iou:
            free[pool[best]] = False
            matched += 1
    return BoxMatch(matched, len(candidate) - matched, len(serving) - matched)


def compare(serving: Result, candidate: Result) -> Agreement:
    if serving.task != candidate.task:
        return Agreement(0.0)
    if serving.task == "detect":
        boxes = match_boxes(serving.detections, candidate.detections)
        return Agreement(boxes.agreement, boxes)
    return Agreement(1.0 if serving.label == candidate.label else 0.0)
