"""Zones and lines, the rules on them, and their configuration; explicit timestamps, no sleeping."""

from __future__ import annotations

import base64
from typing import Any

import cv2
import numpy as np
import pytest

from edgewise.agent.config import RuleSettings, TrackingSettings, ZoneSettings, parse_settings
from edgewise.agent.pipeline import Detection, Result
from edgewise.agent.rules import YELLOW, Event, RuleEngine, draw_result
from edgewise.agent.scene import Scene
from edgewise.agent.tracking import Track
from edgewise.agent.zones import LineZone, PolygonZone, anchor_point
from edgewise.core.errors import ConfigError


def standing_at(x: float, y: float, width: float = 20) -> tuple[float, float, float, float]:
    """A width x 40 box whose bottom centre (the default anchor) is at (x, y)."""
    return (x - width / 2, y - 40, x + width / 2, y)


def track(track_id: int, x: float, y: float, label: str = "person") -> Track:
    return Track(track_id, standing_at(x, y), label, 0.9, 0.0, 0.0, 1, 0)


def walk(line: LineZone, points: list[tuple[float, float]], track_id: int = 1) -> list[str]:
    """The directions counted as one track's anchor walks through `points`, one frame each."""
    return [c.direction for x, y in points for c in line.update([track(track_id, x, y)], {track_id})]


def test_anchors() -> None:
    box = (10.0, 20.0, 30.0, 60.0)
    assert anchor_point(box, "bottom_center") == (20.0, 60.0)
    assert anchor_point(box, "center") == (20.0, 40.0)
    assert anchor_point(box, "top_left") == (10.0, 20.0)
    assert anchor_point(box, "center_right") == (30.0, 40.0)


def test_a_track_crossing_a_line_counts_once_in_its_direction() -> None:
    # A -> B runs left to right across the frame: moving up the image is `in` (supervision's sign)
    line = LineZone("door", (0, 100), (200, 100), hysteresis_px=4)
    assert walk(line, [(100, y) for y in range(150, 40, -10)]) == ["in"]
    assert walk(line, [(50, y) for y in range(40, 160, 10)], track_id=2) == ["out"]
    assert (line.in_count, line.out_count) == (1, 1)
    assert line.in_by_label == {"person": 1}


def test_jitter_on_the_line_counts_once() -> None:
    jitter = [(100, y) for y in (150, 120, 103, 98, 102, 97, 101, 99, 103, 96, 60, 55)]
    steady = LineZone("door", (0, 100), (200, 100), hysteresis_px=4)
    assert walk(steady, jitter) == ["in"] and steady.out_count == 0
    # without the band the same jitter reads as a crossing back: hysteresis is what prevents it
    assert walk(LineZone("door", (0, 100), (200, 100), hysteresis_px=0), jitter) == ["in", "out"]


def test_each_track_counts_at_most_once_per_direction() -> None:
    line = LineZone("door", (0, 100), (200, 100), hysteresis_px=4)
    back_and_forth = [(100, 150), (100, 50), (100, 150), (100, 50), (100, 150)]
    assert walk(line, back_and_forth) == ["in", "out"]


def test_a_track_passing_beyond_the_segment_is_not_counted() -> None:
    line = LineZone("door", (0, 100), (200, 100), hysteresis_px=4)
    assert walk(line, [(300, y) for y in range(150, 40, -10)]) == []  # across the line, past B
    assert walk(line, [(-20, 150), (20, 50)], track_id=2) == ["in"]  # diagonally, meeting it inside
    assert walk(line, [(-60, 150), (-20, 50)], track_id=3) == []  # diagonally, meeting it before A


def test_polygon_entries_exits_and_dwell() -> None:
    yard = PolygonZone("yard", [(0, 0), (100, 0), (100, 100), (0, 100)], hysteresis_px=4)
    path = [(-30, 50), (-10, 50), (10, 50), (50, 50), (90, 50), (102, 50), (95, 50), (130, 50)]
    history = []
    for second, (x, y) in enumerate(path):
        yard.update([track(1, x, y)], {1}, now=1000 + second)
        history.append((len(yard.inside), yard.dwell_s(1)))
    # in at second 2; at x=102 it is 2 px outside, inside the band: still in (no exit, no re-entry)
    assert history == [(0, 0), (0, 0), (1, 0), (1, 1), (1, 2), (1, 3), (1, 4), (0, 0)]
    assert (yard.entries, yard.exits) == (1, 1)
    yard.update([track(2, 50, 50)], {2}, now=2000)
    yard.update([], set(), now=2001)  # the tracker dropped it: its visit is over
    assert (yard.entries, yard.exits, yard.inside) == (2, 2, [])


