"""Zones in frame pixels that tracks enter, stay in and cross; pure geometry and bookkeeping.

A track is placed by one anchor point of its box (`bottom_center` by default: where a person or
a vehicle touches the ground), named as supervision's `Position`.

`PolygonZone`: which tracks are inside, entries and exits, and how long each has dwelt (from the
first frame its anchor was seen inside to the latest). A track seen inside stays inside while
the tracker holds it, also when it is briefly lost, until its anchor is seen more than
`hysteresis_px` outside the polygon: a box shivering on the border neither exits nor re-enters.
A track first seen already inside counts as an entry.

`LineZone`: a segment from A to B. The side of a point P is the sign of the cross product
d = (B - A) x (P - A) = (Bx - Ax)(Py - Ay) - (By - Ay)(Px - Ax), supervision's convention: a
track crossing from d > 0 to d < 0 counts `in`, from d < 0 to d > 0 `out` (left to right of A->B
in the cross product's usual y-up sense; as the image shows it, y pointing down, from the right
of A->B to its left: for A = (0, 100), B = (640, 100) moving up the frame is `in`). The side
changes only when the anchor is more than `hysteresis_px` from the line, so jitter on the line
counts nothing; a change counts when the anchor's path from its last settled point crosses the
segment itself, not the line beyond A or B; each track counts at most once per direction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgewise.agent.config import Anchor, Point
from edgewise.agent.tracking import Box, Track

Direction = Literal["in", "out"]


def anchor_point(box: Box, anchor: Anchor) -> Point:
    x1, y1, x2, y2 = box
    vertical, _, horizontal = anchor.partition("_")
    if anchor == "center":
        vertical, horizontal = "center", "center"
    x = {"left": x1, "center": (x1 + x2) / 2, "right": x2}[horizontal]
    y = {"top": y1, "center": (y1 + y2) / 2, "bottom": y2}[vertical]
    return x, y


def distance_to_segment(point: Point, a: Point, b: Point) -> float:
    p, start, end = np.asarray(point), np.asarray(a), np.asarray(b)
    along = end - start
    t = float(np.clip(np.dot(p - start, along) / max(float(np.dot(along, along)), 1e-12), 0.0, 1.0))
    return float(np.linalg.norm(p - (start + t * along)))


class PolygonZone:
    """Which tracks are inside, entries, exits and dwell (the module docstring has the rules)."""

    def __init__(
        self, name: str, points: Sequence[Point], anchor: Anchor = "bottom_center", hysteresis_px: float = 0.0
    ) -> None:
        self.name, self.anchor, self.hysteresis_px = name, anchor, hysteresis_px
        self.points = [(float(x), float(y)) for x, y in points]
        self.entries = self.exits = 0
        self._inside: dict[int, Track] = {}  # the latest sighting of each track inside
        self._entered_at: dict[int, float] = {}
        self._seen_inside_at: dict[int, float] = {}

    def contains(self, point: Point) -> bool:
        """Ray casting: a ray to the right of the point crosses the border an odd number of times."""
        x, y = point
        inside = False
        for (x1, y1), (x2, y2) in zip(self.points, self.points[1:] + self.points[:1], strict=True):
            if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
                inside = not inside
        return inside

    def _outside_by_more_than_hysteresis(self, point: Point) -> bool:
        if self.contains(point):
            return False
        edges = zip(self.points, self.points[1:] + self.points[:1], strict=True)
        return min(distance_to_segment(point, a, b) for a, b in edges) > self.hysteresis_px

    def update(self, tracks: Sequence[Track], alive_ids: set[int], now: float) -> None:
        """Place this frame's tracks; the tracks the tracker no longer holds exit."""
        for track in tracks:
            point = anchor_point(track.box, self.anchor)
            if track.track_id in self._inside:
                if self._outside_by_more_than_hysteresis(point):
                    self._exit(track.track_id)
                    continue
            elif self.contains(point):
                self._entered_at[track.track_id] = now
                self.entries += 1
            else:
                continue
            self._inside[track.track_id] = track
            self._seen_inside_at[track.track_id] = now
        for track_id in [t for t in self._inside if t not in alive_ids]:
            self._exit(track_id)

    def _exit(self, track_id: int) -> None:
        del self._inside[track_id], self._entered_at[track_id], self._seen_inside_at[track_id]
        self.exits += 1

    @property
    def inside(self) -> list[Track]:
        return list(self._inside.values())

    def dwell_s(self, track_id: int) -> float:
        """Seconds from the track's first sighting inside to its latest (0 when not inside)."""
        if track_id not in self._inside:
            return 0.0
        return self._seen_inside_at[track_id] - self._entered_at[track_id]


