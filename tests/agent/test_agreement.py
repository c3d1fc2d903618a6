"""Agreement of a shadow candidate with the serving model on one frame: labels, and boxes for detectors."""

from __future__ import annotations

import numpy as np
import pytest

from edgewise.agent.agreement import BoxMatch, compare, match_boxes
from edgewise.agent.pipeline import Detection, Result
from edgewise.core.detection_layouts import box_iou

CAR = Detection("car", 0.9, (10.0, 10.0, 50.0, 50.0))
PERSON = Detection("person", 0.8, (100.0, 20.0, 140.0, 100.0))


def detected(*detections: Detection) -> Result:
    best = max(detections, key=lambda d: d.score, default=None)
    return Result("detect", best.label if best else None, best.score if best else 0.0, 1.0,
                  detections=list(detections))


def moved(det: Detection, dx: float) -> Detection:
    x1, y1, x2, y2 = det.box
    return Detection(det.label, det.score, (x1 + dx, y1, x2 + dx, y2))


def test_identical_detections_agree_fully() -> None:
    agreement = compare(detected(CAR, PERSON), detected(PERSON, CAR))
    assert agreement.value == 1.0 and agreement.boxes == BoxMatch(2, 0, 0)


def test_a_box_moved_to_iou_0_3_is_no_match() -> None:
    shifted = moved(CAR, 40 * 7 / 13)  # overlap 40 - dx of width 40: IoU = (40 - dx) / (40 + dx) = 0.3
    iou = float(box_iou(np.array(CAR.box), np.array([shifted.box]))[0])
    assert iou == pytest.approx(0.3)
    agreement = compare(detected(CAR, PERSON), detected(shifted, PERSON))
    assert agreement.value == 0.5 and agreement.boxes == BoxMatch(1, 1, 1)


def test_a_small_shift_still_matches() -> None:
    assert compare(detected(CAR), detected(moved(CAR, 5.0))).value == 1.0


def test_an_extra_box_is_partial_agreement() -> None:
    extra = Detection("car", 0.4, (200.0, 200.0, 240.0, 240.0))
    agreement = compare(detected(CAR, PERSON), detected(CAR, PERSON, extra))
    assert agreement.value == pytest.approx(2 / 3) and agreement.boxes == BoxMatch(2, 1, 0)
    assert compare(detected(CAR, PERSON, extra), detected(CAR, PERSON)).boxes == BoxMatch(2, 0, 1)


def test_nothing_found_by_either_is_agreement() -> None:
    agreement = compare(detected(), detected())
    assert agreement.value == 1.0 and agreement.boxes == BoxMatch(0, 0, 0)
    assert compare(detected(CAR), detected()).value == 0.0


def test_swapped_labels_never_match() -> None:
    swapped = [Detection("person", CAR.score, CAR.box), Detection("car", PERSON.score, PERSON.box)]
    agreement = compare(detected(CAR, PERSON), detected(*swapped))
    assert agreement.value == 0.0 and agreement.boxes == BoxMatch(0, 2, 2)


def test_each_serving_box_matches_at_most_once() -> None:
    near = moved(CAR, 2.0)
    weaker_near = Detection("car", 0.3, moved(CAR, 1.0).box)
    assert match_boxes([CAR], [weaker_near, near]) == BoxMatch(1, 1, 0)


def test_classifiers_compare_top_labels_and_tasks_must_match() -> None:
    ok, crack = Result("classify", "ok", 0.9, 1.0), Result("classify", "crack", 0.9, 1.0)
    assert compare(ok, ok).value == 1.0 and compare(ok, crack).value == 0.0
    assert compare(ok, ok).boxes is None
    assert compare(detected(), Result("classify", None, 0.0, 1.0)).value == 0.0