def test_concave_polygon() -> None:
    ell = PolygonZone("ell", [(0, 0), (100, 0), (100, 40), (40, 40), (40, 100), (0, 100)])
    assert ell.contains((20, 80)) and ell.contains((80, 20)) and not ell.contains((80, 80))


# --- rules on zones: the real tracker and zones, fed detections -----------------------------------

ZONES = [
    ZoneSettings(name="bay", kind="polygon", points=[(0, 0), (300, 0), (300, 200), (0, 200)]),
    ZoneSettings(name="door", kind="line", points=[(0, 300), (400, 300)]),
]


# Stands at x = 260 in the bay, walks 10 px a second out of it (its right edge is x = 300; the anchor
# is more than 4 px past it at 310), stands outside, and walks back in (at 290; at 300 it is outside).
OUT_AND_BACK = [260] * 3 + list(range(270, 350, 10)) + [340] * 3 + list(range(330, 250, -10)) + [260] * 6


def detected(*boxes: tuple[str, tuple[float, float, float, float]]) -> Result:
    detections = [Detection(label, 0.9, box) for label, box in boxes]
    return Result("detect", detections[0].label if detections else None, 0.9, 1.0, detections=detections)


def run(engine: RuleEngine, scene: Scene, frames: list[Result], start: float = 1000.0) -> list[list[Event]]:
    """Each frame one second after the last: track it, then evaluate the rules on it."""
    return [
        engine.evaluate(scene.observe(result, start + i), None, "1", now=start + i) for i, result in enumerate(frames)
    ]


def engine_for(*rules: RuleSettings) -> tuple[RuleEngine, Scene]:
    scene = Scene(TrackingSettings(), ZONES)
    return RuleEngine(list(rules), scene), scene


def test_zone_count_fires_once_when_held_then_after_its_cooldown() -> None:
    rule = RuleSettings(
        name="crowd", kind="zone_count", zone="bay", labels=["person"], more_than=2, duration_s=5, cooldown_s=10
    )
    engine, scene = engine_for(rule)
    three = detected(
        ("person", standing_at(50, 100)),
        ("person", standing_at(120, 100)),
        ("person", standing_at(190, 100)),
        ("car", standing_at(250, 150)),
    )
    fired = run(engine, scene, [three] * 20)
    times = [i for i, events in enumerate(fired) if events]
    assert times == [6, 16]  # confirmed at second 1 (min_hits 2), held 5 s; again after the cooldown
    event = fired[6][0]
    assert event.payload["type"] == "zone_count" and event.priority == "alarm"
    data = event.payload["data"]
    assert data["rule"] == "crowd" and data["zone"] == "bay" and data["inside"] == 3 and data["held_s"] == 5
    assert sorted(data["track_ids"]) == [1, 2, 3] and [40.0, 60.0, 60.0, 100.0] in data["boxes"]  # no car


def test_zone_count_hold_restarts_when_the_count_drops() -> None:
    rule = RuleSettings(
        name="crowd", kind="zone_count", zone="bay", labels=["person"], more_than=1, duration_s=3, cooldown_s=0
    )
    engine, scene = engine_for(rule)
    still = ("person", standing_at(50, 100))
    fired = run(engine, scene, [detected(still, ("person", standing_at(x, 100, width=40))) for x in OUT_AND_BACK])
    # held from second 1 (both confirmed): fires at 4 and the hold starts over; at 7 one is out and
    # the hold ends; back in at 18: fires at 21, and with no cooldown every 3 s while it holds
    assert [i for i, events in enumerate(fired) if events] == [4, 21, 24, 27]