@dataclass(frozen=True)
class Crossing:
    track: Track
    direction: Direction


@dataclass(frozen=True)
class _LineSide:
    side: int  # +1: d > 0, -1: d < 0 (see the module docstring)
    point: Point  # where the anchor last was, settled on that side
    counted: frozenset[Direction] = frozenset()


class LineZone:
    """In and out counts across the segment A->B, per label (the module docstring has the sign)."""

    def __init__(
        self, name: str, a: Point, b: Point, anchor: Anchor = "bottom_center", hysteresis_px: float = 0.0
    ) -> None:
        self.name, self.anchor, self.hysteresis_px = name, anchor, hysteresis_px
        self.a, self.b = (float(a[0]), float(a[1])), (float(b[0]), float(b[1]))
        self.in_by_label: Counter[str] = Counter()
        self.out_by_label: Counter[str] = Counter()
        self._sides: dict[int, _LineSide] = {}

    @property
    def points(self) -> list[Point]:
        return [self.a, self.b]

    @property
    def in_count(self) -> int:
        return sum(self.in_by_label.values())

    @property
    def out_count(self) -> int:
        return sum(self.out_by_label.values())

    def signed_distance(self, point: Point) -> float:
        (ax, ay), (bx, by), (px, py) = self.a, self.b, point
        return ((bx - ax) * (py - ay) - (by - ay) * (px - ax)) / float(np.hypot(bx - ax, by - ay))

    def update(self, tracks: Sequence[Track], alive_ids: set[int]) -> list[Crossing]:
        """This frame's crossings, counted; the tracks the tracker no longer holds are forgotten."""
        crossings = []
        for track in tracks:
            crossing = self._place(track)
            if crossing is not None:
                crossings.append(crossing)
                counts = self.in_by_label if crossing.direction == "in" else self.out_by_label
                counts[track.label] += 1
        for track_id in [t for t in self._sides if t not in alive_ids]:
            del self._sides[track_id]
        return crossings

    def _place(self, track: Track) -> Crossing | None:
        point = anchor_point(track.box, self.anchor)
        distance = self.signed_distance(point)
        if abs(distance) <= self.hysteresis_px:
            return None  # on the line, within the jitter band: the side it was on still holds
        side = 1 if distance > 0 else -1
        before = self._sides.get(track.track_id)
        if before is None or before.side == side:
            self._sides[track.track_id] = _LineSide(side, point, before.counted if before else frozenset())
            return None
        direction: Direction = "in" if side < 0 else "out"
        counts = self._path_crosses_segment(before.point, point) and direction not in before.counted
        self._sides[track.track_id] = _LineSide(
            side, point, (before.counted | {direction}) if counts else before.counted
        )
        return Crossing(track, direction) if counts else None

    def _path_crosses_segment(self, start: Point, end: Point) -> bool:
        """Whether the path start->end, which changes sides, meets the line between A and B."""
        d_start, d_end = self.signed_distance(start), self.signed_distance(end)
        fraction = d_start / (d_start - d_end)
        meet = np.asarray(start) + fraction * (np.asarray(end) - np.asarray(start))
        along = np.asarray(self.b) - np.asarray(self.a)
        t = float(np.dot(meet - np.asarray(self.a), along) / np.dot(along, along))
        return 0.0 <= t <= 1.0
