"""Inline SVG line charts, rendered on the server so the page needs no chart library."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    points: str  # the SVG polyline's `points` attribute
    latest: float | None
    low: float
    high: float
    width: int
    height: int


def line_chart(title: str, unit: str, times: Sequence[float], values: Sequence[float | None],
               width: int = 320, height: int = 90) -> Chart:
    pairs = [(t, v) for t, v in zip(times, values, strict=False) if v is not None]
    if not pairs:
        return Chart(title, unit, "", None, 0.0, 0.0, width, height)
    t0, t1 = pairs[0][0], pairs[-1][0]
    low = min(v for _, v in pairs)
    high = max(v for _, v in pairs)
    span_t = (t1 - t0) or 1.0
    span_v = (high - low) or 1.0
    pad = 4
    coords = [(pad + (t - t0) / span_t * (width - 2 * pad), height - pad - (v - low) / span_v * (height - 2 * pad))
              for t, v in pairs]
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    return Chart(title, unit, points, pairs[-1][1], low, high, width, height)
