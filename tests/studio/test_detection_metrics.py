"""COCO metrics through faster-coco-eval, checked against a case computed by hand."""

from pathlib import Path

import numpy as np
import pytest

from edgewise.studio.detect.annotations import AnnotatedImage, DetectionSet
from edgewise.studio.detect.metrics import ImageDetections, coco_metrics


def _dataset() -> DetectionSet:
    image = AnnotatedImage("a.png", 100, 100, boxes=[[50, 50, 90, 90], [0, 0, 10, 10]], classes=[0, 0])
    return DetectionSet(Path("."), ["car", "van"], [image])


def test_hand_computed_map() -> None:
    # Ranked: exact hit (0.9), a false alarm (0.8), a hit at IoU 0.62 (0.7).
    detections = ImageDetections(np.array([[50, 50, 90, 90], [20, 60, 40, 80], [0, 0, 10, 6.2]], dtype=float),
                                 np.array([0.9, 0.8, 0.7]), np.array([0, 0, 0]))
    metrics = coco_metrics(_dataset(), [detections])
    # IoU 0.50-0.60: TP, FP, TP -> precision 1 up to recall 0.5, then 2/3 (COCO's 101 recall points).
    ap_loose = (51 * 1.0 + 50 * 2 / 3) / 101
    # IoU 0.65-0.95: TP, FP, FP -> recall stops at 0.5.
    ap_strict = 51 / 101
    assert metrics.map50 == pytest.approx(ap_loose, abs=1e-4)
    assert metrics.map == pytest.approx((3 * ap_loose + 7 * ap_strict) / 10, abs=1e-4)
    assert metrics.map75 == pytest.approx(ap_strict, abs=1e-4)
    assert metrics.per_class_ap["car"] == pytest.approx(metrics.map, abs=1e-6)
    assert metrics.ar100 == pytest.approx((3 * 1.0 + 7 * 0.5) / 10, abs=1e-4)


def test_wrong_class_scores_nothing_and_perfect_scores_one() -> None:
    truth = _dataset()
    wrong = ImageDetections(truth.images[0].boxes, np.array([0.9, 0.8]), np.array([1, 1]))
    assert coco_metrics(truth, [wrong]).map == 0.0
    right = ImageDetections(truth.images[0].boxes, np.array([0.9, 0.8]), np.array([0, 0]))
    assert coco_metrics(truth, [right]).map == pytest.approx(1.0)


def test_no_detections_is_zero_not_an_error() -> None:
    empty = ImageDetections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=int))
    metrics = coco_metrics(_dataset(), [empty])
    assert (metrics.map, metrics.map50, metrics.images, metrics.boxes) == (0.0, 0.0, 1, 2)
