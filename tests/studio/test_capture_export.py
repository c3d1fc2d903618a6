"""Captured frames -> image-folder (or, from a detector, COCO) dataset -> `edgewise train --init`: the loop closes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from edgewise.agent.capture import CaptureSpool, FrameCapture
from edgewise.agent.config import CaptureSettings, SourceSettings
from edgewise.agent.pipeline import Detection, Pipeline, Result
from edgewise.agent.sources import create_source
from edgewise.core.errors import ConfigError, DatasetError
from edgewise.core.wire import CapturedFrame
from edgewise.studio.capture_export import UNLABELLED, export_dataset, fetch_from_server, read_spool
from edgewise.studio.detect.annotations import AnnotatedImage, DetectionSet
from edgewise.studio.detect.formats import read_native
from tests.agent import models
from tests.studio.conftest import TrainedRun
from tests.studio.test_cli_studio import assert_one_line_error, edgewise


@pytest.fixture(scope="module")
def agent_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An agent data dir whose capture spool holds 40 frames seen by a tiny classifier."""
    root = tmp_path_factory.mktemp("agent")
    bundle_dir, _ = models.make_bundle(root, "1.0.0", models.classifier(root / "m.onnx", seed=1), None)
    pipeline = Pipeline.from_dir(bundle_dir, ["cpu"], ["CPUExecutionProvider"], 1)
    settings = CaptureSettings(enabled=True, low_confidence=1.0, novelty=2.0)
    capture = FrameCapture(CaptureSpool(root / "capture.sqlite3", settings), settings, device_id="dev-7")
    for frame in create_source(SourceSettings(frames=40, width=64, height=48, defect_rate=0.5)).frames():
        capture.consider(frame, pipeline.run(frame), bundle_name="parts", bundle_version="1.0.0")
    capture.spool.close()
    return root


def fake_frame(index: int, label: str | None, score: float = 0.9) -> CapturedFrame:
    ok, jpeg = cv2.imencode(".jpg", np.full((16, 16, 3), index * 5 % 255, np.uint8))
    return CapturedFrame(capture_id=f"c{index:03d}", ts=float(index), label=label, score=score,
                         jpeg_b64=base64.b64encode(jpeg.tobytes()).decode())


def files(root: Path) -> dict[str, dict[str, int]]:
    return {split: {d.name: len(list(d.glob("*.jpg"))) for d in sorted((root / split).iterdir())}
            for split in ("train", "val", "test")}


def test_export_from_a_device_spool_trains_with_init(agent_dir: Path, trained_small: TrainedRun,
                                                      tmp_path: Path) -> None:
    frames = read_spool(agent_dir)
    assert len(frames) == 40 and {f.device_id for f in frames} == {"dev-7"}
    data = tmp_path / "captured"
    result = edgewise("capture", "export", "--from", agent_dir, "--out", data)
    assert result.returncode == 0, result.stderr
    counts = files(data)
    assert set(counts["train"]) == set(counts["val"]) == set(counts["test"])  # every split has every label
    assert sum(n for split in counts.values() for n in split.values()) + json.loads(
        (data / "export.json").read_text())["left_out"] == 40
    index = [json.loads(line) for line in (data / "captures.jsonl").read_text().splitlines()]
    assert {row["bundle_version"] for row in index} == {"1.0.0"} and "jpeg_b64" not in index[0]
    out = tmp_path / "finetune"
    trained = edgewise("train", "--data", data, "--init", trained_small.checkpoint, "--arch", "cnn-small",
                       "--width", "0.5", "--epochs", "1", "--batch-size", "16", "--threads", "2", "--no-progress",
                       "--out", out)
    assert trained.returncode == 0, trained.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and sorted(metrics["classes"]) == sorted(counts["train"])


def test_small_labels_fold_into_unlabelled_and_low_confidence_too(tmp_path: Path) -> None:
    frames = [fake_frame(i, "ok") for i in range(10)] + [fake_frame(10 + i, "crack") for i in range(2)]
    frames += [fake_frame(20 + i, "ok", score=0.2) for i in range(2)]
    summary = export_dataset(frames, tmp_path / "d", min_confidence=0.5)
    assert summary.written == 14 and summary.left_out == 0
    assert set(files(tmp_path / "d")["train"]) == {"ok", UNLABELLED}
    total = {label: sum(files(tmp_path / "d")[s].get(label, 0) for s in ("train", "val", "test"))
             for label in ("ok", UNLABELLED)}
    assert total == {"ok": 10, UNLABELLED: 4}


def test_unlabelled_mode_and_too_few_frames(tmp_path: Path) -> None:
    summary = export_dataset([fake_frame(i, "ok") for i in range(5)], tmp_path / "u", labels="unlabelled")
    assert summary.counts["train"] == {UNLABELLED: 3}
    with pytest.raises(DatasetError, match="fewer than 3"):
        export_dataset([fake_frame(1, "ok"), fake_frame(2, "crack")], tmp_path / "few")
    with pytest.raises(DatasetError, match="no captured frames"):
        export_dataset([], tmp_path / "none")


def test_splits_are_deterministic_and_refuse_to_overwrite(tmp_path: Path) -> None:
    frames = [fake_frame(i, "ok") for i in range(20)]
    export_dataset(frames, tmp_path / "a")
    export_dataset(list(reversed(frames)), tmp_path / "b")
    for split in ("train", "val", "test"):
        assert sorted(p.name for p in (tmp_path / "a" / split).rglob("*.jpg")) == sorted(
            p.name for p in (tmp_path / "b" / split).rglob("*.jpg"))
    with pytest.raises(ConfigError, match="not empty"):
        export_dataset(frames, tmp_path / "a")
    with pytest.raises(ConfigError, match="share"):
        export_dataset(frames, tmp_path / "c", val_share=0.6, test_share=0.5)


