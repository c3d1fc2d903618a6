"""A synthetic conveyor belt: metal parts slide past, some with a scratch, a hole or a crack.

numpy + OpenCV drawing only, deterministic for a seed; close in spirit to the studio's parts
dataset (classes ok / scratch / hole / crack), so a model trained there reacts to it.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from edgewise.agent.sources.base import Source

DEFECTS = ("scratch", "hole", "crack")


def draw_part(canvas: np.ndarray, center: tuple[int, int], radius: int, defect: str, rng: np.random.Generator) -> None:
    """A grey metal disc with a bore, plus the defect drawn in dark strokes."""
    cv2.circle(canvas, center, radius, (170, 172, 176), -1, cv2.LINE_AA)
    cv2.circle(canvas, center, radius, (110, 110, 115), 2, cv2.LINE_AA)
    cv2.circle(canvas, center, max(radius // 5, 2), (60, 60, 60), -1, cv2.LINE_AA)
    cx, cy = center
    if defect == "scratch":
        angle = rng.uniform(0, np.pi)
        dx, dy = int(np.cos(angle) * radius * 0.7), int(np.sin(angle) * radius * 0.7)
        cv2.line(canvas, (cx - dx, cy - dy), (cx + dx, cy + dy), (235, 235, 240), 2, cv2.LINE_AA)
    elif defect == "hole":
        offset = rng.integers(-radius // 2, radius // 2 + 1, size=2)
        cv2.circle(canvas, (cx + int(offset[0]), cy + int(offset[1])), max(radius // 8, 2), (20, 20, 20), -1)
    elif defect == "crack":
        points = [(cx + int(rng.integers(-radius // 2, 1)), cy + int(rng.integers(-radius // 2, 1)))]
        for _ in range(5):
            last = points[-1]
            points.append((last[0] + int(rng.integers(2, radius // 4 + 3)), last[1] + int(rng.integers(-4, 8))))
        cv2.polylines(canvas, [np.array(points, dtype=np.int32)], False, (30, 30, 35), 2, cv2.LINE_AA)


class ConveyorSource(Source):
    """Synthetic conveyor: parts with defects appearing (no camera needed)."""

    def _raw_frames(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(self.settings.seed)
        width, height = self.settings.width, self.settings.height
        radius = max(min(width, height) // 4, 6)
        spacing = radius * 3
        step = max(width // 40, 2)
        parts: list[tuple[int, str]] = []  # (x position, defect)
        offset = 0
        while True:
            if not parts or parts[-1][0] >= spacing - radius:
                defect = str(rng.choice(DEFECTS)) if rng.random() < self.settings.defect_rate else "ok"
                parts.append((-radius, defect))
            canvas = np.full((height, width, 3), (48, 52, 58), dtype=np.uint8)
            for stripe in range(-offset % 20, width, 20):  # belt texture moves with the parts
                cv2.line(canvas, (stripe, 0), (stripe, height), (40, 44, 50), 1)
            detail_rng = np.random.default_rng(self.settings.seed + 7)
            for x, defect in parts:
                draw_part(canvas, (x, height // 2), radius, defect, detail_rng)
            noise = rng.integers(0, 6, size=canvas.shape, dtype=np.uint8)
            yield cv2.add(canvas, noise)
            parts = [(x + step, d) for x, d in parts if x + step - radius < width]
            offset += step
