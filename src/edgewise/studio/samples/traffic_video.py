"""`traffic-video`: one continuous traffic clip as an mp4, with exact counts from the simulation.

The `traffic` world runs one simulation step per frame with one `Look`: the same vehicles drive on
through the clip. The ground truth is the simulation's and the renderer's visible boxes, never a
detector's: per frame the annotated boxes with their `track_id`, per vehicle its first and last
annotated frame, and the counts that perfect tracks give the agent's rules (agent/zones.py) for the
line and zone declared here, for a fleet test to hold a device's counts against.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgewise.core.errors import ConfigError
from edgewise.studio.samples._split import ProgressHook
from edgewise.studio.samples.traffic import MIN_VISIBLE, make_look, render_frame
from edgewise.studio.samples.traffic_scene import CLASSES, HEIGHT, HORIZON, WIDTH, new_scene, step

if TYPE_CHECKING:
    import cv2  # imported where a video is written: listing the samples needs no OpenCV

VIDEO_FILE = "traffic.mp4"
GROUND_TRUTH_FILE = "ground_truth.json"
FPS = 10
DEFAULT_FRAMES = 600  # 60 s at 10 fps
ANCHOR = "bottom_center"  # where a vehicle touches the road; the agent's default anchor

Point = tuple[float, float]

# The counting line: vertical through the frame's middle, from the top of the road to the bottom
# edge, so every lane crosses it and near lanes (driving right) and far lanes (driving left) are
# counted in opposite directions.
LINE_NAME = "centre-line"
LINE_A: Point = (WIDTH / 2, float(HORIZON))  # top
LINE_B: Point = (WIDTH / 2, float(HEIGHT))  # bottom
# Which way is "in": agent/zones.py takes the side of P as the sign of
# d = (Bx - Ax)(Py - Ay) - (By - Ay)(Px - Ax) and counts d > 0 -> d < 0 as `in`. Here Bx = Ax and
# By - Ay = 130 > 0, so d = -130 (Px - 128): left of the line d > 0, right of it d < 0. Moving
# left to right (d > 0 -> d < 0) is `in`, right to left `out`: near lanes count in, far lanes out.
IN_DIRECTION, OUT_DIRECTION = "left to right", "right to left"

# The zone: the right half of the two nearest lanes. Its top edge is the lane marking between
# lane 2 (wheels at y ~132) and lane 3 (y ~160), away from both lanes' wheel lines, so the
# camera's small per-seed tilt never moves a vehicle's anchor across it.
ZONE_NAME = "near-right"
ZONE_POINTS: list[Point] = [(128.0, 146.0), (256.0, 146.0), (256.0, 192.0), (128.0, 192.0)]  # x >= 128, y >= 146


def counting_zones() -> list[dict[str, Any]]:
    """The line and the zone as agent `[[zones]]` entries (agent/config.py `ZoneSettings`)."""
    return [
        {"name": LINE_NAME, "kind": "line", "points": [list(LINE_A), list(LINE_B)], "anchor": ANCHOR},
        {"name": ZONE_NAME, "kind": "polygon", "points": [list(p) for p in ZONE_POINTS], "anchor": ANCHOR},
    ]


def line_side(point: Point) -> int:
    """+1 where d > 0 (left of the line here), -1 where d < 0 (right), 0 on it (see above)."""
    (ax, ay), (bx, by), (px, py) = LINE_A, LINE_B, point
    d = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
    return int(np.sign(d))


def _path_meets_segment(start: Point, end: Point) -> bool:
    """Whether a path that changes sides meets the line between A and B, not beyond it (as the agent
    counts); the line is vertical, so the path's ends have different x."""
    x_line, (x0, y0), (x1, y1) = LINE_A[0], start, end
    y_meet = y0 + (y1 - y0) * (x_line - x0) / (x1 - x0)
    return LINE_A[1] <= y_meet <= LINE_B[1]


def in_zone(point: Point) -> bool:
    """Ray casting, the agent's rule: a ray to the right crosses the border an odd number of times."""
    x, y = point
    inside = False
    for (x1, y1), (x2, y2) in zip(ZONE_POINTS, ZONE_POINTS[1:] + ZONE_POINTS[:1], strict=True):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


