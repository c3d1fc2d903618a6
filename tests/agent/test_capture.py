"""Data capture: selection reasons, blur, exact storage and bandwidth budgets, offline survival."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgewise.agent.capture import CaptureSpool, FrameCapture, NoveltyMemory, blur_regions
from edgewise.agent.config import CaptureSettings
from edgewise.agent.pipeline import Detection, Result
from edgewise.core.errors import ServiceUnavailable
from edgewise.core.wire import CapturedFrame, IngestAck, IngestBatch

UNSURE = Result("classify", "ok", 0.3, 1.0)
SURE = Result("classify", "ok", 0.99, 1.0)


def noisy_frame(seed: int, side: int = 48) -> np.ndarray:
    # Noise compresses badly, so every frame has a similar, sizeable JPEG.
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def capture(tmp_path: Path, clock=None, **overrides) -> FrameCapture:
    settings = CaptureSettings(enabled=True, novelty=2.0, **overrides)  # novelty 2.0: never novel
    spool = CaptureSpool(tmp_path / "capture.sqlite3", settings, **({"clock": clock} if clock else {}))
    return FrameCapture(spool, settings, device_id="dev-1")


class Server:
    """Stores what it is sent, unless it is offline or too old to know captures."""

    def __init__(self) -> None:
        self.stored: dict[str, int] = {}
        self.online, self.knows_captures = True, True

    def send(self, batch: IngestBatch) -> IngestAck:
        if not self.online:
            raise ServiceUnavailable("POST /api/v1/device/ingest: ConnectError")
        if not self.knows_captures:
            return IngestAck(acked=[])
        for frame in batch.captures:
            self.stored[frame.capture_id] = len(base64.b64decode(frame.jpeg_b64))
        return IngestAck(acked=[], captured=[f.capture_id for f in batch.captures])


def test_selection_reasons_and_tags(tmp_path: Path) -> None:
    cap = capture(tmp_path)
    frame = noisy_frame(0)
    assert cap.consider(frame, SURE) is None
    record = cap.consider(frame, UNSURE, bundle_name="parts", bundle_version="1.2.0", camera="dock")
    assert record is not None and record.reasons == ["low-confidence"]
    assert (record.device_id, record.bundle_version, record.camera, record.label) == ("dev-1", "1.2.0", "dock", "ok")
    disagreeing = Result("classify", "crack", 0.99, 1.0)
    record = cap.consider(frame, SURE, disagreeing)
    assert record is not None and record.reasons == ["disagreement"] and record.candidate_label == "crack"
    [first, second] = cap.spool.frames()
    image = cv2.imdecode(np.frombuffer(base64.b64decode(first.jpeg_b64), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == frame.shape and second.reasons == ["disagreement"]


def test_novelty_notices_a_new_scene_and_not_a_repeated_one() -> None:
    memory = NoveltyMemory(4)
    grey = np.full((32, 32, 3), 128, np.uint8)
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 2] = 250
    assert memory.score(grey) == 1.0  # nothing remembered yet
    assert memory.score(grey) == pytest.approx(0.0, abs=1e-6)
    assert memory.score(red) > 0.9


def test_storage_budget_is_exact(tmp_path: Path) -> None:
    cap = capture(tmp_path, storage_bytes=20_000, upload_bytes=1 << 20)
    sizes = []
    for seed in range(12):
        before = cap.spool.stats().stored_bytes
        record = cap.consider(noisy_frame(seed), UNSURE)
        after = cap.spool.stats().stored_bytes
        if record is None:  # dropped only when it would not have fitted
            assert after == before
        else:
            sizes.append(after - before)
        assert after <= 20_000
    stats = cap.spool.stats()
    assert stats.dropped_storage > 0 and stats.stored_bytes == sum(sizes)
    assert 20_000 - stats.stored_bytes < max(sizes)  # full: not even the smallest frame would fit


def test_bandwidth_budget_is_exact_over_a_sliding_window(tmp_path: Path) -> None:
    clock = [1000.0]
    cap = capture(tmp_path, lambda: clock[0], upload_bytes=15_000, upload_window_s=3600, batch_size=2)
    for seed in range(8):
        cap.consider(noisy_frame(seed), UNSURE)
    server = Server()
    cap.upload(server.send)
    sent = sum(server.stored.values())
    assert 0 < sent <= 15_000
    oldest_left = cap.spool.frames(1)[0]
    assert sent + len(base64.b64decode(oldest_left.jpeg_b64)) > 15_000  # the next frame would have broken it
    clock[0] += 1800
    assert cap.upload(server.send) == 0  # still inside the window
    clock[0] += 1801
    assert cap.upload(server.send) > 0  # the first uploads left the window
    assert cap.spool.stats().uploaded_bytes_in_window <= 15_000


def test_frames_survive_offline_periods_restarts_and_old_servers(tmp_path: Path) -> None:
    cap = capture(tmp_path)
    for seed in range(5):
        cap.consider(noisy_frame(seed), UNSURE)
    server = Server()
    server.online = False
    with pytest.raises(ServiceUnavailable):
        cap.upload(server.send)
    server.online, server.knows_captures = True, False
    assert cap.upload(server.send) == 0
    cap.spool.close()
    reopened = capture(tmp_path)  # the agent restarted
    assert reopened.spool.stats().pending == 5
    server.knows_captures = True
    assert reopened.upload(server.send) == 5
    assert len(server.stored) == 5 and reopened.spool.stats().pending == 0
    assert reopened.spool.mark_uploaded(list(server.stored)) == 0  # a repeated ack charges nothing


def test_blur_hides_only_the_named_classes_regions() -> None:
    frame = noisy_frame(1, side=64)
    original = frame.copy()
    result = Result("detect", "face", 0.9, 1.0, detections=[
        Detection("face", 0.9, (0.0, 0.0, 32.0, 32.0)), Detection("part", 0.8, (32.0, 32.0, 64.0, 64.0))])
    assert blur_regions(frame, result, ["face"]) == ["face"]
    assert not np.array_equal(frame[:32, :32], original[:32, :32])  # boxes are in the frame's pixels
    assert np.array_equal(frame[32:, :], original[32:, :]) and np.array_equal(frame[:, 32:], original[:, 32:])
    whole = noisy_frame(2)
    assert blur_regions(whole, Result("classify", "face", 0.9, 1.0), ["face"]) == ["face"]
    assert whole.std() < noisy_frame(2).std() / 2


def test_captured_frames_record_what_was_blurred(tmp_path: Path) -> None:
    cap = capture(tmp_path, blur_labels=["ok"])
    frame = noisy_frame(3)
    record = cap.consider(frame, UNSURE)
    assert record is not None and record.blurred == ["ok"]
    assert np.array_equal(frame, noisy_frame(3))  # the caller's frame is untouched


def test_a_detectors_frame_keeps_its_boxes_and_weak_boxes_make_it_low_confidence(tmp_path: Path) -> None:
    cap = capture(tmp_path, low_confidence=0.5)
    frame = noisy_frame(0, side=64)
    sure = Detection("person", 0.9, (1.5, 2.0, 30.25, 40.0), track_id=7)
    unsure = Detection("car", 0.35, (40.0, 10.0, 60.0, 30.0))
    assert cap.consider(frame, Result("detect", "person", 0.9, 1.0, detections=[sure])) is None
    assert cap.consider(frame, Result("detect", None, 0.0, 1.0)) is None  # found nothing: nothing unsure
    record = cap.consider(frame, Result("detect", "person", 0.9, 1.0, detections=[unsure, sure]))
    assert record is not None and record.reasons == ["low-confidence"]
    [stored] = cap.spool.frames()
    assert stored.frame_size == (64, 64)
    assert [(d.label, d.score, d.box, d.track_id) for d in stored.detections] == [
        ("person", 0.9, (1.5, 2.0, 30.25, 40.0), 7), ("car", 0.35, (40.0, 10.0, 60.0, 30.0), None)]


def test_a_detector_candidate_disagrees_on_boxes_not_on_its_top_label(tmp_path: Path) -> None:
    cap = capture(tmp_path, low_confidence=0.0)
    frame = noisy_frame(0)
    person = Detection("person", 0.9, (0.0, 0.0, 20.0, 20.0))
    serving = Result("detect", "person", 0.9, 1.0, detections=[person])
    same_top_extra_box = Result("detect", "person", 0.9, 1.0,
                                detections=[person, Detection("car", 0.5, (30.0, 30.0, 40.0, 40.0))])
    assert cap.consider(frame, serving, Result("detect", "person", 0.9, 1.0, detections=[person])) is None
    record = cap.consider(frame, serving, same_top_extra_box)
    assert record is not None and record.reasons == ["disagreement"]


def test_classifier_captures_carry_no_boxes(tmp_path: Path) -> None:
    record = capture(tmp_path).consider(noisy_frame(0), UNSURE)
    assert record is not None and record.detections is None and record.frame_size is None
    old = record.model_dump(mode="json", exclude={"detections", "frame_size"})  # from an agent before detectors
    assert CapturedFrame.model_validate(old) == record
