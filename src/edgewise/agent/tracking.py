"""Multi-object tracking by detection, ByteTrack's way (Zhang et al., 2022).

Each frame's detections are associated with the tracks in stages, each an optimal assignment
on IoU against the tracks' predicted boxes:

1. high-score detections (>= `high_score`) with the confirmed tracks, visible and lost;
2. low-score detections (>= `low_score`) with the confirmed tracks still unmatched that were
   visible last frame: an object that a blur or an occlusion makes the detector unsure of keeps
   its track instead of losing it (ByteTrack's point; SORT drops those detections);
3. the remaining high-score detections with the tentative tracks; what is left and scores at
   least `new_track_score` starts a tentative track.

A tentative track is confirmed (and given an id, never reused) after `min_hits` consecutive
frames and removed at its first miss; a confirmed track that misses is lost, kept `track_buffer`
frames for a detection to find it again where its motion predicts. Motion is the constant-
velocity Kalman filter of SORT/ByteTrack on (cx, cy, aspect, height), stepped once per processed
frame, with ByteTrack's noise (tuned for video rates: an object that moves about its own size
between two processed frames and turns sharply may get a new track). A track keeps one label,
the majority over its detections, so a detector hesitating between two classes does not split
an object in two.

The assignment is `lap.lapjv` (a compiled Jonker-Volgenant solver: a 1.7 MB wheel for x86-64
and aarch64, numpy its only dependency). Not `supervision`: the METADATA of its 0.31.2 wheel
requires av, defusedxml, matplotlib, pillow, pydeprecate, pyyaml, requests, scipy and tqdm, far
too much for a device, and that wheel ships no tracker any more (its docs point to Roboflow's
separate `trackers` package).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import lap
import numpy as np

from edgewise.agent.config import TrackingSettings
from edgewise.agent.pipeline import Detection

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in the source frame's pixels

LOW_SCORE_MIN_IOU = 0.5  # stage 2: ByteTrack's gate; an unsure detection must overlap well
TENTATIVE_MIN_IOU = 0.3  # stage 3: ByteTrack's gate for unconfirmed tracks
# A detection of another label may continue a track (detectors flicker between classes), but it
# costs as if it overlapped 0.3 less: between neighbours of two classes, each keeps its own.
LABEL_MISMATCH_COST = 0.3
UNMATCHABLE = 1e6  # a cost above any limit (lapjv wants finite costs)


@dataclass(frozen=True)
class Track:
    """A confirmed track as seen in the latest frame."""

    track_id: int
    box: Box  # the detection it matched in this frame
    label: str  # the majority label over its detections
    score: float  # of the detection it matched in this frame
    first_seen: float  # when its first detection arrived (before confirmation)
    age: float  # seconds since first_seen
    hits: int  # frames it was matched in
    detection_index: int  # index of that detection in the list given to `Tracker.update`


class BoxMotion:
    """The Kalman filter of SORT/ByteTrack: state (cx, cy, a, h) and their velocities per frame;
    noise scales with the box height, so a near object may move more pixels than a far one."""

    POSITION_STD, VELOCITY_STD = 1 / 20, 1 / 160
    TRANSITION = np.eye(8) + np.eye(8, k=4)
    OBSERVATION = np.eye(4, 8)

    def __init__(self, box: Box) -> None:
        measured = _xyah(box)
        self.mean = np.concatenate([measured, np.zeros(4)])
        h = measured[3]
        p, v = self.POSITION_STD, self.VELOCITY_STD
        self.covariance = np.diag(
            np.square([2 * p * h, 2 * p * h, 1e-2, 2 * p * h, 10 * v * h, 10 * v * h, 1e-5, 10 * v * h])
        )

    def predict(self, lost: bool = False) -> None:
        if lost:  # ByteTrack: a lost box keeps its size instead of growing or shrinking on
            self.mean[7] = 0.0
        h = self.mean[3]
        p, v = self.POSITION_STD, self.VELOCITY_STD
        noise = np.diag(np.square([p * h, p * h, 1e-2, p * h, v * h, v * h, 1e-5, v * h]))
        self.mean = self.TRANSITION @ self.mean
        self.covariance = self.TRANSITION @ self.covariance @ self.TRANSITION.T + noise

    def correct(self, box: Box) -> None:
        h = self.mean[3]
        noise = np.diag(np.square([self.POSITION_STD * h, self.POSITION_STD * h, 1e-1, self.POSITION_STD * h]))
        projected = self.OBSERVATION @ self.covariance @ self.OBSERVATION.T + noise
        gain = np.linalg.solve(projected, self.OBSERVATION @ self.covariance).T
        self.mean = self.mean + gain @ (_xyah(box) - self.OBSERVATION @ self.mean)
        self.covariance = self.covariance - gain @ projected @ gain.T

    def box(self) -> Box:
        cx, cy, aspect, h = (float(v) for v in self.mean[:4])
        w = aspect * h
        return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def _xyah(box: Box) -> np.ndarray:
    x1, y1, x2, y2 = box
    h = max(y2 - y1, 1e-6)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / h, h])


def iou_matrix(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray:
    boxes_a, boxes_b = np.asarray(a, dtype=float).reshape(-1, 4), np.asarray(b, dtype=float).reshape(-1, 4)
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    overlap = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_a = (boxes_a[:, 2:] - boxes_a[:, :2]).clip(0).prod(axis=1)
    area_b = (boxes_b[:, 2:] - boxes_b[:, :2]).clip(0).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - overlap
    return np.where(union > 0, overlap / np.maximum(union, 1e-12), 0.0)


@dataclass(eq=False)  # compared and hashed by identity
class _TrackState:
    motion: BoxMotion
    first_seen: float
    track_id: int | None = None  # None while tentative
    hits: int = 0
    missed: int = 0  # consecutive frames without a match
    labels: Counter[str] = field(default_factory=Counter)

    @property
    def label(self) -> str:
        return self.labels.most_common(1)[0][0]


class Tracker:
    """`update(detections, now)` once per detection result -> the confirmed tracks it matched."""

    def __init__(self, settings: TrackingSettings | None = None) -> None:
        self.settings = settings or TrackingSettings()
        self._tracks: list[_TrackState] = []
        self._last_id = 0

    @property
    def alive_ids(self) -> set[int]:
        """Ids of the confirmed tracks still held, visible or lost."""
        return {t.track_id for t in self._tracks if t.track_id is not None}

    def update(self, detections: Sequence[Detection], now: float) -> list[Track]:
        s = self.settings
        for track in self._tracks:
            track.motion.predict(lost=track.missed > 0)
        high = [i for i, d in enumerate(detections) if d.score >= s.high_score]
        low = [i for i, d in enumerate(detections) if s.low_score <= d.score < s.high_score]
        confirmed = [t for t in self._tracks if t.track_id is not None]
        tentative = [t for t in self._tracks if t.track_id is None]

        matched: dict[_TrackState, int] = {}  # -> detection index
        high = self._associate(confirmed, high, detections, s.match_iou, matched)
        was_visible = [t for t in confirmed if t not in matched and t.missed == 0]
        self._associate(was_visible, low, detections, LOW_SCORE_MIN_IOU, matched)
        high = self._associate(tentative, high, detections, TENTATIVE_MIN_IOU, matched)

        for i in high:
            if detections[i].score >= s.new_track_score:
                self._tracks.append(_TrackState(BoxMotion(detections[i].box), first_seen=now))
                matched[self._tracks[-1]] = i
        return self._apply(matched, detections, now)

    def _associate(
        self,
        tracks: list[_TrackState],
        candidates: list[int],
        detections: Sequence[Detection],
        min_iou: float,
        matched: dict[_TrackState, int],
    ) -> list[int]:
        """Match `tracks` to `candidates` (detection indices) into `matched`; the unmatched candidates."""
        if not tracks or not candidates:
            return candidates
        overlap = iou_matrix([t.motion.box() for t in tracks], [detections[i].box for i in candidates])
        mismatch = np.array([[detections[i].label != t.label for i in candidates] for t in tracks])
        cost = 1.0 - overlap + LABEL_MISMATCH_COST * mismatch
        cost[overlap < min_iou] = UNMATCHABLE  # the gate holds whatever the label
        limit = 1.0 - min_iou + LABEL_MISMATCH_COST
        _, row_to_col, _ = cast(
            tuple[float, np.ndarray, np.ndarray], lap.lapjv(cost, extend_cost=True, cost_limit=limit)
        )
        taken: set[int] = set()
        for row, col in enumerate(row_to_col):
            if col >= 0 and cost[row, col] < UNMATCHABLE:
                matched[tracks[row]] = candidates[int(col)]
                taken.add(int(col))
        return [index for col, index in enumerate(candidates) if col not in taken]

    def _apply(self, matched: dict[_TrackState, int], detections: Sequence[Detection], now: float) -> list[Track]:
        """Correct the matched tracks, age the rest, confirm and drop; the confirmed matched tracks."""
        kept: list[_TrackState] = []
        visible: list[Track] = []
        for track in self._tracks:
            index = matched.get(track)
            if index is None:
                track.missed += 1
                if track.track_id is not None and track.missed <= self.settings.track_buffer:
                    kept.append(track)  # lost: coasting on its motion until found or expired
                continue
            detection = detections[index]
            if track.hits:  # a new track's filter already starts at its first box
                track.motion.correct(detection.box)
            track.hits, track.missed = track.hits + 1, 0
            track.labels[detection.label] += 1
            if track.track_id is None and track.hits >= self.settings.min_hits:
                self._last_id += 1
                track.track_id = self._last_id
            kept.append(track)
            if track.track_id is not None:
                visible.append(
                    Track(
                        track.track_id,
                        detection.box,
                        track.label,
                        detection.score,
                        track.first_seen,
                        now - track.first_seen,
                        track.hits,
                        index,
                    )
                )
        self._tracks = kept
        return visible
