"""`traffic`: vehicles on a five-lane road seen from a pole, a detection sample in short clips.

Four classes, two of which look alike (car and van share colours, wheels and windows; a van is
taller and boxier), from 12 px (a far motorbike) to half the frame (a near truck); up to ~20 per
frame; near vehicles hide far ones, lamp posts and signs stand in front of them, trees and
buildings clutter the skyline, and every clip has its own light (dusk to noon, tinted, with
shadow bands and sensor noise). Frames come in clips of consecutive frames (the same vehicles
moving on), so a split is made per clip: no held-out frame has a twin in training.

Boxes are the tight box of each vehicle's visible pixels (read off an id map drawn with the
same shapes), the COCO convention; a vehicle less than 30 % visible is not annotated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from edgewise.core.errors import ConfigError
from edgewise.studio.detect.annotations import ANNOTATIONS_FILE, IMAGES_DIR, AnnotatedImage, DetectionSet
from edgewise.studio.samples._split import ProgressHook, write_png
from edgewise.studio.samples.traffic_scene import CLASSES, HEIGHT, HORIZON, WIDTH, Scene, Vehicle, new_scene, step

SUPERSAMPLE = 2
MIN_VISIBLE = 0.3


@dataclass
class Look:
    """A clip's constant appearance: background, clutter and light."""

    background: Image.Image
    posts: list[tuple[float, float, int]]  # x, width, top y of foreground posts (frame pixels)
    brightness: float
    tint: np.ndarray
    noise: float
    shadows: list[tuple[float, float, float]]  # x0, x1, darkness of shadow bands on the road


def _s(value: float) -> float:
    return value * SUPERSAMPLE


def make_look(rng: np.random.Generator, lanes_y: list[float]) -> Look:
    side_w, side_h = WIDTH * SUPERSAMPLE, HEIGHT * SUPERSAMPLE
    sky = np.linspace(rng.uniform(120, 220), rng.uniform(170, 250), side_h)[:, None, None]
    canvas = np.broadcast_to(sky * np.array([0.8, 0.9, 1.0]), (side_h, side_w, 3)).copy()
    road_top = int(_s(HORIZON + 8))
    asphalt = rng.uniform(70, 120)
    canvas[road_top:] = asphalt + rng.normal(0, 6, (side_h - road_top, side_w, 1))
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(image)
    # Skyline clutter: buildings and trees between the sky and the road.
    for _ in range(int(rng.integers(4, 10))):
        x = rng.uniform(0, WIDTH)
        w, h = rng.uniform(15, 50), rng.uniform(10, 45)
        grey = int(rng.uniform(60, 170))
        if rng.random() < 0.5:
            draw.rectangle([_s(x), _s(HORIZON + 8 - h), _s(x + w), _s(HORIZON + 8)], fill=(grey, grey - 10, grey - 20))
        else:
            green = (int(rng.uniform(30, 70)), int(rng.uniform(80, 130)), int(rng.uniform(30, 60)))
            draw.ellipse([_s(x), _s(HORIZON + 8 - h), _s(x + w), _s(HORIZON + 14)], fill=green)
    # Lane markings between lanes, and road blotches that are not vehicles.
    for upper, lower in zip(lanes_y, lanes_y[1:], strict=False):
        y = (upper + lower) / 2 + 2
        for x in np.arange(rng.uniform(-20, 0), WIDTH, 28):
            draw.rectangle([_s(x), _s(y), _s(x + 12), _s(y + 1)], fill=(220, 220, 200))
    for _ in range(int(rng.integers(2, 7))):
        x, y = rng.uniform(0, WIDTH), rng.uniform(HORIZON + 12, HEIGHT)
        r = rng.uniform(3, 14)
        level = int(asphalt + rng.uniform(-40, 40))
        draw.ellipse([_s(x - 2 * r), _s(y - r / 2), _s(x + 2 * r), _s(y + r / 2)], fill=(level, level, level))
    posts = [(float(rng.uniform(0, WIDTH)), float(rng.uniform(2, 5)), int(rng.uniform(0, HORIZON)))
             for _ in range(int(rng.integers(0, 3)))]
    shadows = [(float(x0), float(x0 + rng.uniform(10, 50)), float(rng.uniform(0.5, 0.85)))
               for x0 in rng.uniform(0, WIDTH, int(rng.integers(0, 4)))]
    return Look(image, posts, float(rng.uniform(0.55, 1.25)), rng.uniform(0.85, 1.15, 3), float(rng.uniform(1, 7)),
                shadows)


def _wheels(draw: ImageDraw.ImageDraw, x0: float, x1: float, base: float, radius: float, fill: object) -> None:
    for cx in (x0 + 1.6 * radius, x1 - 1.6 * radius):
        draw.ellipse([_s(cx - radius), _s(base - 2 * radius), _s(cx + radius), _s(base)], fill=fill)  # type: ignore[arg-type]


