"""`shapes`: generic marks on textured surfaces, a sample to pretrain backbones on.

Eight classes (blank, disc, ring, square, triangle, line, cross, zigzag), each drawn at a random
position, size, angle, stroke and contrast on a random surface (flat or gradient, fine grain,
sensor noise). It plays the part ImageNet plays for photographs: no class is an inspection
defect, but the low-level structure a backbone learns here (edges, strokes, blobs, rings, jagged
lines) is the structure inspection images are made of. `benchmarks/pretrained.py` pretrains on
it and fine-tunes on `parts`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from edgewise.studio.samples._split import ProgressHook, write_rendered

CLASSES = ["blank", "disc", "ring", "square", "triangle", "line", "cross", "zigzag"]
DEFAULT_SIZE = 2400
SUPERSAMPLE = 4


def _surface(rng: np.random.Generator, side: int) -> Image.Image:
    base = rng.uniform(60, 200)
    tint = rng.uniform(0.85, 1.15, 3)
    ramp = np.linspace(-1, 1, side)[None, :] * rng.uniform(-40, 40)
    angle = rng.uniform(0, math.pi)
    field = base + ramp * math.cos(angle) + ramp.T * math.sin(angle)
    grain = rng.normal(0, rng.uniform(2, 12), (side, side))
    gray = np.clip(field + grain, 0, 255)
    return Image.fromarray(np.clip(gray[..., None] * tint, 0, 255).astype(np.uint8), mode="RGB")


def _polygon(center: tuple[float, float], radius: float, sides: int, angle: float) -> list[tuple[float, float]]:
    return [(center[0] + radius * math.cos(angle + 2 * math.pi * k / sides),
             center[1] + radius * math.sin(angle + 2 * math.pi * k / sides)) for k in range(sides)]


def render_shape(label: str, rng: np.random.Generator, image_size: int) -> np.ndarray:
    side = image_size * SUPERSAMPLE
    canvas = _surface(rng, side)
    draw = ImageDraw.Draw(canvas)
    light = rng.random() < 0.5
    level = int(rng.uniform(200, 255) if light else rng.uniform(0, 50))
    colour = (level, level, level)
    stroke = max(2, int(side * rng.uniform(0.02, 0.06)))
    radius = side * rng.uniform(0.15, 0.32)
    margin = radius + stroke
    center = (rng.uniform(margin, side - margin), rng.uniform(margin, side - margin))
    angle = rng.uniform(0, 2 * math.pi)
    box = [center[0] - radius, center[1] - radius, center[0] + radius, center[1] + radius]
    if label == "disc":
        draw.ellipse(box, fill=colour)
    elif label == "ring":
        draw.ellipse(box, outline=colour, width=stroke)
    elif label == "square":
        draw.polygon(_polygon(center, radius, 4, angle), outline=colour, width=stroke)
    elif label == "triangle":
        draw.polygon(_polygon(center, radius, 3, angle), fill=colour)
    elif label in ("line", "cross"):
        for turn in ((0.0,) if label == "line" else (0.0, math.pi / 2)):
            dx, dy = radius * math.cos(angle + turn), radius * math.sin(angle + turn)
            draw.line([(center[0] - dx, center[1] - dy), (center[0] + dx, center[1] + dy)], fill=colour, width=stroke)
    elif label == "zigzag":
        steps = int(rng.integers(4, 8))
        points = []
        for k in range(steps + 1):
            along = -radius + 2 * radius * k / steps
            across = (radius * 0.35) * (1 if k % 2 else -1)
            points.append((center[0] + along * math.cos(angle) - across * math.sin(angle),
                           center[1] + along * math.sin(angle) + across * math.cos(angle)))
        draw.line(points, fill=colour, width=stroke)
    small = canvas.resize((image_size, image_size), Image.Resampling.BOX)
    noisy = np.asarray(small, dtype=np.float32) + rng.normal(0, rng.uniform(1.5, 6), (image_size, image_size, 3))
    return noisy.clip(0, 255).astype(np.uint8)


def write_shapes(out_dir: Path, *, size: int | None, seed: int, image_size: int,
                 on_image: ProgressHook | None = None) -> Path:
    total = DEFAULT_SIZE if size is None else size
    return write_rendered(out_dir, CLASSES, total, seed, image_size, render_shape, on_image)
