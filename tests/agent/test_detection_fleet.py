"""The detection acceptance test: a detector trained here, bundled, signed and published, rolled out
by a real `edgewise server` to two real `edgewise agent run --once` processes that watch the traffic
video; each device's line (and zone) events, as the server stores them, match the video's ground
truth (studio/samples/traffic_video.py) within 10 %."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edgewise.core.signing import PrivateKey
from tests.agent.fleet import ROOT, FleetServer, wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(900)]  # training: ~4 min on 2 cores

# 700 images x 8 epochs gives val mAP 0.12 (the line counts come out 85-100 % short), 900 x 10 mAP
# 0.37 (in/out 0 % / -5 % on this video, but -26 % on "out" on the next seed's), 900 x 14 mAP 0.53.
TRAIN_SIZE, TRAIN_EPOCHS, TRAIN_SEED = 900, 14, 1
VIDEO_SECONDS, VIDEO_FPS, VIDEO_SEED = 50.0, 10, 11  # a seed the training clips never used
BUNDLE_NAME, BUNDLE_VERSION = "traffic-detector", "1.0.0"
LINE_TOLERANCE, ZONE_TOLERANCE, AGREEMENT = 0.10, 0.10, 0.05

AGENT_TOML = """
data_dir = {data_dir}
trusted_keys = [{trusted}]
threads = 1
providers = ["CPUExecutionProvider"]
sync_interval_s = 0.3
long_poll_s = 5
heartbeat_interval_s = 1
telemetry_interval_s = 5
request_timeout_s = 10
[source]
kind = "video-file"
path = {video}
loop = false
[health]
window_s = 1.0
min_frames = 5
# ByteTrack's defaults (match from 0.5, start a track from 0.6) suit a detector whose scores run
# high; this small one, trained for minutes, scores a far (12 px) vehicle 0.5 or more in only about
# half its frames, so with the defaults the far lanes lose crossings (-13 to -26 % on "out").
[tracking]
high_score = 0.3
new_track_score = 0.4
low_score = 0.1
{zones}
[[rules]]
name = "centre-count"
kind = "line_cross"
zone = "centre-line"
labels = {labels}
direction = "both"

