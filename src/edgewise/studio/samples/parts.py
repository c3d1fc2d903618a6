"""`parts`: synthetic industrial inspection, metal parts on a conveyor belt.

Classes: ok, scratch (thin straight mark), hole (a punched-through spot where the belt shows),
crack (a dark jagged line running in from an edge). Every frame varies the part's shape, size,
pose, the belt texture, the lighting (gain, tint, a gradient across the frame) and the sensor
noise, all drawn from the given numpy Generator, so a seed reproduces the set exactly.

Only numpy and PIL are used here (no torch), so the same renderer can feed a synthetic conveyor
video on a device.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from edgewise.core.errors import ConfigError
from edgewise.studio.samples._split import ProgressHook, write_rendered

CLASSES = ["ok", "scratch", "hole", "crack"]
DEFAULT_SIZE = 1000
# Drawn at this multiple of the output size, then box-filtered down: anti-aliased thin defects.
SUPERSAMPLE = 4


def render_part(label: str, rng: np.random.Generator, image_size: int) -> np.ndarray:
    """One conveyor frame showing a part of class `label`, as an (H, W, 3) uint8 RGB array."""
    if label not in CLASSES:
        raise ConfigError(f"unknown parts class {label!r}", f"use one of: {', '.join(CLASSES)}")
    canvas = image_size * SUPERSAMPLE
    belt = _conveyor_belt(rng, canvas)
    surface, mask = _part_layers(rng, canvas)
    if label == "scratch":
        _draw_scratch(rng, surface, mask)
    elif label == "hole":
        _draw_hole(rng, mask)
    elif label == "crack":
        _draw_crack(rng, surface, mask)
    surface, mask = _place(rng, surface, mask, canvas)
    frame = _composite(rng, belt, surface, mask)
    small = Image.fromarray(frame, mode="RGB").resize((image_size, image_size), Image.Resampling.BOX)
    noisy = np.asarray(small, dtype=np.float32) + rng.normal(0.0, rng.uniform(1.5, 6.0), (image_size, image_size, 3))
    return noisy.clip(0, 255).astype(np.uint8)


def write_parts(out_dir: Path, *, size: int | None, seed: int, image_size: int,
                on_image: ProgressHook | None = None) -> Path:
    total = DEFAULT_SIZE if size is None else size
    return write_rendered(out_dir, CLASSES, total, seed, image_size, render_part, on_image)


def _conveyor_belt(rng: np.random.Generator, canvas: int) -> np.ndarray:
    """Dark rubber belt: cross ribs, fine grain and two side rails, as float gray."""
    rows = np.arange(canvas, dtype=np.float32)[:, None]
    cols = np.arange(canvas, dtype=np.float32)[None, :]
    period = rng.uniform(0.08, 0.16) * canvas
    phase = rng.uniform(0, 2 * math.pi)
    ribs = 6.0 * np.sin(2 * math.pi * cols / period + phase) * np.ones_like(rows)
    grain = rng.normal(0.0, 5.0, (canvas, canvas)).astype(np.float32)
    belt = rng.uniform(45, 85) + ribs + grain
    rail = int(rng.uniform(0.04, 0.08) * canvas)
    belt[:rail] = belt[-rail:] = rng.uniform(110, 140)
    return belt


def _part_layers(rng: np.random.Generator, canvas: int) -> tuple[np.ndarray, np.ndarray]:
    """A brushed-metal plate or disc centred on the canvas: (surface gray, coverage mask)."""
    mask_image = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(mask_image)
    centre = canvas / 2
    if rng.random() < 0.5:
        half_w, half_h = rng.uniform(0.26, 0.34) * canvas, rng.uniform(0.17, 0.24) * canvas
        radius = rng.uniform(0.02, 0.08) * canvas
        box = (centre - half_w, centre - half_h, centre + half_w, centre + half_h)
        draw.rounded_rectangle(box, radius=radius, fill=255)
    else:
        radius = rng.uniform(0.22, 0.3) * canvas
        draw.ellipse((centre - radius, centre - radius, centre + radius, centre + radius), fill=255)
    rows = np.linspace(-1, 1, canvas, dtype=np.float32)[:, None]
    cols = np.linspace(-1, 1, canvas, dtype=np.float32)[None, :]
    light_angle = rng.uniform(0, 2 * math.pi)
    sheen = math.cos(light_angle) * cols + math.sin(light_angle) * rows
    brushed = np.repeat(rng.normal(0, 4.0, (1, canvas)), canvas, axis=0).astype(np.float32)
    surface = rng.uniform(165, 205) + rng.uniform(15, 30) * sheen + brushed
    return surface, np.asarray(mask_image, dtype=np.float32) / 255.0


def _interior_point(rng: np.random.Generator, mask: np.ndarray, margin: float) -> tuple[float, float]:
    """A random point well inside the part (at least `margin` pixels from its edge)."""
    canvas = mask.shape[0]
    inner = np.asarray(
        Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.MinFilter(_odd(2 * margin + 1)))
    )
    ys, xs = np.nonzero(inner > 127)
    if len(xs) == 0:
        return canvas / 2, canvas / 2
    pick = rng.integers(len(xs))
    return float(xs[pick]), float(ys[pick])


def _odd(value: float) -> int:
    size = max(3, int(value))
    return size if size % 2 else size + 1


def _darken_along(surface: np.ndarray, mask: np.ndarray, points: list[tuple[float, float]],
                  width: float, strength: float) -> None:
    layer = Image.new("L", surface.shape[::-1], 0)
    ImageDraw.Draw(layer).line(points, fill=255, width=max(1, round(width)), joint="curve")
    marks = np.asarray(layer, dtype=np.float32) / 255.0 * mask
    surface *= 1.0 - strength * marks


def _draw_scratch(rng: np.random.Generator, surface: np.ndarray, mask: np.ndarray) -> None:
    canvas = mask.shape[0]
    x, y = _interior_point(rng, mask, margin=0.08 * canvas)
    angle = rng.uniform(0, math.pi)
    half = rng.uniform(0.15, 0.25) * canvas
    dx, dy = half * math.cos(angle), half * math.sin(angle)
    width = rng.uniform(0.9, 1.3) * SUPERSAMPLE
    _darken_along(surface, mask, [(x - dx, y - dy), (x + dx, y + dy)], width, rng.uniform(0.35, 0.5))


def _draw_hole(rng: np.random.Generator, mask: np.ndarray) -> None:
    canvas = mask.shape[0]
    radius = rng.uniform(0.055, 0.085) * canvas
    x, y = _interior_point(rng, mask, margin=radius + 0.04 * canvas)
    hole = Image.new("L", (canvas, canvas), 0)
    ImageDraw.Draw(hole).ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    mask *= 1.0 - np.asarray(hole, dtype=np.float32) / 255.0


def _draw_crack(rng: np.random.Generator, surface: np.ndarray, mask: np.ndarray) -> None:
    """A jagged dark line that starts on the part's edge and runs inward, sometimes forking."""
    canvas = mask.shape[0]
    centre = canvas / 2
    heading = rng.uniform(0, 2 * math.pi)
    distance = 0.0
    while distance < canvas / 2 and mask[int(centre + distance * math.sin(heading)),
                                          int(centre + distance * math.cos(heading))] > 0.5:
        distance += 1.0
    start = (centre + (distance - 1) * math.cos(heading), centre + (distance - 1) * math.sin(heading))
    inward = heading + math.pi
    points = [start]
    length = rng.uniform(0.3, 0.45) * canvas
    steps = int(rng.integers(6, 10))
    for _ in range(steps):
        inward += rng.uniform(-0.7, 0.7)
        last = points[-1]
        points.append((last[0] + length / steps * math.cos(inward), last[1] + length / steps * math.sin(inward)))
    width = rng.uniform(1.3, 1.9) * SUPERSAMPLE
    _darken_along(surface, mask, points, width, rng.uniform(0.75, 0.9))
    if rng.random() < 0.5:
        fork_from = points[len(points) // 2]
        fork_angle = inward + rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0)
        fork_end = (fork_from[0] + 0.25 * length * math.cos(fork_angle),
                    fork_from[1] + 0.25 * length * math.sin(fork_angle))
        _darken_along(surface, mask, [fork_from, fork_end], width * 0.7, rng.uniform(0.6, 0.8))


