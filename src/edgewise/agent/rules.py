"""Rules turn results into events: "label in {scratch, crack} with score >= 0.8 for 3 consecutive
frames -> alarm", with a cooldown; or, on tracked detections, a rule on a zone or a line
(agent/zone_rules.py: zone_count, line_cross, dwell). Every kind has the optional JPEG snapshot
with the result (track ids, zones) drawn, and optional local actions (a command, a webhook) that
run on the device, so they work offline too."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edgewise.agent.config import RuleSettings
from edgewise.agent.pipeline import Result
from edgewise.agent.scene import Scene
from edgewise.agent.zone_rules import ZONE_RULE_KINDS, Finding
from edgewise.agent.zones import LineZone, PolygonZone
from edgewise.core.errors import ConfigError
from edgewise.core.wire import EventPriority

log = logging.getLogger(__name__)


@dataclass
class Event:
    priority: EventPriority
    payload: dict[str, Any]


RED, YELLOW = (0, 0, 255), (0, 255, 255)  # BGR


def _label(canvas: np.ndarray, text: str, at: tuple[int, int], color: tuple[int, int, int]) -> None:
    cv2.putText(canvas, text, (at[0], max(at[1], 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1, cv2.LINE_AA)


def draw_zones(canvas: np.ndarray, zones: Sequence[PolygonZone | LineZone]) -> None:
    for zone in zones:
        points = np.array(zone.points, dtype=np.int32)
        start = (int(points[0][0]), int(points[0][1]) - 6)
        if isinstance(zone, PolygonZone):
            cv2.polylines(canvas, [points], True, YELLOW, 2)
            _label(canvas, f"{zone.name}: {len(zone.inside)} inside", start, YELLOW)
        else:
            cv2.line(canvas, tuple(points[0]), tuple(points[1]), YELLOW, 2)
            _label(canvas, f"{zone.name}: in {zone.in_count} out {zone.out_count}", start, YELLOW)


def draw_result(frame: np.ndarray, result: Result, zones: Sequence[PolygonZone | LineZone] = ()) -> np.ndarray:
    """A copy of the frame with the decision, its boxes (in the frame's pixels) with their track ids,
    and the zones drawn on it."""
    canvas = frame.copy()
    draw_zones(canvas, zones)
    for detection in result.detections:
        x1, y1, x2, y2 = (int(v) for v in detection.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), RED, 2)
        if detection.track_id is not None:
            _label(canvas, f"#{detection.track_id} {detection.label}", (x1, y1 - 4), RED)
    text = f"{result.label} {result.score:.2f}"
    cv2.putText(canvas, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, RED, 2, cv2.LINE_AA)
    return canvas


def snapshot_jpeg_b64(frame: np.ndarray, result: Result, quality: int = 80,
                      zones: Sequence[PolygonZone | LineZone] = ()) -> str:
    ok, encoded = cv2.imencode(".jpg", draw_result(frame, result, zones), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return base64.b64encode(encoded.tobytes()).decode() if ok else ""


def run_local_actions(rule: RuleSettings, payload: dict[str, Any]) -> None:
    """Fire and forget, off the inference thread; failures are logged, never raised."""

    def act() -> None:
        if rule.command:
            try:
                subprocess.run(rule.command, input=json.dumps(payload).encode(), timeout=30, check=False)  # noqa: S603
            except (OSError, subprocess.SubprocessError) as error:
                log.warning("rule %s: command failed: %s", rule.name, error)
        if rule.webhook:
            import httpx

            try:
                httpx.post(rule.webhook, json=payload, timeout=5.0)
            except httpx.HTTPError as error:
                log.warning("rule %s: webhook failed: %s", rule.name, error)

    if rule.command or rule.webhook:
        threading.Thread(target=act, name=f"rule-{rule.name}", daemon=True).start()


def fire(settings: RuleSettings, finding: Finding, now: float, result: Result, frame: np.ndarray | None,
         bundle_version: str | None, bundle_name: str | None,
         zones: Sequence[PolygonZone | LineZone] = ()) -> list[Event]:
    """A rule's event for what it found, its snapshot when asked for, and its local actions."""
    payload: dict[str, Any] = {
        "ts": now, "priority": settings.priority, "type": settings.event_type,
        "label": finding.label, "score": finding.score, "bundle_name": bundle_name,
        "bundle_version": bundle_version, "data": finding.data,
    }
    events = [Event(settings.priority, payload)]
    if settings.snapshot and frame is not None:
        snapshot = dict(payload, priority="snapshot", type="snapshot",
                        snapshot_jpeg_b64=snapshot_jpeg_b64(frame, result, zones=zones))
        events.append(Event("snapshot", snapshot))
    run_local_actions(settings, payload)
    return events


class Rule:
    """The `label` kind: a label scored at least `min_score` for `consecutive` frames."""

    def __init__(self, settings: RuleSettings, zones: Sequence[PolygonZone | LineZone] = ()) -> None:
        self.settings, self.zones = settings, zones
        self.streak = 0
        self.last_fired: float | None = None

    def matches(self, result: Result) -> Finding | None:
        s = self.settings
        if result.detections:
            for detection in result.detections:
                if detection.label in s.labels and detection.score >= s.min_score:
                    data: dict[str, Any] = {"rule": s.name, "consecutive": s.consecutive}
                    if detection.track_id is not None:
                        data["track_id"] = detection.track_id
                    return Finding(detection.label, detection.score, data)
            return None
        if result.label in s.labels and result.score >= s.min_score:
            return Finding(result.label, result.score, {"rule": s.name, "consecutive": s.consecutive})
        return None

    def evaluate(self, result: Result, frame: np.ndarray | None, bundle_version: str | None,
                 now: float | None = None, bundle_name: str | None = None) -> list[Event]:
        now = time.time() if now is None else now
        hit = self.matches(result)
        self.streak = self.streak + 1 if hit else 0
        if hit is None or self.streak < self.settings.consecutive:
            return []
        if self.last_fired is not None and now - self.last_fired < self.settings.cooldown_s:
            return []
        self.last_fired = now
        self.streak = 0
        return fire(self.settings, hit, now, result, frame, bundle_version, bundle_name, self.zones)


class ZoneRule:
    """A rule on a zone or a line: its kind's condition (agent/zone_rules.py), checked once for
    each frame the scene observed."""

    def __init__(self, settings: RuleSettings, scene: Scene) -> None:
        self.settings, self.scene = settings, scene
        self.condition = ZONE_RULE_KINDS[settings.kind](settings, scene)
        self.checked_frame = 0

    def evaluate(self, result: Result, frame: np.ndarray | None, bundle_version: str | None,
                 now: float | None = None, bundle_name: str | None = None) -> list[Event]:
        if self.scene.frames == self.checked_frame:
            return []  # not a tracked detection result: nothing new to see
        self.checked_frame = self.scene.frames
        now = time.time() if now is None else now
        return [event for finding in self.condition.check(now)
                for event in fire(self.settings, finding, now, result, frame, bundle_version, bundle_name,
                                  self.scene.zones)]


class RuleEngine:
    """Every configured rule, in order. Zone rules read `scene`, which the caller updates with
    `scene.observe(result, now)` on each detection result before `evaluate`."""

    def __init__(self, rules: list[RuleSettings], scene: Scene | None = None) -> None:
        self.scene = scene
        zones = scene.zones if scene else []
        self.rules: list[Rule | ZoneRule] = []
        for settings in rules:
            if settings.kind == "label":
                self.rules.append(Rule(settings, zones))
            elif scene is None:
                raise ConfigError(f"rule {settings.name!r} of kind {settings.kind!r} needs a scene with its zone",
                                  "build the RuleEngine with Scene.for_settings(settings)")
            else:
                self.rules.append(ZoneRule(settings, scene))

    def evaluate(self, result: Result, frame: np.ndarray | None, bundle_version: str | None,
                 now: float | None = None, bundle_name: str | None = None) -> list[Event]:
        now = time.time() if now is None else now
        return [event for rule in self.rules
                for event in rule.evaluate(result, frame, bundle_version, now, bundle_name)]