class GroundTruth:
    """Collects the truth frame by frame from the annotated (>= 30 % visible) boxes."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.vehicles: dict[int, dict[str, Any]] = {}
        self.crossings: list[dict[str, Any]] = []
        self.zone_entered: dict[int, str] = {}  # track_id -> label of every vehicle seen inside
        self._settled: dict[int, tuple[int, Point]] = {}  # side and anchor where last seen off the line
        self._counted: dict[int, set[str]] = {}  # as the agent: each vehicle counts once per direction

    def add_frame(self, index: int, boxes: np.ndarray, tracks: list[tuple[int, str, int]]) -> None:
        """`tracks`: (track_id, label, lane) of each box."""
        annotated, occupancy = [], 0
        for box, (track_id, label, lane) in zip(boxes, tracks, strict=True):
            annotated.append({"track_id": track_id, "label": label, "box": [float(v) for v in box]})
            seen = self.vehicles.setdefault(track_id, {"track_id": track_id, "label": label, "lane": lane,
                                                        "first_frame": index})
            seen["last_frame"] = index
            anchor = (float(box[0] + box[2]) / 2, float(box[3]))  # the box's bottom centre
            self._place_on_line(index, track_id, label, anchor)
            if in_zone(anchor):
                occupancy += 1
                self.zone_entered.setdefault(track_id, label)
        self.frames.append({"frame": index, "zone_occupancy": occupancy, "boxes": annotated})

    def _place_on_line(self, index: int, track_id: int, label: str, anchor: Point) -> None:
        side = line_side(anchor)
        if side == 0:
            return  # on the line: the side it was on still holds
        before = self._settled.get(track_id)
        self._settled[track_id] = (side, anchor)
        if before is None or before[0] == side or not _path_meets_segment(before[1], anchor):
            return
        direction = "in" if side < 0 else "out"
        if direction in self._counted.setdefault(track_id, set()):
            return
        self._counted[track_id].add(direction)
        self.crossings.append({"frame": index, "track_id": track_id, "label": label, "direction": direction})

    def counts(self) -> dict[str, Any]:
        by_direction = {d: Counter(c["label"] for c in self.crossings if c["direction"] == d) for d in ("in", "out")}
        entered = Counter(self.zone_entered.values())
        return {
            "line": {"in": sum(by_direction["in"].values()), "out": sum(by_direction["out"].values()),
                     "in_by_label": {label: by_direction["in"][label] for label in CLASSES},
                     "out_by_label": {label: by_direction["out"][label] for label in CLASSES}},
            "zone": {"entered": len(self.zone_entered),
                     "entered_by_label": {label: entered[label] for label in CLASSES},
                     "max_occupancy": max((f["zone_occupancy"] for f in self.frames), default=0)},
        }

    def to_dict(self, seed: int, fps: int) -> dict[str, Any]:
        return {
            "video": VIDEO_FILE, "seed": seed, "fps": fps, "frame_count": len(self.frames),
            "width": WIDTH, "height": HEIGHT, "labels": list(CLASSES), "anchor": ANCHOR, "min_visible": MIN_VISIBLE,
            "line": {"name": LINE_NAME, "a": list(LINE_A), "b": list(LINE_B), "in": IN_DIRECTION,
                     "out": OUT_DIRECTION},
            "zone": {"name": ZONE_NAME, "points": [list(p) for p in ZONE_POINTS]},
            "counts": self.counts(),
            "crossings": self.crossings,
            "vehicles": [self.vehicles[t] for t in sorted(self.vehicles)],
            "frames": self.frames,
        }


def _dumps(ground_truth: dict[str, Any]) -> str:
    """JSON with one line per frame, vehicle and crossing, the counts indented: readable and diffable."""
    entries = []
    for key, value in ground_truth.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            text = "[\n" + ",\n".join("    " + json.dumps(item, separators=(",", ":")) for item in value) + "\n  ]"
        else:
            text = json.dumps(value)
            text = text if len(text) <= 110 else json.dumps(value, indent=2).replace("\n", "\n  ")
        entries.append(f"  {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(entries) + "\n}\n"


CODEC_FIX = "install the PyPI wheel `opencv-python-headless` (edgewise[studio]), which bundles FFmpeg"


def _open_writer(path: Path, fps: int) -> cv2.VideoWriter:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), float(fps), (WIDTH, HEIGHT))
    if not writer.isOpened():
        path.unlink(missing_ok=True)  # an empty file would make the folder look written
        raise ConfigError(f"OpenCV cannot write an mp4 (fourcc mp4v) to {path}: this build has no mp4 encoder",
                          CODEC_FIX)
    return writer


def _frame_shapes_read_back(path: Path) -> list[tuple[int, ...]]:
    """The shape of every frame OpenCV decodes from `path`, read as the agent's video-file source does."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    shapes = []
    ok, frame = capture.read()
    while ok:
        shapes.append(frame.shape)
        ok, frame = capture.read()
    capture.release()
    return shapes


