"""Captured frames -> image-folder dataset -> `edgewise train --init`: the data loop closes."""

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
from edgewise.agent.pipeline import Pipeline
from edgewise.agent.sources import create_source
from edgewise.core.errors import ConfigError, DatasetError
from edgewise.core.wire import CapturedFrame
from edgewise.studio.capture_export import UNLABELLED, export_dataset, fetch_from_server, read_spool
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