[[rules]]
name = "near-right-visits"
kind = "dwell"
zone = "near-right"
labels = {labels}
duration_s = 0.0
priority = "event"
"""


@dataclass
class DetectionFleet:
    server: FleetServer
    video: Path
    truth: dict[str, Any]
    labels: list[str]
    train_s: float
    val_map: float
    val_map50: float


def _toml_zones() -> str:
    from edgewise.studio.samples.traffic_video import counting_zones

    blocks = []
    for zone in counting_zones():
        lines = ["[[zones]]"] + [f"{key} = {json.dumps(value)}" for key, value in zone.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


@pytest.fixture(scope="module")
def detection_fleet(tmp_path_factory: pytest.TempPathFactory, publisher: PrivateKey) -> Iterator[DetectionFleet]:
    from edgewise.core.bundle import sign_bundle
    from edgewise.registry import open_store
    from edgewise.studio.bundling import BundleOptions, VariantSource, bundle_from_onnx
    from edgewise.studio.detect.export import export_detector
    from edgewise.studio.detect.train import DetectTrainConfig, train_detector
    from edgewise.studio.samples import write_sample
    from edgewise.studio.samples.traffic_video import GROUND_TRUTH_FILE, VIDEO_FILE, write_traffic_video

    root = tmp_path_factory.mktemp("detection-fleet")
    started = time.perf_counter()
    data = write_sample("traffic", root / "traffic", size=TRAIN_SIZE, seed=TRAIN_SEED)
    config = DetectTrainConfig(epochs=TRAIN_EPOCHS, batch_size=16, num_threads=2, warmup_steps=30, eval_every=100)
    trained = train_detector(config, data, root / "run", progress=False)
    train_s = time.perf_counter() - started
    print(f"\ndetector: {TRAIN_SIZE} images, {TRAIN_EPOCHS} epochs, {train_s:.0f} s (sample + training); "
          f"val mAP {trained.val.map:.3f}, mAP50 {trained.val.map50:.3f}")

    # Rows from 0.1 (the card's default is 0.25), so the tracker's low_score stage gets the unsure ones.
    export = export_detector(trained.model, trained.spec, trained.labels, root / "model" / "detector.onnx",
                             form="nms", score_threshold=0.1)
    bundle_dir = root / "bundle"
    bundle_from_onnx(bundle_dir, [VariantSource("cpu-fp32", export.path)], BundleOptions(BUNDLE_NAME, BUNDLE_VERSION))
    sign_bundle(bundle_dir, publisher)
    open_store(root / "store").publish(bundle_dir)

    video_dir = write_traffic_video(root / "video", seconds=VIDEO_SECONDS, fps=VIDEO_FPS, seed=VIDEO_SEED)
    truth = json.loads((video_dir / GROUND_TRUTH_FILE).read_text())
    (root / "publisher.pub").write_text(publisher.public.b64 + "\n")
    server = FleetServer(root, root / "store", [root / "publisher.pub"])
    server.start()
    try:
        yield DetectionFleet(server, video_dir / VIDEO_FILE, truth, list(trained.labels), train_s,
                             trained.val.map, trained.val.map50)
    finally:
        server.stop()


def _enroll(fleet: FleetServer, device_dir: Path, name: str, publisher: PrivateKey, video: Path,
            labels: list[str]) -> tuple[Path, Path, str]:
    data_dir = device_dir / "data"
    enroll = subprocess.run(
        [sys.executable, "-m", "edgewise", "agent", "enroll", "--server", fleet.url, "--token",
         fleet.enrollment_token(), "--data-dir", str(data_dir), "--name", name],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert enroll.returncode == 0, enroll.stderr
    device_id = enroll.stdout.split("enrolled as ")[1].split(";")[0]
    config = device_dir / "agent.toml"
    config.write_text(AGENT_TOML.format(data_dir=json.dumps(str(data_dir)), trusted=json.dumps(publisher.public.b64),
                                        video=json.dumps(str(video)), zones=_toml_zones(), labels=json.dumps(labels)))
    return data_dir, config, device_id


def _within(measured: int, expected: int, tolerance: float) -> bool:
    return abs(measured - expected) <= tolerance * expected


def test_a_detector_rolled_out_to_two_agents_counts_the_traffic_video_within_ten_percent(
        detection_fleet: DetectionFleet, tmp_path: Path, publisher: PrivateKey) -> None:
    setup, fleet = detection_fleet, detection_fleet.server
    started = time.perf_counter()
    devices = {}
    for name in ("camera-a", "camera-b"):
        devices[name] = _enroll(fleet, tmp_path / name, name, publisher, setup.video, setup.labels)
    ids = [device_id for _, _, device_id in devices.values()]

    with fleet.api() as api:  # one deployment whose selector covers both devices
        response = api.post("/deployments", json={"bundle": f"{BUNDLE_NAME}:{BUNDLE_VERSION}",
                                                  "selector": {"ids": ids}})
        assert response.status_code == 201, response.text
    # desired before the batch runs: `--once` syncs once, before its first frame
    wait_until(lambda: all(fleet.device(d)["desired_digest"] for d in ids), 20, "desired bundle")

    runs = {}
    for name, (data_dir, config, _) in devices.items():
        log = open(data_dir.parent / "agent.log", "wb")  # noqa: SIM115 - closed below
        runs[name] = (subprocess.Popen([sys.executable, "-m", "edgewise", "agent", "run", "--once", "--config",
                                        str(config), "-v"], cwd=ROOT, stdout=log, stderr=log), log)
    for name, (process, log) in runs.items():
        try:
            returncode = process.wait(240)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            returncode = None
        log.close()
        agent_log = (devices[name][0].parent / "agent.log").read_text(errors="replace")[-3000:]
        assert returncode == 0, f"{name}: exit {returncode}\n{agent_log}"
    agents_s = time.perf_counter() - started

    line_truth, zone_truth = setup.truth["counts"]["line"], setup.truth["counts"]["zone"]
    measured: dict[str, dict[str, int]] = {}
    frame_w, frame_h = setup.truth["width"], setup.truth["height"]
    for name, (_, _, device_id) in devices.items():
        device = fleet.device(device_id)
        assert device["current_version"] == BUNDLE_VERSION, device
        events = fleet.events(device_id)
        crossings = [e for e in events if e["type"] == "line_cross"]
        visits = [e for e in events if e["type"] == "dwell"]
        assert crossings and visits, f"{name}: {len(events)} events, types {sorted({e['type'] for e in events})}"
        for event in crossings + visits:
            assert event["bundle_name"] == BUNDLE_NAME and event["bundle_version"] == BUNDLE_VERSION
            assert isinstance(event["data"]["track_id"], int), event
            x1, y1, x2, y2 = event["data"]["box"]
            assert 0 <= x1 <= x2 <= frame_w and 0 <= y1 <= y2 <= frame_h, event
        directions = [e["data"]["direction"] for e in crossings]
        assert set(directions) <= {"in", "out"}
        # one event per crossing, and each event carries the line's running counts
        last = max(crossings, key=lambda e: e["seq"])["data"]
        assert (last["in"], last["out"]) == (directions.count("in"), directions.count("out"))
        measured[name] = {"in": directions.count("in"), "out": directions.count("out"), "zone": len(visits),
                          "tracks": len({e["data"]["track_id"] for e in crossings})}

    expected = {"in": line_truth["in"], "out": line_truth["out"], "zone": zone_truth["entered"]}
    rows = [f"{'count':<22}{'truth':>7}" + "".join(f"{name:>10}" for name in measured)]
    for key, title in (("in", "line in (L->R)"), ("out", "line out (R->L)"), ("zone", "zone entered (dwell)")):
        rows.append(f"{title:<22}{expected[key]:>7}" + "".join(
            f"{m[key]:>5} {100 * (m[key] - expected[key]) / max(expected[key], 1):+4.0f}%" for m in measured.values()))
    table = "\n".join(rows) + (
        f"\n(detector: {TRAIN_SIZE} images x {TRAIN_EPOCHS} epochs, {setup.train_s:.0f} s, val mAP {setup.val_map:.3f}"
        f" / mAP50 {setup.val_map50:.3f}; video {setup.truth['frame_count']} frames, seed {VIDEO_SEED}; "
        f"enroll + deploy + both agents {agents_s:.0f} s)")
    print("\n" + table)

    for name, counts in measured.items():
        for key in ("in", "out"):
            assert expected[key] > 0 and counts[key] > 0, f"{name}: no {key} crossings\n{table}"
            assert _within(counts[key], expected[key], LINE_TOLERANCE), f"{name}: line {key} off\n{table}"
        assert _within(counts["zone"], expected["zone"], ZONE_TOLERANCE), f"{name}: zone entries off\n{table}"
    a, b = measured.values()
    for key in ("in", "out", "zone"):
        assert abs(a[key] - b[key]) <= AGREEMENT * max(a[key], b[key]), f"the devices disagree on {key}\n{table}"