def _place(rng: np.random.Generator, surface: np.ndarray, mask: np.ndarray,
           canvas: int) -> tuple[np.ndarray, np.ndarray]:
    """Rotate the part to a random pose and shift it along/across the belt."""
    angle = rng.uniform(0, 360)
    shift = (rng.uniform(-0.1, 0.1) * canvas, rng.uniform(-0.08, 0.08) * canvas)
    placed = []
    for layer in (surface, mask * 255.0):
        image = Image.fromarray(layer.clip(0, 255).astype(np.uint8), mode="L")
        image = image.rotate(angle, resample=Image.Resampling.BILINEAR, translate=shift)
        placed.append(np.asarray(image, dtype=np.float32))
    return placed[0], placed[1] / 255.0


def _composite(rng: np.random.Generator, belt: np.ndarray, surface: np.ndarray, mask: np.ndarray) -> np.ndarray:
    canvas = belt.shape[0]
    offset = int(rng.uniform(0.01, 0.03) * canvas)
    shadow_image = Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(offset + 1))
    shadow = np.roll(np.asarray(shadow_image, dtype=np.float32) / 255.0, (offset, offset), axis=(0, 1))
    belt = belt * (1.0 - 0.45 * shadow)
    belt_rgb = belt[..., None] * np.array([1.0, 1.02, 0.98], dtype=np.float32)
    metal_rgb = surface[..., None] * np.array([0.97, 1.0, 1.04], dtype=np.float32)
    frame = belt_rgb * (1.0 - mask[..., None]) + metal_rgb * mask[..., None]
    rows = np.linspace(-1, 1, canvas, dtype=np.float32)[:, None]
    cols = np.linspace(-1, 1, canvas, dtype=np.float32)[None, :]
    light_angle = rng.uniform(0, 2 * math.pi)
    gradient = 1.0 + rng.uniform(0.0, 0.25) * (math.cos(light_angle) * cols + math.sin(light_angle) * rows)
    tint = rng.uniform(0.92, 1.08, size=3).astype(np.float32)
    frame = frame * gradient[..., None] * tint * rng.uniform(0.75, 1.25) + rng.uniform(-15, 15)
    return frame.clip(0, 255).astype(np.uint8)