def test_line_cross_fires_per_crossing_with_counts() -> None:
    both = RuleSettings(name="door-count", kind="line_cross", zone="door", labels=["person"])
    inward = RuleSettings(name="arrivals", kind="line_cross", zone="door", labels=["person"], direction="in")
    engine, scene = engine_for(both, inward)
    # one person walks up through the door, one walks down, a car crosses too
    frames = [
        detected(
            ("person", standing_at(100, 360 - 15 * i)),
            ("person", standing_at(300, 240 + 15 * i)),
            ("car", standing_at(200, 360 - 15 * i)),
        )
        for i in range(9)
    ]
    events = [e for per_frame in run(engine, scene, frames) for e in per_frame]
    found = [
        (e.payload["data"]["rule"], e.payload["data"]["direction"], e.payload["data"]["in"], e.payload["data"]["out"])
        for e in events
    ]
    assert sorted(found) == [("arrivals", "in", 1, 1), ("door-count", "in", 1, 1), ("door-count", "out", 1, 1)]
    assert all(e.priority == "event" and e.payload["type"] == "line_cross" for e in events)
    assert all(e.payload["label"] == "person" and e.payload["data"]["track_id"] in (1, 2, 3) for e in events)
    assert scene.lines["door"].in_by_label == {"person": 1, "car": 1}


def test_dwell_fires_once_per_visit() -> None:
    rule = RuleSettings(name="loiter", kind="dwell", zone="bay", labels=["person"], duration_s=4)
    engine, scene = engine_for(rule)
    xs = [260] * 3 + OUT_AND_BACK
    fired = run(engine, scene, [detected(("person", standing_at(x, 100, width=40))) for x in xs])
    times = [i for i, events in enumerate(fired) if events]
    assert times == [6, 26]  # inside from second 1: over 4 s at 6; out at 10, back in at 21: over 4 s at 26
    data = fired[6][0].payload["data"]
    assert data == {"rule": "loiter", "zone": "bay", "track_id": 1, "box": [250.0, 60.0, 290.0, 100.0], "dwell_s": 5}
    assert fired[26][0].payload["data"]["track_id"] == 1  # the same track, on its second visit


def test_zone_rules_ignore_results_the_scene_did_not_observe() -> None:
    rule = RuleSettings(name="door-count", kind="line_cross", zone="door", labels=["person"])
    engine, scene = engine_for(rule)
    for i in range(6):
        events = engine.evaluate(scene.observe(detected(("person", standing_at(100, 360 - 20 * i))), i), None, "1", i)
        if events:
            classification = Result("classify", "person", 0.9, 1.0)
            assert engine.evaluate(classification, None, "1", now=i) == []  # the crossing is not read twice
    assert scene.lines["door"].in_count == 1


def test_label_rules_carry_the_track_id_and_snapshots_draw_tracks_and_zones() -> None:
    engine, scene = engine_for(
        RuleSettings(name="seen", labels=["person"], min_score=0.5, consecutive=2, cooldown_s=0, snapshot=True)
    )
    frame = np.zeros((400, 400, 3), dtype=np.uint8)
    for i in range(2):
        tracked = scene.observe(detected(("person", standing_at(100 + 5 * i, 100))), 1000 + i)
        events = engine.evaluate(tracked, frame, "1", now=1000 + i)
    assert [e.priority for e in events] == ["alarm", "snapshot"]
    assert events[0].payload["data"] == {"rule": "seen", "consecutive": 2, "track_id": 1}
    jpeg = cv2.imdecode(np.frombuffer(base64.b64decode(events[1].payload["snapshot_jpeg_b64"]), np.uint8), 1)
    assert jpeg.shape == frame.shape
    drawn = draw_result(frame, tracked, scene.zones)
    assert tuple(drawn[300, 200]) == YELLOW  # the door line
    assert tuple(drawn[150, 200]) == (0, 0, 0)  # inside the bay, away from its border and the text
    bare = draw_result(frame, tracked)
    label_area = (slice(40, 58), slice(95, 150))  # "#1 person" above the box
    assert drawn[label_area].any() and bare[label_area].any() and not frame[label_area].any()


# --- configuration ------------------------------------------------------------------------------------


