"""An inline SVG stacked bar chart of counts per class over time, laid out on the server like the
telemetry charts (`charts.py`): this module computes the geometry, `_event_counts.html` draws it."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edgewise.fleet.dashboard.time_window import Window

# Distinct on white and for the common kinds of colour blindness (Okabe-Ito, then two greys).
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000",
           "#999999", "#666666")
MAX_SERIES = 8  # more classes than this: the least frequent share one "other" series
OTHER = "other"
UNLABELLED = "(no label)"
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 48, 36, 10, 40  # room for the tick labels


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    title: str  # the tooltip: "person: 3 events, 14:05–14:10"


@dataclass(frozen=True)
class Series:
    label: str
    colour: str
    total: int
    bars: list[Bar]
    filterable: bool  # a real label, which the table can filter by (not "other" nor "(no label)")


@dataclass(frozen=True)
class Tick:
    at: float  # pixels along its axis
    text: str


@dataclass(frozen=True)
class StackedChart:
    width: int
    height: int
    left: float
    top: float
    right: float
    bottom: float
    series: list[Series]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    x_title: str
    y_title: str
    total: int


def nice_step(highest: int, most_ticks: int = 5) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50... that labels 0..highest in at most `most_ticks` steps."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            if highest <= factor * magnitude * most_ticks:
                return factor * magnitude
        magnitude *= 10


def _ranked_series(per_label: Mapping[str | None, Sequence[int]]) -> list[tuple[str, list[int], bool]]:
    """(name, counts, filterable), most frequent first; past MAX_SERIES the rest summed as "other"."""
    ranked = sorted(per_label.items(), key=lambda item: (-sum(item[1]), item[0] or ""))
    entries = [(label or UNLABELLED, list(counts), label is not None) for label, counts in ranked if sum(counts) > 0]
    if len(entries) > MAX_SERIES:
        rest = entries[MAX_SERIES - 1:]
        other = [sum(column) for column in zip(*(counts for _, counts, _ in rest), strict=True)]
        entries = [*entries[:MAX_SERIES - 1], (OTHER, other, False)]
    return entries


def stacked_counts_chart(per_label: Mapping[str | None, Sequence[int]], window: Window,
                         width: int = 720, height: int = 220) -> StackedChart:
    left, top, right, bottom = MARGIN_LEFT, MARGIN_TOP, width - MARGIN_RIGHT, height - MARGIN_BOTTOM
    ranked = _ranked_series(per_label)
    buckets = window.bucket_count
    stacked = [sum(counts[i] for _, counts, _ in ranked) for i in range(buckets)]
    step = nice_step(max(stacked, default=0))
    top_count = step * max(1, math.ceil(max(stacked, default=0) / step))
    slot = (right - left) / buckets
    per_count = (bottom - top) / top_count
    base = [float(bottom)] * buckets  # where the next series' bar starts, per bucket
    series = []
    for index, (label, counts, filterable) in enumerate(ranked):
        bars = []
        for i, count in enumerate(counts):
            if count:
                tall = count * per_count
                base[i] -= tall
                bars.append(Bar(round(left + i * slot + 1, 1), round(base[i], 1), round(max(slot - 2, 1), 1),
                                round(tall, 1), count, f"{label}: {count} events, {_bucket_title(window, i)}"))
        series.append(Series(label, PALETTE[index % len(PALETTE)], sum(counts), bars, filterable))
    x_ticks = [Tick(round(left + (t - window.start) / window.choice.seconds * (right - left), 1), text)
               for t, text in window.ticks()]
    y_ticks = [Tick(round(bottom - value * per_count, 1), str(value)) for value in range(0, top_count + 1, step)]
    return StackedChart(width, height, left, top, right, bottom, series, x_ticks, y_ticks,
                        f"time ({window.zone_title})", f"events / {window.choice.bucket_title}", sum(stacked))


def _bucket_title(window: Window, index: int) -> str:
    start = window.bucket_start(index)
    end = start + window.choice.bucket_s
    fmt = "%a %H:%M" if window.choice.bucket_s >= 3600 else "%H:%M"
    return f"{time.strftime(fmt, time.localtime(start))}–{time.strftime('%H:%M', time.localtime(end))}"