def write_traffic_video(out_dir: Path, *, seconds: float = 60.0, fps: int = FPS, seed: int = 0,
                        on_frame: ProgressHook | None = None) -> Path:
    """Write `out_dir/traffic.mp4` (`seconds` x `fps` frames, one simulation step each) and
    `out_dir/ground_truth.json`; returns `out_dir`."""
    import cv2

    total = round(seconds * fps)
    if total < 1 or fps < 1:
        raise ConfigError(f"a traffic video needs at least one frame (seconds={seconds}, fps={fps})",
                          "pass a positive duration and frame rate")
    out_dir = Path(out_dir)
    video_path = out_dir / VIDEO_FILE
    if video_path.exists() or (out_dir / GROUND_TRUTH_FILE).exists():
        raise ConfigError(f"{out_dir} already holds a traffic video",
                          "choose a new folder, or delete the old one first")
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)  # as render_clip: the scene, the look, then every frame's noise
    scene = new_scene(rng)
    look = make_look(rng, [lane.baseline for lane in scene.lanes])
    truth = GroundTruth()
    writer = _open_writer(video_path, fps)
    try:
        for index in range(total):
            frame, boxes, vehicles = render_frame(scene, look, rng)
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))  # OpenCV encodes BGR
            truth.add_frame(index, boxes, [(v.track_id, v.label, v.lane) for v in vehicles])
            step(scene, rng, 1)
            if on_frame is not None:
                on_frame(index + 1, total)
    finally:
        writer.release()
    shapes = _frame_shapes_read_back(video_path)
    if len(shapes) != total or set(shapes) != {(HEIGHT, WIDTH, 3)}:
        video_path.unlink()
        raise ConfigError(f"OpenCV read back {len(shapes)} of {total} frames (shapes {sorted(set(shapes))}) from "
                          "the mp4 it wrote: its mp4 codec is broken here", CODEC_FIX)
    (out_dir / GROUND_TRUTH_FILE).write_text(_dumps(truth.to_dict(seed, fps)))
    return out_dir


def write_traffic_video_sample(out_dir: Path, *, size: int | None, seed: int, image_size: int | None = None,
                               on_image: ProgressHook | None = None) -> Path:
    """The `traffic-video` sample: `size` frames at 10 fps (default 600, a minute)."""
    if image_size is not None:
        raise ConfigError(f"traffic video frames are {WIDTH}x{HEIGHT}; --image-size does not apply",
                          "leave --image-size out (a detector letterboxes frames of any size)")
    frames = DEFAULT_FRAMES if size is None else size
    return write_traffic_video(out_dir, seconds=frames / FPS, fps=FPS, seed=seed, on_frame=on_image)


def summary(out_dir: Path) -> str:
    """One line for the CLI: frames and the ground-truth counts."""
    truth = json.loads((Path(out_dir) / GROUND_TRUTH_FILE).read_text())
    line, zone = truth["counts"]["line"], truth["counts"]["zone"]
    return (f"{truth['frame_count']} frames at {truth['fps']} fps, {len(truth['vehicles'])} vehicles; "
            f"line {LINE_NAME}: in {line['in']}, out {line['out']}; zone {ZONE_NAME}: entered {zone['entered']}")
