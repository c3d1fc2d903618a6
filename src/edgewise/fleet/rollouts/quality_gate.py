"""The quality gate: promote or roll back a candidate on model signals from its shadow canaries.

Every canary device runs the candidate in shadow (agent/shadow.py) and sends ShadowReports. Once
each canary has shadowed `min_shadow_frames` frames, the reports are pooled (frame-weighted means,
worst p95 latency) and checked against the deployment's QualityCriteria. The verdict carries a
reason naming every criterion, its measured value and its bound, which goes into the history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from edgewise.core.wire import QualityCriteria, ShadowReport

Decision = Literal["promote", "rollback", "wait"]


@dataclass
class Evidence:
    """Shadow reports of all canaries pooled into the figures the criteria bound."""

    frames: int = 0
    frames_by_device: dict[str, int] = field(default_factory=dict)
    agreement: float | None = None
    candidate_latency_p50_ms: float | None = None
    candidate_latency_p95_ms: float | None = None
    serving_latency_p95_ms: float | None = None
    alarm_rate_shift: float | None = None


def pool(reports: dict[str, list[ShadowReport]]) -> Evidence:
    """device id -> its reports, to one Evidence (frame-weighted means; the worst p95 of any report)."""
    evidence = Evidence()
    weighted: dict[str, float] = {"agree": 0.0, "p50": 0.0, "serving_alarm": 0.0, "candidate_alarm": 0.0}
    p95s: list[float] = []
    serving_p95s: list[float] = []
    for device_id, device_reports in reports.items():
        evidence.frames_by_device[device_id] = sum(r.frames_shadowed for r in device_reports)
        for report in device_reports:
            n = report.frames_shadowed
            if n == 0:
                continue
            evidence.frames += n
            weighted["agree"] += (report.top1_agreement or 0.0) * n
            weighted["p50"] += (report.candidate_latency_p50_ms or 0.0) * n
            weighted["serving_alarm"] += (report.serving_alarm_rate or 0.0) * n
            weighted["candidate_alarm"] += (report.candidate_alarm_rate or 0.0) * n
            p95s.append(report.candidate_latency_p95_ms or 0.0)
            serving_p95s.append(report.serving_latency_p95_ms or 0.0)
    if evidence.frames:
        evidence.agreement = weighted["agree"] / evidence.frames
        evidence.candidate_latency_p50_ms = weighted["p50"] / evidence.frames
        evidence.candidate_latency_p95_ms = max(p95s)
        evidence.serving_latency_p95_ms = max(serving_p95s)
        evidence.alarm_rate_shift = abs(weighted["candidate_alarm"] - weighted["serving_alarm"]) / evidence.frames
    return evidence


@dataclass
class Verdict:
    decision: Decision
    reason: str
    failed: list[str] = field(default_factory=list)


def judge(criteria: QualityCriteria, evidence: Evidence, canaries: list[str]) -> Verdict:
    """Promote when every bound holds, roll back when any fails, wait while evidence is short."""
    short = [d for d in canaries if evidence.frames_by_device.get(d, 0) < criteria.min_shadow_frames]
    if short:
        return Verdict("wait", f"waiting for {criteria.min_shadow_frames} shadowed frames from {len(short)} "
                               f"canary device(s)")
    c, e = criteria, evidence
    fps = 1000.0 / e.candidate_latency_p50_ms if e.candidate_latency_p50_ms else None
    ratio = (e.candidate_latency_p95_ms / e.serving_latency_p95_ms
             if e.candidate_latency_p95_ms is not None and e.serving_latency_p95_ms else None)
    checks: list[tuple[str, float | None, float | None, bool]] = [  # name, measured, bound, at least?
        ("agreement", e.agreement, c.min_agreement, True),
        ("latency p95 ms", e.candidate_latency_p95_ms, c.max_latency_p95_ms, False),
        ("latency ratio", ratio, c.max_latency_ratio, False),
        ("fps", fps, c.min_fps, True),
        ("alarm-rate shift", e.alarm_rate_shift, c.max_alarm_rate_shift, False),
    ]
    passed: list[str] = []
    failed: list[str] = []
    for name, measured, bound, at_least in checks:
        if bound is None:
            continue
        if measured is None:
            failed.append(f"{name} not measured (bound {bound:g})")
            continue
        ok = measured >= bound if at_least else measured <= bound
        relation = (">=" if ok else "<") if at_least else ("<=" if ok else ">")
        (passed if ok else failed).append(f"{name} {measured:.3g} {relation} {bound:g}")
    where = f"over {e.frames} shadowed frames on {len(canaries)} canary device(s)"
    if failed:
        return Verdict("rollback", "quality gate failed: " + "; ".join(failed) + f" ({where})", failed)
    return Verdict("promote", "quality gate passed: " + ("; ".join(passed) or "no bounds set") + f" ({where})")
