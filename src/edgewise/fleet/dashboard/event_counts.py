"""Counts over a time window, for the counts chart and the line-crossing table.

Each count reads at most `COUNT_CAP` events, the newest of the window, along the `ts` index (or
`(device_id, ts)` for one device), and the database groups them: a busy fleet's week costs a bounded
read, and the page says when the cap cut the window's older part off. Snapshot companions are not
counted: each repeats the event it illustrates.

Buckets are computed in SQL as floor((ts - start) / width), written with a cast and a correction
because SQLite has no floor() everywhere and PostgreSQL's cast to integer rounds where SQLite's
truncates: the same bucket for the same event on both.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Integer, Select, case, cast, func, select
from sqlalchemy.orm import Session

from edgewise.fleet.dashboard.event_queries import SNAPSHOT_TYPE, device_names
from edgewise.fleet.dashboard.time_window import Window
from edgewise.fleet.db.models import Event

COUNT_CAP = 100_000
LINE_CROSS_TYPE = "line_cross"
LINES_MAX = 200  # (device, line, direction) groups shown


@dataclass
class ClassCounts:
    """Events per label per bucket of a window (None: events without a label)."""

    per_label: dict[str | None, list[int]]
    types: set[str]  # the event types seen, for the type filter
    capped: bool  # the window held more than COUNT_CAP events: its older buckets are incomplete


@dataclass
class LineCount:
    device_id: str
    line: str
    crossed_in: int = 0
    crossed_out: int = 0
    device_name: str = ""
    running: dict[str, Any] = field(default_factory=dict)  # the newest crossing's `in`/`out` running counts


def _newest_in_window(columns: list[Any], window: Window, device_id: str | None) -> Select[Any]:
    query = select(*columns).where(Event.ts >= window.start, Event.ts < window.end)
    if device_id:
        query = query.where(Event.device_id == device_id)
    return query.order_by(Event.ts.desc()).limit(COUNT_CAP)


def class_counts(session: Session, window: Window, device_id: str | None = None) -> ClassCounts:
    newest = _newest_in_window([Event.ts, Event.label, Event.type], window, device_id) \
        .where(Event.type != SNAPSHOT_TYPE).subquery()
    position = (newest.c.ts - window.start) / float(window.choice.bucket_s)
    truncated = cast(position, Integer)
    bucketed = select((truncated - case((truncated > position, 1), else_=0)).label("bucket"),
                      newest.c.label, newest.c.type).subquery()
    # Grouped by the subquery's column: PostgreSQL cannot match a repeated expression's parameters.
    grouped = select(bucketed.c.bucket, bucketed.c.label, bucketed.c.type, func.count()) \
        .group_by(bucketed.c.bucket, bucketed.c.label, bucketed.c.type)
    per_label: dict[str | None, list[int]] = defaultdict(lambda: [0] * window.bucket_count)
    types: set[str] = set()
    counted = 0
    for bucket, label, event_type, count in session.execute(grouped):
        counted += count
        types.add(event_type)
        if 0 <= bucket < window.bucket_count:
            per_label[label][bucket] += count
    return ClassCounts(dict(per_label), types, counted >= COUNT_CAP)


def line_counts(session: Session, window: Window, device_id: str | None = None) -> list[LineCount]:
    """Crossings per (device, line) and direction in the window, with the running counts the newest
    crossing carried (the device's own totals since its agent started)."""
    newest = _newest_in_window([Event.id, Event.device_id, Event.data["line"].as_string().label("line"),
                                Event.data["direction"].as_string().label("direction")], window, device_id) \
        .where(Event.type == LINE_CROSS_TYPE).subquery()
    grouped = select(newest.c.device_id, newest.c.line, newest.c.direction, func.count(), func.max(newest.c.id)) \
        .group_by(newest.c.device_id, newest.c.line, newest.c.direction).limit(LINES_MAX)
    lines: dict[tuple[str, str], LineCount] = {}
    newest_id: dict[tuple[str, str], int] = {}
    for device, line, direction, count, last_id in session.execute(grouped):
        key = (device, line or "?")
        found = lines.setdefault(key, LineCount(device, key[1]))
        if direction == "in":
            found.crossed_in += count
        elif direction == "out":
            found.crossed_out += count
        newest_id[key] = max(newest_id.get(key, last_id), last_id)
    running = session.execute(select(Event.id, Event.data["in"], Event.data["out"])
                              .where(Event.id.in_(set(newest_id.values())))).all() if newest_id else []
    running_by_id = {event_id: {"in": crossed_in, "out": crossed_out} for event_id, crossed_in, crossed_out in running}
    names = device_names(session, {device for device, _ in lines})
    for key, found in lines.items():
        found.running = running_by_id.get(newest_id[key], {})
        found.device_name = names.get(found.device_id, found.device_id)
    return sorted(lines.values(), key=lambda c: (c.device_name, c.line))
