"""The counts part of the events page and of a device page: the per-class chart, the line-crossing
table, and the range links, for one window (and one device, or the whole fleet)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from edgewise.fleet.dashboard.event_counts import ClassCounts, LineCount, class_counts, line_counts
from edgewise.fleet.dashboard.stacked_chart import StackedChart, stacked_counts_chart
from edgewise.fleet.dashboard.time_window import RANGES, Window


@dataclass(frozen=True)
class RangeLink:
    title: str
    href: str
    chosen: bool


@dataclass(frozen=True)
class CountsSection:
    window: Window
    counts: ClassCounts
    chart: StackedChart
    lines: list[LineCount]
    ranges: list[RangeLink]
    label_href: Callable[[str], str]  # the events table filtered by a legend's class


def link(path: str, **query: str | None) -> str:
    """`path` with the query parameters that have a value."""
    kept = {key: value for key, value in query.items() if value}
    return f"{path}?{urlencode(kept)}" if kept else path


def counts_section(session: Session, window: Window, device_id: str | None, page_path: str,
                   page_query: dict[str, str | None]) -> CountsSection:
    """`page_path` and `page_query` are the page's own, for its range links (a range starts at page 1)."""
    counts = class_counts(session, window, device_id)
    ranges = [RangeLink(choice.title, link(page_path, **{**page_query, "range": key, "before": None}),
                        key == window.choice.key) for key, choice in RANGES.items()]

    def label_href(label: str) -> str:
        return link("/ui/events", device=device_id, label=label, range=window.choice.key)

    return CountsSection(window, counts, stacked_counts_chart(counts.per_label, window),
                         line_counts(session, window, device_id), ranges, label_href)
