"""Shadow evaluation: exact sampling, agreement statistics, the CPU budget, disagreement samples."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgewise.agent.config import ShadowSettings, SourceSettings, parse_settings
from edgewise.agent.pipeline import Detection, Pipeline, Result
from edgewise.agent.shadow import ShadowEvaluator
from edgewise.agent.sources import create_source
from edgewise.core.errors import ConfigError, ModelError
from edgewise.core.wire import ShadowReport
from tests.agent import models


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pipeline]:
    root = tmp_path_factory.mktemp("shadow")
    built = {
        "serving": models.classifier(root / "a.onnx", seed=1),
        "same": models.classifier(root / "b.onnx", seed=1),
        "scratch": models.always(root / "s.onnx", "scratch"),
        "broken": models.broken(root / "x.onnx"),
    }
    out = {}
    for name, model in built.items():
        bundle_dir, _ = models.make_bundle(root, name, model, None)
        out[name] = Pipeline.from_dir(bundle_dir, ["cpu"], ["CPUExecutionProvider"], 1)
    return out


def frames(count: int = 40) -> list[np.ndarray]:
    return list(create_source(SourceSettings(frames=count, width=64, height=48, defect_rate=0.5)).frames())


def run(evaluator: ShadowEvaluator, serving: Pipeline, batch: list[np.ndarray], camera: str = "default") -> None:
    for frame in batch:
        evaluator.observe(frame, serving.run(frame), camera)


def test_share_is_exact_and_an_identical_candidate_agrees(pipelines) -> None:
    settings = ShadowSettings(share=0.25, cpu_budget=1.0, burst_s=10.0)
    evaluator = ShadowEvaluator(settings, pipelines["same"], "1", "1b")
    run(evaluator, pipelines["serving"], frames(40))
    [report] = evaluator.report()
    assert (report.frames_seen, report.frames_shadowed, report.skipped_for_budget) == (40, 10, 0)
    assert report.top1_agreement == 1.0
    assert report.confidence_shift == pytest.approx(0.0, abs=1e-6)
    assert report.detection_count_shift == 0.0
    assert report.disagreements == []
    assert report.candidate_latency_p50_ms is not None and report.serving_latency_p95_ms is not None
    assert evaluator.report() == []  # the window started over


def test_a_different_candidate_shows_disagreement_alarm_shift_and_a_budgeted_sample(pipelines) -> None:
    settings = ShadowSettings(share=1.0, cpu_budget=1.0, burst_s=10.0, max_disagreement_samples=3,
                              alarm_labels=["scratch"], alarm_min_score=0.5)
    evaluator = ShadowEvaluator(settings, pipelines["scratch"], "1", "2", candidate_digest="sha256:ab")
    batch = frames(30)
    run(evaluator, pipelines["serving"], batch)
    [report] = evaluator.report()
    serving_labels = [pipelines["serving"].run(f).label for f in batch]
    expected = sum(label == "scratch" for label in serving_labels) / len(batch)
    assert report.frames_shadowed == 30
    assert report.top1_agreement == pytest.approx(expected)
    assert report.candidate_alarm_rate == 1.0
    assert report.candidate_digest == "sha256:ab"
    assert len(report.disagreements) == 3  # budget, though more frames disagreed
    sample = report.disagreements[0]
    assert sample.candidate_label == "scratch" and sample.serving_label != "scratch"
    image = cv2.imdecode(np.frombuffer(base64.b64decode(sample.jpeg_b64 or ""), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and max(image.shape[:2]) <= settings.sample_max_side


def test_cameras_are_reported_separately(pipelines) -> None:
    evaluator = ShadowEvaluator(ShadowSettings(share=0.5, cpu_budget=1.0, burst_s=10.0), pipelines["same"], "1", "1")
    run(evaluator, pipelines["serving"], frames(10), "dock")
    run(evaluator, pipelines["serving"], frames(4), "gate")
    reports = {r.camera: r for r in evaluator.report()}
    assert {c: r.frames_shadowed for c, r in reports.items()} == {"dock": 5, "gate": 2}


class SlowCandidate:
    def __init__(self, cost_s: float) -> None:
        self.cost_s, self.runs = cost_s, 0

    def run(self, frame: np.ndarray) -> Result:
        self.runs += 1
        time.sleep(self.cost_s)
        return Result("classify", "ok", 0.9, self.cost_s * 1000)


def test_cpu_budget_bounds_candidate_time() -> None:
    clock = [0.0]
    settings = ShadowSettings(share=1.0, cpu_budget=0.1, burst_s=0.005)
    candidate = SlowCandidate(0.004)
    evaluator = ShadowEvaluator(settings, candidate, "1", "2", clock=lambda: clock[0])
    serving = Result("classify", "ok", 0.9, 1.0)
    frame = np.zeros((8, 8, 3), np.uint8)
    for _ in range(100):
        clock[0] += 0.01  # a 100 fps camera: 1 ms of candidate time per frame is the budget
        evaluator.observe(frame, serving)
    [report] = evaluator.report()
    spent = candidate.runs * candidate.cost_s
    # A run starts only with budget left, so the overshoot is at most one run's cost.
    assert spent <= settings.burst_s + settings.cpu_budget * clock[0] + 0.02
    assert report.skipped_for_budget > 50
    assert report.frames_shadowed == candidate.runs == 100 - report.skipped_for_budget


def test_a_failing_candidate_never_breaks_serving(pipelines) -> None:
    evaluator = ShadowEvaluator(ShadowSettings(share=1.0, burst_s=10.0), pipelines["broken"], "1", "bad")
    frame = frames(1)[0]
    assert evaluator.observe(frame, pipelines["serving"].run(frame)) is None
    [report] = evaluator.report()
    assert report.frames_shadowed == 0 and report.top1_agreement is None
    with pytest.raises(ModelError):
        pipelines["broken"].run(frame)


@pytest.mark.parametrize("bad", [{"share": 1.5}, {"cpu_budget": 0}, {"unknown": 1}])
def test_bad_shadow_settings_are_refused_with_the_key_named(bad: dict, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="shadow"):
        parse_settings({"data_dir": str(tmp_path), "shadow": bad})


class FixedCandidate:
    """A stand-in candidate that returns the results it is given, in turn."""

    def __init__(self, results: list[Result]) -> None:
        self.results = iter(results)

    def run(self, frame: np.ndarray) -> Result:
        return next(self.results)


def test_a_detector_pair_reports_mean_box_agreement_and_box_counts() -> None:
    scratch = Detection("scratch", 0.9, (10.0, 10.0, 50.0, 50.0))
    hole = Detection("hole", 0.8, (60.0, 10.0, 90.0, 40.0))
    moved_scratch = Detection("scratch", 0.9, (30.0, 10.0, 70.0, 50.0))  # IoU 1/3 with `scratch`: no match
    serving = Result("detect", "scratch", 0.9, 1.0, detections=[scratch, hole])
    candidates = [
        Result("detect", "scratch", 0.9, 1.0, detections=[scratch, hole]),  # 1.0
        Result("detect", "scratch", 0.9, 1.0, detections=[moved_scratch, hole]),  # 0.5
        Result("detect", "scratch", 0.9, 1.0, detections=[scratch]),  # 0.5
        Result("detect", "scratch", 0.9, 1.0, detections=[scratch, hole]),  # 1.0
    ]
    settings = ShadowSettings(share=1.0, cpu_budget=1.0, burst_s=10.0, max_disagreement_samples=4)
    evaluator = ShadowEvaluator(settings, FixedCandidate(candidates), "1", "2")
    for _ in candidates:
        evaluator.observe(np.zeros((48, 64, 3), np.uint8), serving)
    [report] = evaluator.report()
    assert report.top1_agreement == pytest.approx(0.75)
    assert (report.boxes_matched, report.boxes_candidate_only, report.boxes_serving_only) == (6, 1, 2)
    assert len(report.disagreements) == 2  # the two frames below 1.0
    assert report.serving_detections == 2.0 and report.detection_count_shift == pytest.approx(-0.25)


def test_a_classifier_pair_reports_no_box_counts_and_old_reports_stay_valid(pipelines) -> None:
    evaluator = ShadowEvaluator(ShadowSettings(share=1.0, burst_s=10.0), pipelines["same"], "1", "1b")
    run(evaluator, pipelines["serving"], frames(4))
    [report] = evaluator.report()
    assert (report.boxes_matched, report.boxes_candidate_only, report.boxes_serving_only) == (None, None, None)
    old = report.model_dump(mode="json")
    for added in ("boxes_matched", "boxes_candidate_only", "boxes_serving_only"):
        del old[added]  # a report from an agent before detectors
    assert ShadowReport.model_validate(old) == report