def draw_vehicle(draw: ImageDraw.ImageDraw, vehicle: Vehicle, box: tuple[float, float, float, float],
                 direction: int, fill: object | None = None) -> None:
    """One vehicle in `box`; with `fill` (an id), its silhouette only, for the id map."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    body = fill or vehicle.colour
    glass = fill or (40, 50, 60)
    tyre = fill or (20, 20, 20)
    front_right = direction > 0

    def flip(a: float, b: float) -> tuple[float, float]:
        """Horizontal span [a, b] of the width (0..1) measured from the rear."""
        return (x0 + a * w, x0 + b * w) if front_right else (x1 - b * w, x1 - a * w)

    radius = 0.19 * h if vehicle.label != "motorbike" else 0.27 * h
    if vehicle.label == "car":
        roof_a, roof_b = flip(0.2 + 0.1 * vehicle.style, 0.72)
        draw.polygon([(_s(roof_a), _s(y0 + 0.45 * h)), (_s(roof_a + 0.08 * w), _s(y0)), (_s(roof_b - 0.1 * w), _s(y0)),
                      (_s(roof_b), _s(y0 + 0.45 * h))], fill=body)  # type: ignore[arg-type]
        draw.rectangle([_s(x0), _s(y0 + 0.42 * h), _s(x1), _s(y1 - radius)], fill=body)  # type: ignore[arg-type]
        if fill is None:
            win_a, win_b = flip(0.28 + 0.1 * vehicle.style, 0.66)
            draw.rectangle([_s(win_a), _s(y0 + 0.1 * h), _s(win_b), _s(y0 + 0.4 * h)], fill=glass)  # type: ignore[arg-type]
    elif vehicle.label == "van":
        draw.rectangle([_s(x0), _s(y0), _s(x1), _s(y1 - radius)], fill=body)  # type: ignore[arg-type]
        if fill is None:
            win_a, win_b = flip(0.78, 0.95)
            draw.rectangle([_s(win_a), _s(y0 + 0.1 * h), _s(win_b), _s(y0 + 0.4 * h)], fill=glass)  # type: ignore[arg-type]
            if vehicle.style > 0.5:
                side_a, side_b = flip(0.1, 0.7)
                draw.rectangle([_s(side_a), _s(y0 + 0.12 * h), _s(side_b), _s(y0 + 0.35 * h)], fill=glass)  # type: ignore[arg-type]
    elif vehicle.label == "truck":
        cargo_a, cargo_b = flip(0.0, 0.74)
        cab_a, cab_b = flip(0.76, 1.0)
        draw.rectangle([_s(cargo_a), _s(y0), _s(cargo_b), _s(y1 - radius)], fill=body)  # type: ignore[arg-type]
        draw.rectangle([_s(cab_a), _s(y0 + 0.3 * h), _s(cab_b), _s(y1 - radius)],
                       fill=fill or vehicle.cab_colour)  # type: ignore[arg-type]
        link_a, link_b = flip(0.72, 0.78)
        draw.rectangle([_s(link_a), _s(y1 - 2.2 * radius), _s(link_b), _s(y1 - radius)], fill=tyre)  # type: ignore[arg-type]
        if fill is None:
            win_a, win_b = flip(0.84, 0.97)
            draw.rectangle([_s(win_a), _s(y0 + 0.38 * h), _s(win_b), _s(y0 + 0.6 * h)], fill=glass)  # type: ignore[arg-type]
    else:  # motorbike and rider
        rider_a, rider_b = flip(0.35, 0.65)
        draw.ellipse([_s(rider_a + 0.05 * w), _s(y0), _s(rider_b - 0.05 * w), _s(y0 + 0.25 * h)],
                     fill=fill or (30, 30, 30))  # type: ignore[arg-type]
        draw.rectangle([_s(rider_a), _s(y0 + 0.22 * h), _s(rider_b), _s(y1 - 1.3 * radius)],
                       fill=fill or vehicle.cab_colour)  # type: ignore[arg-type]
        frame_a, frame_b = flip(0.15, 0.85)
        draw.rectangle([_s(frame_a), _s(y1 - 1.6 * radius), _s(frame_b), _s(y1 - radius)], fill=body)  # type: ignore[arg-type]
    _wheels(draw, x0, x1, y1, radius, tyre)


def render_frame(scene: Scene, look: Look, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[Vehicle]]:
    """(RGB frame, visible boxes (N, 4), the vehicles they belong to), far lanes drawn first."""
    canvas = look.background.copy()
    ids = Image.new("L", canvas.size, 0)
    draw, draw_ids = ImageDraw.Draw(canvas), ImageDraw.Draw(ids)
    ordered = sorted(scene.vehicles, key=lambda v: v.lane)[:250]
    for index, vehicle in enumerate(ordered, start=1):
        lane = scene.lanes[vehicle.lane]
        box = vehicle.extent(lane)
        draw_vehicle(draw, vehicle, box, lane.direction)
        draw_vehicle(draw_ids, vehicle, box, lane.direction, fill=index)
    for x, width, top in look.posts:  # foreground lamp posts hide what is behind them
        rect = [_s(x), _s(top), _s(x + width), _s(HEIGHT)]
        draw.rectangle(rect, fill=(50, 50, 55))
        draw_ids.rectangle(rect, fill=0)
    pixels = np.asarray(canvas, dtype=np.float32)
    for x0, x1, darkness in look.shadows:
        pixels[int(_s(HORIZON + 8)):, int(_s(x0)):int(_s(x1))] *= darkness
    pixels = pixels * look.brightness * look.tint
    small = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB").resize((WIDTH, HEIGHT),
                                                                                        Image.Resampling.BOX)
    noisy = np.asarray(small, dtype=np.float32) + rng.normal(0, look.noise, (HEIGHT, WIDTH, 3))
    boxes, kept = _visible_boxes(np.asarray(ids), ordered, scene)
    return noisy.clip(0, 255).astype(np.uint8), boxes, kept


def _silhouette_pixels(vehicle: Vehicle, scene: Scene) -> int:
    """Pixels (supersampled) the vehicle's shape covers inside the frame when nothing hides it."""
    lane = scene.lanes[vehicle.lane]
    x0, y0, x1, y1 = vehicle.extent(lane)
    alone = Image.new("L", (WIDTH * SUPERSAMPLE, HEIGHT * SUPERSAMPLE), 0)
    draw_vehicle(ImageDraw.Draw(alone), vehicle, (x0, y0, x1, y1), lane.direction, fill=1)
    return int(np.count_nonzero(np.asarray(alone)))


