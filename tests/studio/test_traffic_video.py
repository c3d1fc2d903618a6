"""The traffic video sample: a deterministic mp4 that OpenCV reads back, and ground truth whose line
and zone counts a replay of its own boxes confirms, independently and through the agent's zones."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edgewise.core.errors import ConfigError
from edgewise.studio.samples import write_sample
from edgewise.studio.samples.traffic import render_clip
from edgewise.studio.samples.traffic_scene import HEIGHT, WIDTH
from edgewise.studio.samples.traffic_video import (
    GROUND_TRUTH_FILE,
    VIDEO_FILE,
    counting_zones,
    write_traffic_video,
)

SECONDS, FPS, SEED = 8.0, 10, 0


def _truth(out_dir: Path) -> dict[str, Any]:
    return json.loads((out_dir / GROUND_TRUTH_FILE).read_text())


@pytest.fixture(scope="module")
def short_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_traffic_video(tmp_path_factory.mktemp("video") / "a", seconds=SECONDS, fps=FPS, seed=SEED)


@pytest.fixture(scope="module")
def half_minute(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _truth(write_traffic_video(tmp_path_factory.mktemp("video") / "long", seconds=30.0, seed=SEED))


def _anchors_by_track(truth: dict[str, Any]) -> dict[int, list[tuple[int, float, float]]]:
    """(frame, x, y) of each vehicle's box bottom centre, in frame order."""
    anchors: dict[int, list[tuple[int, float, float]]] = defaultdict(list)
    for frame in truth["frames"]:
        for box in frame["boxes"]:
            x1, _, x2, y2 = box["box"]
            anchors[box["track_id"]].append((frame["frame"], (x1 + x2) / 2, y2))
    return anchors


def test_same_seed_same_bytes_other_seed_other_truth(short_video: Path, tmp_path: Path) -> None:
    again = write_traffic_video(tmp_path / "again", seconds=SECONDS, fps=FPS, seed=SEED)
    other = write_traffic_video(tmp_path / "other", seconds=SECONDS, fps=FPS, seed=SEED + 1)
    assert (again / GROUND_TRUTH_FILE).read_bytes() == (short_video / GROUND_TRUTH_FILE).read_bytes()
    # OpenCV's mp4 muxer embeds no creation time, so the video is byte-identical too (and so is the
    # sample's dataset digest).
    assert (again / VIDEO_FILE).read_bytes() == (short_video / VIDEO_FILE).read_bytes()
    assert _truth(other)["frames"] != _truth(short_video)["frames"]


def test_opencv_reads_back_every_frame_in_the_right_colours(short_video: Path) -> None:
    truth = _truth(short_video)
    capture = cv2.VideoCapture(str(short_video / VIDEO_FILE))
    decoded = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(frame)
    assert capture.get(cv2.CAP_PROP_FPS) == FPS
    capture.release()
    assert len(decoded) == truth["frame_count"] == SECONDS * FPS
    assert {frame.shape for frame in decoded} == {(HEIGHT, WIDTH, 3)} == {(truth["height"], truth["width"], 3)}
    # The clip is render_clip's with one step per frame; the decoded BGR frame is close to the
    # rendered RGB one (lossy mp4), and much closer than with its channels swapped.
    rendered = np.asarray(next(iter(render_clip(SEED, 1, 1)))[0], dtype=np.float64)
    as_rgb = decoded[0][..., ::-1].astype(np.float64)
    assert np.abs(as_rgb - rendered).mean() < 8
    assert np.abs(as_rgb - rendered).mean() < 0.5 * np.abs(decoded[0] - rendered).mean()


def test_vehicles_first_and_last_frames_match_their_boxes(short_video: Path) -> None:
    truth = _truth(short_video)
    anchors = _anchors_by_track(truth)
    assert {v["track_id"] for v in truth["vehicles"]} == set(anchors)
    for vehicle in truth["vehicles"]:
        frames = [frame for frame, _, _ in anchors[vehicle["track_id"]]]
        assert (vehicle["first_frame"], vehicle["last_frame"]) == (frames[0], frames[-1])


def test_independent_replay_gives_the_same_line_counts(half_minute: dict[str, Any]) -> None:
    """Side = left or right of x = 128; a change between two annotated sightings is a crossing."""
    labels = {v["track_id"]: v["label"] for v in half_minute["vehicles"]}
    replayed = set()
    for track_id, anchors in _anchors_by_track(half_minute).items():
        sides = [(frame, "right" if x > WIDTH / 2 else "left") for frame, x, _ in anchors if x != WIDTH / 2]
        for (_, before), (frame, after) in zip(sides, sides[1:], strict=False):
            if before != after:
                replayed.add((frame, track_id, "in" if after == "right" else "out"))
    recorded = {(c["frame"], c["track_id"], c["direction"]) for c in half_minute["crossings"]}
    assert replayed == recorded
    counts = half_minute["counts"]["line"]
    for direction in ("in", "out"):
        by_label = Counter(labels[track_id] for _, track_id, d in replayed if d == direction)
        assert counts[f"{direction}_by_label"] == {label: by_label[label] for label in half_minute["labels"]}
        assert counts[direction] == sum(by_label.values()) > 0  # both directions are seen in 30 s


