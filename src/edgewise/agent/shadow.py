"""Shadow evaluation: a candidate bundle runs beside the serving one, and nothing acts on its output.

On a configurable share of frames the candidate sees the same frame as the serving model, within a
CPU budget (a token bucket: `cpu_budget` seconds of candidate inference accrue per wall second, at
most `burst_s` saved up; a sampled frame that finds the bucket empty is skipped and counted). Per
camera the evaluator accumulates agreement (agent/agreement.py: the top-1 label of a classifier, the
matched boxes of a detector, with the counts of boxes only one model found), confidence and
detection-count shift, the latency of each model and the share of frames each would alarm on, plus a
budgeted sample of frames where the two disagree (agreement below 1). `report()` closes the window
and returns one `ShadowReport` per camera.

Sampling is deterministic (an accumulator, not a coin): with share 0.25 exactly every 4th frame is
shadowed, so a report's frame count is predictable and tests can pin it.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edgewise.agent.agreement import BoxMatch, compare
from edgewise.agent.capture import encode_jpeg
from edgewise.agent.config import ShadowSettings
from edgewise.agent.pipeline import Result
from edgewise.core.errors import EdgewiseError
from edgewise.core.wire import DisagreementSample, ShadowReport


class Runs(Protocol):
    """What the evaluator needs of a candidate: a Pipeline, or anything that maps a frame to a Result."""

    def run(self, frame: np.ndarray) -> Result: ...


@dataclass
class _CameraWindow:
    started: float
    frames_seen: int = 0
    skipped_for_budget: int = 0
    errors: int = 0
    agreement_sum: float = 0.0
    boxes: BoxMatch | None = None  # summed over the window's detector frames
    serving_scores: list[float] = field(default_factory=list)
    candidate_scores: list[float] = field(default_factory=list)
    serving_counts: list[int] = field(default_factory=list)
    candidate_counts: list[int] = field(default_factory=list)
    serving_latency: list[float] = field(default_factory=list)
    candidate_latency: list[float] = field(default_factory=list)
    serving_alarms: int = 0
    candidate_alarms: int = 0
    candidate_seconds: float = 0.0
    samples: list[DisagreementSample] = field(default_factory=list)
    accumulator: float = 0.0


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _mean(values: list[float] | list[int]) -> float | None:
    return float(np.mean(values)) if values else None


class ShadowEvaluator:
    """Feed it every served frame with `observe`; call `report` every `report_interval_s`."""

    def __init__(self, settings: ShadowSettings, candidate: Runs, serving_version: str, candidate_version: str,
                 candidate_digest: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings, self.candidate = settings, candidate
        self.serving_version, self.candidate_version = serving_version, candidate_version
        self.candidate_digest = candidate_digest
        self._clock = clock
        self._tokens = settings.burst_s
        self._last_refill = clock()
        self._windows: dict[str, _CameraWindow] = {}

    def _window(self, camera: str) -> _CameraWindow:
        if camera not in self._windows:
            self._windows[camera] = _CameraWindow(started=self._clock())
        return self._windows[camera]

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.settings.burst_s, self._tokens + (now - self._last_refill) * self.settings.cpu_budget)
        self._last_refill = now

    def _is_alarm(self, result: Result) -> bool:
        labels = set(self.settings.alarm_labels)
        if result.detections:
            return any(d.label in labels and d.score >= self.settings.alarm_min_score for d in result.detections)
        return result.label in labels and result.score >= self.settings.alarm_min_score

    def observe(self, frame: np.ndarray, serving: Result, camera: str = "default") -> Result | None:
        """Maybe run the candidate on `frame`; its Result (for capture's disagreement signal) or None."""
        window = self._window(camera)
        window.frames_seen += 1
        window.accumulator += self.settings.share
        if window.accumulator < 1.0 - 1e-9:
            return None
        window.accumulator -= 1.0
        self._refill()
        if self._tokens <= 0:
            window.skipped_for_budget += 1
            return None
        started = time.perf_counter()
        try:
            candidate = self.candidate.run(frame)
        except EdgewiseError:
            window.errors += 1
            return None
        finally:
            spent = time.perf_counter() - started
            self._tokens -= spent
            window.candidate_seconds += spent
        self._record(window, frame, serving, candidate)
        return candidate

    def _record(self, window: _CameraWindow, frame: np.ndarray, serving: Result, candidate: Result) -> None:
        agreement = compare(serving, candidate)
        window.agreement_sum += agreement.value
        if agreement.boxes is not None:
            window.boxes = _add(window.boxes, agreement.boxes)
        window.serving_scores.append(serving.score)
        window.candidate_scores.append(candidate.score)
        window.serving_counts.append(len(serving.detections))
        window.candidate_counts.append(len(candidate.detections))
        window.serving_latency.append(serving.latency_ms)
        window.candidate_latency.append(candidate.latency_ms)
        window.serving_alarms += self._is_alarm(serving)
        window.candidate_alarms += self._is_alarm(candidate)
        if agreement.value < 1.0 and len(window.samples) < self.settings.max_disagreement_samples:
            window.samples.append(DisagreementSample(
                ts=time.time(), serving_label=serving.label, serving_score=serving.score,
                candidate_label=candidate.label, candidate_score=candidate.score,
                jpeg_b64=base64.b64encode(encode_jpeg(frame, self.settings.sample_max_side, 80)).decode(),
            ))

    def due(self, camera: str = "default") -> bool:
        window = self._windows.get(camera)
        return window is not None and self._clock() - window.started >= self.settings.report_interval_s

    def report(self) -> list[ShadowReport]:
        """One report per camera seen since the last call; the windows start over."""
        now = self._clock()
        reports = [self._report(camera, window, now) for camera, window in self._windows.items()]
        self._windows = {}
        return reports

    def _report(self, camera: str, w: _CameraWindow, now: float) -> ShadowReport:
        shadowed = len(w.candidate_scores)
        elapsed = max(now - w.started, 0.0)
        serving_conf, candidate_conf = _mean(w.serving_scores), _mean(w.candidate_scores)
        serving_dets, candidate_dets = _mean(w.serving_counts), _mean(w.candidate_counts)
        boxes = w.boxes
        return ShadowReport(
            camera=camera, serving_version=self.serving_version, candidate_version=self.candidate_version,
            candidate_digest=self.candidate_digest, window_s=elapsed, frames_seen=w.frames_seen,
            frames_shadowed=shadowed, skipped_for_budget=w.skipped_for_budget,
            top1_agreement=w.agreement_sum / shadowed if shadowed else None,
            serving_confidence=serving_conf, candidate_confidence=candidate_conf,
            confidence_shift=_shift(candidate_conf, serving_conf),
            serving_detections=serving_dets, candidate_detections=candidate_dets,
            detection_count_shift=_shift(candidate_dets, serving_dets),
            boxes_matched=boxes.matched if boxes else None,
            boxes_candidate_only=boxes.candidate_only if boxes else None,
            boxes_serving_only=boxes.serving_only if boxes else None,
            serving_latency_p50_ms=_percentile(w.serving_latency, 50),
            serving_latency_p95_ms=_percentile(w.serving_latency, 95),
            candidate_latency_p50_ms=_percentile(w.candidate_latency, 50),
            candidate_latency_p95_ms=_percentile(w.candidate_latency, 95),
            serving_alarm_rate=w.serving_alarms / shadowed if shadowed else None,
            candidate_alarm_rate=w.candidate_alarms / shadowed if shadowed else None,
            cpu_share=w.candidate_seconds / elapsed if elapsed > 0 else 0.0,
            disagreements=w.samples,
        )


def _shift(candidate: float | None, serving: float | None) -> float | None:
    return None if candidate is None or serving is None else candidate - serving


def _add(total: BoxMatch | None, frame: BoxMatch) -> BoxMatch:
    if total is None:
        return frame
    return BoxMatch(total.matched + frame.matched, total.candidate_only + frame.candidate_only,
                    total.serving_only + frame.serving_only)