def config(**extra: Any) -> dict[str, Any]:
    return {
        "zones": [
            {"name": "bay", "kind": "polygon", "points": [[0, 0], [10, 0], [10, 10]]},
            {"name": "door", "kind": "line", "points": [[0, 5], [10, 5]]},
        ],
        **extra,
    }


def test_a_full_config_loads() -> None:
    settings = parse_settings(
        config(
            tracking={"min_hits": 3},
            rules=[
                {
                    "name": "crowd",
                    "kind": "zone_count",
                    "zone": "bay",
                    "labels": ["person"],
                    "more_than": 4,
                    "duration_s": 10,
                },
                {"name": "door", "kind": "line_cross", "zone": "door", "labels": ["person"], "direction": "in"},
                {"name": "loiter", "kind": "dwell", "zone": "bay", "labels": ["person"], "duration_s": 30},
                {"name": "defect"},
            ],
        )
    )
    assert [r.kind for r in settings.rules] == ["zone_count", "line_cross", "dwell", "label"]
    assert [r.event_type for r in settings.rules] == ["zone_count", "line_cross", "dwell", "alarm"]
    assert settings.zones[0].anchor == "bottom_center" and settings.tracking.min_hits == 3
    assert Scene.for_settings(settings) is not None
    assert Scene.for_settings(parse_settings(config(rules=[{"name": "defect"}]))) is None  # no tracker


@pytest.mark.parametrize(
    "data, message",
    [
        (
            {"zones": [{"name": "bay", "kind": "polygon", "points": [[0, 0], [1, 1]]}]},
            "zones.0: polygon zone 'bay' needs at least 3 points, got 2",
        ),
        (
            {"zones": [{"name": "door", "kind": "line", "points": [[0, 0], [1, 1], [2, 2]]}]},
            "zones.0: line zone 'door' needs exactly 2 points (A, B), got 3",
        ),
        (
            {"zones": [{"name": "door", "kind": "line", "points": [[0, "5"], [1, 1]]}]},
            "zones.0.points.0.1: Input should be a valid number",
        ),
        ({"zones": [{"name": "door", "kind": "line", "points": [[0, 0], [0, 0]]}]}, "has A == B"),
        (
            {"zones": [{"name": "door", "kind": "line", "points": [[0, 0], [1, 1]], "anchor": "feet"}]},
            "zones.0.anchor: Input should be 'center'",
        ),
        (
            config(rules=[{"kind": "dwell", "zone": "bya", "duration_s": 3}]),
            "rules.0.zone: rule 'defect' names zone 'bya', which is not declared (zones: bay, door)",
        ),
        (
            config(rules=[{"kind": "line_cross", "zone": "bay"}]),
            "rules.0.zone: a line_cross rule watches a line zone, and 'bay' is a polygon",
        ),
        (
            config(rules=[{"kind": "dwell", "zone": "bay", "duration_s": 3, "min_score": 0.5}]),
            "rules.0: rule 'defect': min_score does not apply to kind 'dwell' (it takes zone, duration_s)",
        ),
        (config(rules=[{"kind": "line_cross", "zone": "door", "cooldown_s": 5}]), "cooldown_s does not apply"),
        (config(rules=[{"zone": "bay"}]), "zone does not apply to kind 'label'"),
        (config(rules=[{"kind": "zone_count"}]), "rules.0: rule 'defect' of kind 'zone_count' needs a zone"),
        (config(rules=[{"kind": "dwell", "zone": "bay"}]), "of kind 'dwell' needs duration_s"),
        (
            config(zones=[{"name": "a", "kind": "line", "points": [[0, 0], [1, 1]]}] * 2),
            "zones.1.name: zone 'a' is declared twice",
        ),
        ({"tracking": {"high_score": 0.3, "low_score": 0.4}}, "low_score <= high_score <= new_track_score"),
    ],
)
def test_config_errors_are_one_line(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_settings(data)
    assert message in raised.value.message and "\n" not in str(raised.value)


def test_a_zone_rule_without_a_scene_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="needs a scene"):
        RuleEngine([RuleSettings(kind="dwell", zone="bay", duration_s=1)])
    with pytest.raises(ConfigError, match="no polygon zone named 'nowhere'"):
        RuleEngine([RuleSettings(kind="dwell", zone="nowhere", duration_s=1)], Scene(zones=ZONES))