def test_fetch_from_server_pages_with_the_operator_token() -> None:
    stored = [fake_frame(i, "ok").model_dump(mode="json") for i in range(5)]
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers["Authorization"], request.url.params["offset"]))
        offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
        return httpx.Response(200, json={"captures": stored[offset:offset + limit]})

    frames = fetch_from_server("http://fleet", "T0k", page_size=2, transport=httpx.MockTransport(handler))
    assert [f.capture_id for f in frames] == [f"c{i:03d}" for i in range(5)]
    assert seen == [("Bearer T0k", "0"), ("Bearer T0k", "2"), ("Bearer T0k", "4")]


def test_cli_refuses_bad_input(tmp_path: Path) -> None:
    assert_one_line_error(edgewise("capture", "export", "--out", tmp_path / "x"), "--server or --from")
    assert_one_line_error(edgewise("capture", "export", "--from", tmp_path, "--out", tmp_path / "x"),
                          "no capture spool")
    (tmp_path / "capture.sqlite3").write_text("not sqlite at all, just text" * 10)
    assert_one_line_error(edgewise("capture", "export", "--from", tmp_path, "--out", tmp_path / "y"),
                          "not a capture spool")


class FixedDetector:
    """Stands in for a detector Pipeline: the same boxes (source frame pixels) on every frame."""

    DETECTIONS = [Detection("person", 0.9, (10.5, 20.0, 60.0, 100.0), track_id=3),
                  Detection("car", 0.4, (100.0, 30.0, 190.0, 90.0))]

    def run(self, frame: np.ndarray) -> Result:
        return Result("detect", "person", 0.9, 1.0, detections=list(self.DETECTIONS))


def detector_spool(root: Path, count: int = 10, max_side: int = 640) -> Path:
    """An agent data dir whose spool holds `count` 200 x 120 frames the FixedDetector saw."""
    settings = CaptureSettings(enabled=True, low_confidence=1.0, novelty=2.0, max_side=max_side)
    capture = FrameCapture(CaptureSpool(root / "capture.sqlite3", settings), settings, device_id="dev-9")
    for frame in create_source(SourceSettings(frames=count, width=200, height=120)).frames():
        assert capture.consider(frame, FixedDetector().run(frame), bundle_name="people", bundle_version="2.0.0")
    capture.spool.close()
    return root


def boxes_by_label(dataset: DetectionSet, image: AnnotatedImage) -> dict[str, list[float]]:
    return {dataset.labels[c]: box for c, box in zip(image.classes, image.boxes.tolist(), strict=True)}


def test_a_detectors_captures_round_trip_to_a_detection_dataset(tmp_path: Path) -> None:
    spool = detector_spool(tmp_path / "agent")
    result = edgewise("capture", "export", "--from", spool, "--out", tmp_path / "data")
    assert result.returncode == 0, result.stderr
    splits = read_native(tmp_path / "data")
    assert {split: len(d.images) for split, d in splits.items()} == {"train": 6, "val": 2, "test": 2}
    expected = {d.label: list(d.box) for d in FixedDetector.DETECTIONS}
    for dataset in splits.values():
        assert dataset.labels == ["car", "person"]
        for image in dataset.images:
            assert (image.width, image.height) == (200, 120) and dataset.path_of(image).is_file()
            assert boxes_by_label(dataset, image) == {k: pytest.approx(v) for k, v in expected.items()}
    summary = json.loads((tmp_path / "data" / "export.json").read_text())
    assert summary["task"] == "detect" and summary["counts"]["val"] == {"car": 2, "person": 2}
    index = [json.loads(line) for line in (tmp_path / "data" / "captures.jsonl").read_text().splitlines()]
    assert index[0]["detections"][0]["score"] == 0.9 and index[0]["detections"][0]["track_id"] == 3


def test_detection_export_scales_boxes_to_the_stored_image_and_filters_by_score(tmp_path: Path) -> None:
    frames = read_spool(detector_spool(tmp_path / "agent", count=5, max_side=100))  # stored at 100 x 60
    summary = export_dataset(frames, tmp_path / "data", min_confidence=0.5)
    assert summary.task == "detect" and summary.images == {"train": 3, "val": 1, "test": 1}
    [image] = read_native(tmp_path / "data")["val"].images
    assert (image.width, image.height) == (100, 60)
    assert read_native(tmp_path / "data")["val"].labels == ["person"]  # the car at 0.4 is under 0.5
    assert image.boxes.tolist() == [pytest.approx([5.25, 10.0, 30.0, 50.0])]
    unlabelled = export_dataset(frames, tmp_path / "bare", labels="unlabelled")
    assert unlabelled.counts == {"train": {}, "val": {}, "test": {}} and unlabelled.written == 5


def test_detector_and_classifier_captures_are_exported_one_kind_at_a_time(tmp_path: Path) -> None:
    detected = read_spool(detector_spool(tmp_path / "agent", count=4))
    classified = [fake_frame(i, "ok") for i in range(6)]
    with pytest.raises(DatasetError, match="4 of the 10 captured frames are a detector's"):
        export_dataset(detected + classified, tmp_path / "mixed")
    assert export_dataset(detected + classified, tmp_path / "d", task="detect").left_out == 6
    summary = export_dataset(detected + classified, tmp_path / "c", task="classify")
    assert summary.task == "classify" and summary.left_out == 4 and summary.written == 6
    with pytest.raises(DatasetError, match="only 2 captured frames of a detector"):
        export_dataset(detected[:2], tmp_path / "few")