def test_counted_vehicles_are_seen_on_both_sides_and_drive_their_way(half_minute: dict[str, Any]) -> None:
    anchors, lanes = _anchors_by_track(half_minute), {v["track_id"]: v["lane"] for v in half_minute["vehicles"]}
    for crossing in half_minute["crossings"]:
        xs = [x for _, x, _ in anchors[crossing["track_id"]]]
        assert min(xs) < WIDTH / 2 < max(xs)
        if crossing["direction"] == "in":  # left to right: the near lanes (2 to 4) drive right
            assert xs[-1] > xs[0] and lanes[crossing["track_id"]] >= 2
        else:
            assert xs[-1] < xs[0] and lanes[crossing["track_id"]] < 2


def test_the_agent_line_and_zone_count_the_ground_truth(half_minute: dict[str, Any]) -> None:
    """The declared geometry through the agent's own LineZone and PolygonZone, fed perfect tracks."""
    from edgewise.agent.config import ZoneSettings
    from edgewise.agent.tracking import Track
    from edgewise.agent.zones import LineZone, PolygonZone

    line_settings, zone_settings = (ZoneSettings(**zone) for zone in counting_zones())
    line = LineZone(line_settings.name, *line_settings.points, anchor=line_settings.anchor)
    zone = PolygonZone(zone_settings.name, zone_settings.points, anchor=zone_settings.anchor)
    vehicles = half_minute["vehicles"]
    for frame in half_minute["frames"]:
        index = frame["frame"]
        tracks = [Track(b["track_id"], tuple(b["box"]), b["label"], 1.0, 0.0, 0.0, 1, i)  # type: ignore[arg-type]
                  for i, b in enumerate(frame["boxes"])]
        held = {v["track_id"] for v in vehicles if v["first_frame"] <= index <= v["last_frame"]}
        line.update(tracks, held)
        zone.update(tracks, held, now=index / FPS)
    counts = half_minute["counts"]
    assert (line.in_count, line.out_count) == (counts["line"]["in"], counts["line"]["out"])
    assert dict(line.in_by_label) == {k: v for k, v in counts["line"]["in_by_label"].items() if v}
    assert zone.entries == counts["zone"]["entered"] > 0  # here no vehicle leaves the zone and comes back


def test_zone_occupancy_is_the_vehicles_inside_each_frame(half_minute: dict[str, Any]) -> None:
    entered = set()
    for frame in half_minute["frames"]:
        inside = {b["track_id"] for b in frame["boxes"]
                  if (b["box"][0] + b["box"][2]) / 2 >= WIDTH / 2 and b["box"][3] >= 146}
        assert frame["zone_occupancy"] == len(inside)
        entered |= inside
    assert half_minute["counts"]["zone"]["entered"] == len(entered) > 0
    assert half_minute["counts"]["zone"]["max_occupancy"] >= 1


def test_the_sample_is_frames_at_10_fps_and_refuses_image_size_and_old_folders(tmp_path: Path) -> None:
    written = write_sample("traffic-video", tmp_path / "sample", size=20, seed=3)
    truth = _truth(written)
    assert (truth["frame_count"], truth["fps"], truth["seed"]) == (20, 10, 3)
    with pytest.raises(ConfigError, match="already holds"):
        write_sample("traffic-video", written, size=20)
    with pytest.raises(ConfigError, match="image-size"):
        write_sample("traffic-video", tmp_path / "sized", size=20, image_size=64)


def test_a_missing_mp4_encoder_is_a_config_error_with_the_fix(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    class NoEncoder:  # what cv2.VideoWriter is on an OpenCV built without FFmpeg
        fourcc = staticmethod(cv2.VideoWriter.fourcc)

        def __init__(self, *args: object) -> None:
            pass

        def isOpened(self) -> bool:
            return False

    monkeypatch.setattr(cv2, "VideoWriter", NoEncoder)
    with pytest.raises(ConfigError, match="mp4") as raised:
        write_traffic_video(tmp_path / "none", seconds=1.0)
    assert "opencv-python-headless" in raised.value.fix
    assert not (tmp_path / "none" / VIDEO_FILE).exists()
