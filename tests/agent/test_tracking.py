"""The ByteTrack-style tracker: one id per object across frames, dropouts, crossings, weak detections."""

from __future__ import annotations

import random

from edgewise.agent.config import TrackingSettings
from edgewise.agent.pipeline import Detection
from edgewise.agent.tracking import Tracker, iou_matrix


def person(x: float, y: float = 100.0, score: float = 0.9, label: str = "person") -> Detection:
    """A 40 x 80 box whose top-left corner is at (x, y)."""
    return Detection(label, score, (x, y, x + 40, y + 80))


def ids_by_x(tracker: Tracker, detections: list[Detection], now: float) -> dict[float, int]:
    """The track id given to each detection, keyed by the detection's left edge."""
    return {detections[t.detection_index].box[0]: t.track_id for t in tracker.update(detections, now)}


def test_iou() -> None:
    assert iou_matrix([(0, 0, 10, 10)], [(0, 0, 10, 10), (5, 0, 15, 10), (20, 20, 30, 30)]).tolist() == [
        [1.0, 1 / 3, 0.0]
    ]


def test_moving_objects_keep_their_ids_through_a_three_frame_dropout() -> None:
    tracker = Tracker(TrackingSettings(min_hits=2))
    seen: dict[str, set[int]] = {"a": set(), "b": set()}
    for frame in range(20):
        a, b = person(10 + 6 * frame), person(400 - 6 * frame, y=300)
        detections = [] if 8 <= frame < 11 else [a, b]  # the detector misses both for 3 frames
        tracks = tracker.update(detections, now=frame / 10)
        if frame == 0:
            assert tracks == []  # tentative until min_hits frames
        if 8 <= frame < 11:
            assert tracks == [] and tracker.alive_ids == {1, 2}  # lost, not forgotten
        for track in tracks:
            seen["a" if detections[track.detection_index] is a else "b"].add(track.track_id)
    assert seen == {"a": {1}, "b": {2}}


def test_two_objects_crossing_paths_keep_their_ids() -> None:
    tracker = Tracker()
    order = random.Random(0)
    ids: dict[str, set[int]] = {"right": set(), "left": set()}
    for frame in range(40):  # they overlap around frame 16, almost completely
        going_right, going_left = person(20 + 8 * frame, y=100), person(276 - 8 * frame, y=108)
        detections = [going_right, going_left]
        order.shuffle(detections)  # the detector lists them in any order
        for track in tracker.update(detections, now=frame / 15):
            ids["right" if detections[track.detection_index] is going_right else "left"].add(track.track_id)
    assert len(ids["right"]) == 1 and len(ids["left"]) == 1 and ids["right"] != ids["left"]


def test_a_low_score_detection_extends_its_track() -> None:
    """ByteTrack's second stage: an occluded object the detector is unsure of keeps its track."""
    settings = TrackingSettings(high_score=0.5, low_score=0.1)
    tracker = Tracker(settings)
    for frame in range(3):
        tracker.update([person(10 + 5 * frame)], now=frame)
    unsure = tracker.update([person(25, score=0.3)], now=3)
    assert [(t.track_id, t.score) for t in unsure] == [(1, 0.3)]
    # without the second stage the same detection is ignored and the track is lost
    single_stage = Tracker(settings.model_copy(update={"low_score": 0.5}))
    for frame in range(3):
        single_stage.update([person(10 + 5 * frame)], now=frame)
    assert single_stage.update([person(25, score=0.3)], now=3) == []
    # and a weak detection never starts a track on its own
    fresh = Tracker(settings)
    assert [fresh.update([person(300, score=0.3)], now=t) for t in range(5)] == [[]] * 5
    assert fresh.alive_ids == set()


def test_ids_are_never_reused() -> None:
    tracker = Tracker(TrackingSettings(track_buffer=5))
    assert tracker.update([person(500)], now=0) == []  # a one-frame false positive: no id spent on it
    first = [ids_by_x(tracker, [person(10)], now=t) for t in range(1, 4)]
    assert first[-1] == {10: 1}
    for t in range(4, 11):  # gone past the buffer
        tracker.update([], now=t)
    assert tracker.alive_ids == set()
    again = [ids_by_x(tracker, [person(10)], now=t) for t in range(11, 14)]
    assert again[-1] == {10: 2}  # the same place, a new object: a new id


def test_a_track_keeps_its_majority_label() -> None:
    tracker = Tracker()
    for frame in range(6):
        tracker.update([person(10 + 4 * frame, label="car")], now=frame)
    flicker = tracker.update([person(34, label="truck")], now=6)  # the detector hesitates once
    assert [(t.track_id, t.label) for t in flicker] == [(1, "car")]
