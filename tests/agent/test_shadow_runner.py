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
