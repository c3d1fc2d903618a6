"""Rules turn results into events: "label in {scratch, crack} with score >= 0.8 for 3 consecutive
frames -> alarm", with a cooldown; optional JPEG snapshot with the result drawn; optional local
actions (a command, a webhook) that run on the device, so they work offline too."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edgewise.agent.config import RuleSettings
from edgewise.agent.pipeline import Result
from edgewise.core.wire import EventPriority

log = logging.getLogger(__name__)


@dataclass
class Event:
    priority: EventPriority
    payload: dict[str, Any]


def draw_result(frame: np.ndarray, result: Result) -> np.ndarray:
    """A copy of the frame with the decision and its boxes (in the frame's pixels) drawn on it."""
    canvas = frame.copy()
    for detection in result.detections:
        x1, y1, x2, y2 = (int(v) for v in detection.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 0, 255), 2)
    text = f"{result.label} {result.score:.2f}"
    cv2.putText(canvas, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 255), 2, cv2.LINE_AA)
    return canvas


def snapshot_jpeg_b64(frame: np.ndarray, result: Result, quality: int = 80) -> str:
    ok, encoded = cv2.imencode(".jpg", draw_result(frame, result), [cv2.IMWRITE_JPEG_QUALITY, quality])
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


class Rule:
    def __init__(self, settings: RuleSettings) -> None:
        self.settings = settings
        self.streak = 0
        self.last_fired: float | None = None

    def matches(self, result: Result) -> tuple[str, float] | None:
        if result.detections:
            for detection in result.detections:
                if detection.label in self.settings.labels and detection.score >= self.settings.min_score:
                    return detection.label, detection.score
            return None
        if result.label in self.settings.labels and result.score >= self.settings.min_score:
            return result.label, result.score
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
        label, score = hit
        payload: dict[str, Any] = {
            "ts": now, "priority": self.settings.priority, "type": self.settings.event_type,
            "label": label, "score": score, "bundle_name": bundle_name, "bundle_version": bundle_version,
            "data": {"rule": self.settings.name, "consecutive": self.settings.consecutive},
        }
        events = [Event(self.settings.priority, payload)]
        if self.settings.snapshot and frame is not None:
            snapshot = dict(payload, priority="snapshot", type="snapshot",
                            snapshot_jpeg_b64=snapshot_jpeg_b64(frame, result))
            events.append(Event("snapshot", snapshot))
        run_local_actions(self.settings, payload)
        return events


class RuleEngine:
    def __init__(self, rules: list[RuleSettings]) -> None:
        self.rules = [Rule(r) for r in rules]

    def evaluate(self, result: Result, frame: np.ndarray | None, bundle_version: str | None,
                 now: float | None = None, bundle_name: str | None = None) -> list[Event]:
        return [event for rule in self.rules
                for event in rule.evaluate(result, frame, bundle_version, now, bundle_name)]
