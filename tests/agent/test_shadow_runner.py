"""Shadow slot and capture inside the agent process: verified candidate, reports in the outbox, spool."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from edgewise.agent.capture import CaptureSpool
from edgewise.agent.config import AgentSettings, CaptureSettings, ShadowSettings, SourceSettings
from edgewise.agent.outbox import Outbox
from edgewise.agent.pipeline import Pipeline
from edgewise.agent.runner import AgentRunner
from edgewise.agent.shadow_slot import ShadowSlot
from edgewise.core.errors import SignatureError
from edgewise.core.wire import SHADOW_EVENT_TYPE, DesiredState, ShadowReport
from tests.agent import models
from tests.agent.conftest import ref_for
from tests.agent.fleet import wait_until
from tests.agent.test_runner import installed


def copier(bundles):
    by_digest = {m.digest: archive for archive, m in bundles.values()}

    def download(target, dest: Path) -> Path:
        shutil.copyfile(by_digest[target.digest], dest)
        return dest

    return download


def load(bundle_dir: Path) -> Pipeline:
    return Pipeline.from_dir(bundle_dir, ["cpu"], ["CPUExecutionProvider"], 1)


def test_the_slot_loads_only_a_verified_candidate(tmp_path: Path, bundles, publisher) -> None:
    slot = ShadowSlot(tmp_path / "shadow", ShadowSettings(), copier(bundles), lambda: [publisher.public], load)
    slot.offer(ref_for(*bundles["bad-sig"]), 1.0, "v1")
    wait_until(lambda: slot.error, 20, "the refusal")
    assert slot.evaluator is None and "sign" in slot.error.lower()
    assert not list((tmp_path / "shadow").glob("*/bundle.json"))
    slot.offer(ref_for(*bundles["scratch"]), 0.5, "v1")
    wait_until(lambda: slot.evaluator, 20, "the candidate")
    assert slot.evaluator.settings.share == 0.5  # the deployment's share wins over the local default
    slot.offer(None, 0.0, "v1")
    assert slot.evaluator is None and slot.target is None


def test_install_candidate_refuses_an_untrusted_bundle(tmp_path: Path, bundles, stranger) -> None:
    from edgewise.agent.shadow_slot import install_candidate

    with pytest.raises(SignatureError):
        install_candidate(ref_for(*bundles["v1"]), tmp_path, copier(bundles), [stranger.public])


def test_runner_shadows_reports_and_captures(tmp_path: Path, make_machine, bundles, publisher) -> None:
    data_dir = installed(tmp_path, make_machine, bundles, "v1")
    settings = AgentSettings(
        data_dir=data_dir, threads=1, drop_policy="none", trusted_keys=[publisher.public.b64], camera="dock",
        source=SourceSettings(kind="synthetic", frames=30, width=64, height=48),
        shadow=ShadowSettings(share=0.5, cpu_budget=1.0, burst_s=10.0, report_interval_s=3600),
        capture=CaptureSettings(enabled=True, low_confidence=0.0, novelty=2.0, disagreement=True),
    )
    runner = AgentRunner(settings)
    runner.shadow = ShadowSlot(data_dir / "shadow", settings.shadow, copier(bundles), lambda: [publisher.public], load)
    runner.on_desired(DesiredState(device_id="d", revision="r", shadow=ref_for(*bundles["scratch"]), shadow_share=1.0))
    wait_until(lambda: runner.shadow.evaluator, 20, "the candidate")
    started = time.monotonic()
    runner.run(once=True)
    assert time.monotonic() - started < 30
    events = Outbox(data_dir / "outbox.sqlite3").batch(1000).events
    [shadow_event] = [e for e in events if e.type == SHADOW_EVENT_TYPE]
    report = ShadowReport.model_validate(shadow_event.data)
    assert (report.camera, report.serving_version, report.candidate_version) == ("dock", "v1", "scratch")
    assert report.frames_shadowed == report.frames_seen == 30 and report.top1_agreement < 1.0
    frames = CaptureSpool(data_dir / "capture.sqlite3", settings.capture).frames()
    assert frames and all(f.reasons == ["disagreement"] and f.bundle_version == "v1" for f in frames)
    assert len(frames) == round((1 - report.top1_agreement) * 30)
    assert runner.reported_state().extra["capture"]["pending"] == len(frames)


# Boxes in model-input pixels (32 x 32); the frame is 64 x 48, so in frame pixels x doubles, y x 1.5.
SERVING_BOXES = [("scratch", 0.9, (2.0, 2.0, 14.0, 14.0)), ("hole", 0.8, (14.0, 16.0, 26.0, 28.0))]
CANDIDATE_BOXES = [("scratch", 0.9, (2.0, 2.0, 14.0, 14.0)), ("hole", 0.8, (20.0, 16.0, 32.0, 28.0))]  # IoU 1/3


@pytest.fixture(scope="module")
def detectors(tmp_path_factory: pytest.TempPathFactory, publisher):
    """Signed archives of two detectors that agree on one box of two on every frame."""
    root = tmp_path_factory.mktemp("detectors")
    return {version: models.make_archive(root, version, models.detector(root / f"{version}.onnx", boxes), publisher,
                                         models.detector_manifest(version))
            for version, boxes in (("d1", SERVING_BOXES), ("d2", CANDIDATE_BOXES))}


def test_runner_reports_box_agreement_of_a_detector_pair(tmp_path: Path, make_machine, detectors, publisher) -> None:
    data_dir = tmp_path / "agent"
    machine = make_machine(data_dir, download=copier(detectors))
    machine.offer(ref_for(*detectors["d1"]))
    machine.run_until_rest()
    assert machine.record.state == "idle"
    settings = AgentSettings(
        data_dir=data_dir, threads=1, drop_policy="none", trusted_keys=[publisher.public.b64],
        source=SourceSettings(kind="synthetic", frames=12, width=64, height=48),
        shadow=ShadowSettings(share=1.0, cpu_budget=1.0, burst_s=10.0, report_interval_s=3600),
        capture=CaptureSettings(enabled=True, low_confidence=0.0, novelty=2.0, disagreement=True),
    )
    runner = AgentRunner(settings)
    runner.shadow = ShadowSlot(data_dir / "shadow", settings.shadow, copier(detectors), lambda: [publisher.public],
                               load)
    runner.on_desired(DesiredState(device_id="d", revision="r", shadow=ref_for(*detectors["d2"]), shadow_share=1.0))
    wait_until(lambda: runner.shadow.evaluator, 20, "the candidate")
    runner.run(once=True)
    [event] = [e for e in Outbox(data_dir / "outbox.sqlite3").batch(1000).events if e.type == SHADOW_EVENT_TYPE]
    report = ShadowReport.model_validate(event.data)
    assert report.frames_shadowed == 12 and report.top1_agreement == pytest.approx(0.5)
    assert event.score == report.top1_agreement  # what the gate and the dashboard read
    assert (report.boxes_matched, report.boxes_candidate_only, report.boxes_serving_only) == (12, 12, 12)
    frames = CaptureSpool(data_dir / "capture.sqlite3", settings.capture).frames()
    assert len(frames) == 12 and all(f.reasons == ["disagreement"] for f in frames)
    assert frames[0].frame_size == (64, 48)
    assert [(d.label, d.box) for d in frames[0].detections] == [
        ("scratch", pytest.approx((4.0, 3.0, 28.0, 21.0))), ("hole", pytest.approx((28.0, 24.0, 52.0, 42.0)))]
