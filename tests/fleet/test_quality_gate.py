"""The quality gate: pooling and judging shadow evidence, and the rollout promoting or rolling back
by itself on it (real server, devices speaking the wire protocol); captured-frame storage."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest

from edgewise.core.wire import SHADOW_EVENT_TYPE, QualityCriteria, ShadowReport
from edgewise.fleet.rollouts.quality_gate import Evidence, judge, pool
from tests.fleet.conftest import DeviceClient, RunningServer
from tests.fleet.test_rollout import deploy, fleet_of, show, wait_for

CRITERIA = {"min_agreement": 0.8, "max_alarm_rate_shift": 0.2, "max_latency_p95_ms": 50.0, "min_shadow_frames": 20}


def report(agreement: float, frames: int = 30, p95: float = 5.0, alarms: tuple[float, float] = (0.1, 0.1),
           digest: str | None = None, version: str = "2") -> ShadowReport:
    return ShadowReport(serving_version="1", candidate_version=version, candidate_digest=digest, window_s=2.0,
                        frames_seen=frames, frames_shadowed=frames, top1_agreement=agreement,
                        candidate_latency_p50_ms=p95 / 2, candidate_latency_p95_ms=p95, serving_latency_p95_ms=4.0,
                        serving_alarm_rate=alarms[0], candidate_alarm_rate=alarms[1])


def test_pooling_weights_by_frames_and_keeps_the_worst_p95() -> None:
    evidence = pool({"a": [report(1.0, frames=30, p95=4.0)], "b": [report(0.0, frames=10, p95=9.0)]})
    assert evidence.frames == 40 and evidence.agreement == pytest.approx(0.75)
    assert evidence.candidate_latency_p95_ms == 9.0 and evidence.frames_by_device == {"a": 30, "b": 10}


def test_judge_names_every_failed_bound_and_waits_for_evidence() -> None:
    criteria = QualityCriteria.model_validate(CRITERIA)
    bad = judge(criteria, pool({"a": [report(0.3, alarms=(0.1, 0.9), p95=80)]}), ["a"])
    assert bad.decision == "rollback"
    assert bad.failed == ["agreement 0.3 < 0.8", "latency p95 ms 80 > 50", "alarm-rate shift 0.8 > 0.2"]
    good = judge(criteria, pool({"a": [report(0.95)]}), ["a"])
    assert good.decision == "promote" and "agreement 0.95 >= 0.8" in good.reason
    assert judge(criteria, pool({"a": [report(0.95, frames=5)]}), ["a"]).decision == "wait"
    assert judge(criteria, Evidence(), ["a"]).decision == "wait"


def test_a_detectors_box_agreement_is_judged_like_any_agreement() -> None:
    sent = {**report(0.6).model_dump(mode="json"), "boxes_matched": 60, "boxes_candidate_only": 10,
            "boxes_serving_only": 30}
    detector = ShadowReport.model_validate(sent)  # as ingest files it
    verdict = judge(QualityCriteria.model_validate(CRITERIA), pool({"a": [detector]}), ["a"])
    assert verdict.decision == "rollback" and verdict.failed == ["agreement 0.6 < 0.8"]
    assert (detector.boxes_matched, detector.boxes_serving_only) == (60, 30)


def shadow_event(seq: int, shadow: ShadowReport) -> dict[str, Any]:
    return {"seq": seq, "ts": time.time(), "type": SHADOW_EVENT_TYPE, "priority": "event",
            "data": shadow.model_dump(mode="json")}


def gated(fleet: RunningServer, bundles, version: str) -> tuple[list[DeviceClient], dict[str, Any], Any]:
    devices = fleet_of(fleet, 2, group=f"g{version}")
    candidate = bundles.publish(version=version)
    deployment = deploy(fleet, candidate.ref, {"group": f"g{version}"}, name="canary", percent=50,
                        quality=CRITERIA, shadow_share=0.5, gate_timeout_s=60)
    return devices, deployment, candidate


def canary_of(devices: list[DeviceClient]) -> DeviceClient:
    shadowing = [d for d in devices if d.desired().json()["shadow"] is not None]
    assert len(shadowing) == 1
    return shadowing[0]


def test_a_worse_candidate_is_rolled_back_with_the_reason(sqlite_fleet: RunningServer, bundles) -> None:
    devices, deployment, candidate = gated(sqlite_fleet, bundles, "2.0.0")
    assert deployment["status"] == "shadowing"
    canary = canary_of(devices)
    desired = canary.desired().json()
    assert desired["shadow"]["digest"] == candidate.digest and desired["shadow_share"] == 0.5
    assert desired["bundle"] is None  # the candidate never serves while it is judged
    body = {"events": [shadow_event(1, report(0.2, digest=candidate.digest, alarms=(0.0, 0.9)))]}
    assert canary.request("POST", "/device/ingest", body).json()["acked"] == [1]
    done = wait_for(lambda: (d := show(sqlite_fleet, deployment["id"]))["status"] == "rolled_back" and d)
    assert done["reason"].startswith("quality gate failed: agreement 0.2 < 0.8")
    assert ("shadowing", "rolled_back") in [(h["from_state"], h["to_state"]) for h in done["history"]]
    assert canary.desired().json()["shadow"] is None
    page = sqlite_fleet.operator("read").get(f"/shadow-reports?candidate_digest={candidate.digest}").json()
    assert [r["report"]["top1_agreement"] for r in page] == [0.2]


def test_a_better_candidate_is_promoted_and_rolls_out(sqlite_fleet: RunningServer, bundles) -> None:
    devices, deployment, candidate = gated(sqlite_fleet, bundles, "3.0.0")
    canary = canary_of(devices)
    canary.request("POST", "/device/ingest", {"events": [shadow_event(1, report(0.9, frames=10,
                                                                                   digest=candidate.digest))]})
    time.sleep(0.6)  # a few ticks: 10 frames is not enough evidence yet
    assert show(sqlite_fleet, deployment["id"])["status"] == "shadowing"
    canary.request("POST", "/device/ingest", {"events": [shadow_event(2, report(0.96, frames=30,
                                                                                   digest=candidate.digest))]})
    promoted = wait_for(lambda: (d := show(sqlite_fleet, deployment["id"]))["status"] == "rolling" and d)
    [entry] = [h for h in promoted["history"] if h["to_state"] == "promoted"]
    assert entry["detail"].startswith("quality gate passed: agreement 0.945 >= 0.8")
    assert canary.desired().json()["bundle"]["digest"] == candidate.digest


def test_bad_criteria_are_refused(sqlite_fleet: RunningServer, bundles) -> None:
    fleet_of(sqlite_fleet, 1, group="bad")
    candidate = bundles.publish(version="4.0.0")
    response = sqlite_fleet.operator("deploy").post("/deployments", json={
        "bundle": candidate.ref, "selector": {"group": "bad"},
        "strategy": {"name": "canary", "quality": {"min_agreement": 1.5}}})
    assert response.status_code == 422 and "min_agreement" in response.text


def test_captures_are_stored_once_acked_and_listed(sqlite_fleet: RunningServer) -> None:
    [device] = fleet_of(sqlite_fleet, 1, group="cap")
    jpeg = base64.b64encode(b"\xff\xd8fake jpeg\xff\xd9").decode()
    frames = [{"capture_id": f"c{i}", "ts": float(i), "label": "ok", "score": 0.4, "reasons": ["low-confidence"],
               "bundle_version": "1.0.0", "jpeg_b64": jpeg} for i in range(3)]
    for _ in range(2):  # a retried batch is stored once and acked again
        ack = device.request("POST", "/device/ingest", {"captures": frames}).json()
        assert ack["captured"] == ["c0", "c1", "c2"]
    api = sqlite_fleet.operator("read")
    page = api.get("/captures", params={"limit": 2, "images": "true"}).json()
    assert page["total"] == 3 and [c["capture_id"] for c in page["captures"]] == ["c0", "c1"]
    assert page["captures"][0]["jpeg_b64"] == jpeg and page["captures"][0]["device_id"] == device.device_id
    image = api.get(f"/captures/{device.device_id}/c2/image")
    assert image.status_code == 200 and image.content == base64.b64decode(jpeg)
    bad = device.request("POST", "/device/ingest", {"captures": [dict(frames[0], capture_id="x", jpeg_b64="%%")]})
    assert bad.status_code == 400
