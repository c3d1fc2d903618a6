from __future__ import annotations

import base64
import sys
import time

import numpy as np

from edgewise.agent.config import RuleSettings
from edgewise.agent.pipeline import Detection, Result
from edgewise.agent.rules import RuleEngine


def result(label: str, score: float) -> Result:
    return Result("classify", label, score, 1.0)


def test_alarm_after_n_consecutive_frames_with_cooldown() -> None:
    engine = RuleEngine([RuleSettings(labels=["scratch", "crack"], min_score=0.8, consecutive=3, cooldown_s=10)])
    sequence = [("scratch", 0.9), ("crack", 0.95), ("ok", 0.99), ("scratch", 0.9), ("scratch", 0.85),
                ("crack", 0.81)]
    fired = [bool(engine.evaluate(result(label, score), None, "1", now=100 + i))
             for i, (label, score) in enumerate(sequence)]
    assert fired == [False, False, False, False, False, True]
    for i in range(3):  # inside the cooldown: nothing
        assert engine.evaluate(result("scratch", 0.9), None, "1", now=106 + i) == []
    # the streak went on through the cooldown, so the first frame after it fires
    events = engine.evaluate(result("scratch", 0.9), None, "1", now=120)
    assert len(events) == 1 and events[0].priority == "alarm"
    assert events[0].payload["label"] == "scratch" and events[0].payload["bundle_version"] == "1"
    assert engine.evaluate(result("ok", 0.9), None, "1", now=140) == []
    assert engine.evaluate(result("scratch", 0.9), None, "1", now=141) == []  # streak restarted


def test_low_scores_do_not_count() -> None:
    engine = RuleEngine([RuleSettings(consecutive=2, cooldown_s=0)])
    assert engine.evaluate(result("scratch", 0.79), None, None, now=1) == []
    assert engine.evaluate(result("scratch", 0.79), None, None, now=2) == []


def test_detections_and_snapshot(tmp_path) -> None:
    engine = RuleEngine([RuleSettings(consecutive=1, cooldown_s=0, snapshot=True)])
    detected = Result("detect", "scratch", 0.9, 1.0, detections=[Detection("scratch", 0.9, (2, 2, 20, 20))])
    events = engine.evaluate(detected, np.zeros((32, 32, 3), dtype=np.uint8), "1", now=1)
    assert [e.priority for e in events] == ["alarm", "snapshot"]
    assert base64.b64decode(events[1].payload["snapshot_jpeg_b64"])[:2] == b"\xff\xd8"  # a JPEG


def test_local_command_runs_without_a_server(tmp_path) -> None:
    marker = tmp_path / "fired.json"
    command = [sys.executable, "-c", f"import sys; open({str(marker)!r}, 'w').write(sys.stdin.read())"]
    engine = RuleEngine([RuleSettings(consecutive=1, cooldown_s=0, command=command)])
    engine.evaluate(result("crack", 0.99), None, None, now=1)
    deadline = time.time() + 10
    while not (marker.exists() and marker.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    assert '"label": "crack"' in marker.read_text()