def _visible_boxes(ids: np.ndarray, ordered: list[Vehicle], scene: Scene) -> tuple[np.ndarray, list[Vehicle]]:
    counts = np.bincount(ids.reshape(-1), minlength=len(ordered) + 1)
    boxes, kept = [], []
    for index, vehicle in enumerate(ordered, start=1):
        if counts[index] == 0:
            continue
        mask = ids == index
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64) / SUPERSAMPLE
        if min(box[2:] - box[:2]) < 4 or counts[index] < MIN_VISIBLE * _silhouette_pixels(vehicle, scene):
            continue
        boxes.append(box)
        kept.append(vehicle)
    return np.array(boxes, dtype=np.float64).reshape(-1, 4), kept


def render_clip(seed: int | list[int], frames: int, stride: int = 3):  # type: ignore[no-untyped-def]
    """Yield (frame, boxes, vehicles) for `frames` frames `stride` simulation steps apart."""
    rng = np.random.default_rng(seed)
    scene = new_scene(rng)
    look = make_look(rng, [lane.baseline for lane in scene.lanes])
    for _ in range(frames):
        yield render_frame(scene, look, rng)
        step(scene, rng, stride)


def class_index(vehicle: Vehicle) -> int:
    return CLASSES.index(vehicle.label)




DEFAULT_SIZE = 1500
CLIP_FRAMES = 10
CLIP_SPLIT = {"train": 0.7, "val": 0.15, "test": 0.15}


def write_traffic(out_dir: Path, *, size: int | None, seed: int, image_size: int | None = None,
                  on_image: ProgressHook | None = None) -> Path:
    """`size` frames (default 1500) in clips of 10, split 70/15/15 by clip, in the native layout
    (`split/images/*.png`, `split/annotations.json`, COCO)."""
    from edgewise.studio.detect.formats.coco import write_coco

    if image_size is not None:
        raise ConfigError(f"traffic frames are {WIDTH}x{HEIGHT}; --image-size does not apply",
                          "leave --image-size out (a detector letterboxes frames of any size)")
    total = DEFAULT_SIZE if size is None else size
    clips = max(3, -(-total // CLIP_FRAMES))
    order = np.random.default_rng(seed).permutation(clips)
    n_val, n_test = max(1, round(clips * CLIP_SPLIT["val"])), max(1, round(clips * CLIP_SPLIT["test"]))
    split_of = {int(clip): "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
                for rank, clip in enumerate(order)}
    images: dict[str, list[AnnotatedImage]] = {"train": [], "val": [], "test": []}
    done = 0
    for clip in range(clips):
        frames = min(CLIP_FRAMES, total - clip * CLIP_FRAMES) if clip < clips - 1 else total - done
        split = split_of[clip]
        for index, (frame, boxes, vehicles) in enumerate(render_clip([seed, clip], max(frames, 0))):
            file = f"{IMAGES_DIR}/clip{clip:04d}_{index:02d}.png"
            write_png(frame, out_dir / split / file)
            images[split].append(AnnotatedImage(file, WIDTH, HEIGHT, boxes, [class_index(v) for v in vehicles],
                                                sequence=f"clip{clip:04d}", frame=index))
            done += 1
            if on_image is not None:
                on_image(done, total)
    for split, annotated in images.items():
        write_coco(DetectionSet(out_dir / split, list(CLASSES), annotated), out_dir / split / ANNOTATIONS_FILE)
    return out_dir
