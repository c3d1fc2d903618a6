"""The events table's page of rows: newest first, filtered, paged by a keyset cursor, each query
bounded by a LIMIT and served by an index (`ix_events_ts`, or `ix_events_device_ts` for one device).

A rule with `snapshot = true` sends two events for one firing: the event itself, and a companion of
type `snapshot` with the same device, time, label and data, and the JPEG. The table shows the
companion's frame in its event's row, so it lists companions alone only when asked for type `snapshot`.

Rows never load `data` whole (a shadow report's can be megabytes) nor the JPEG: only the keys the
table shows, each extracted by the database.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from edgewise.fleet.db.models import Device, Event

SNAPSHOT_TYPE = "snapshot"
PAGE_SIZE = 50
DETAIL_KEYS = ("rule", "zone", "line", "direction", "in", "out", "inside", "held_s", "dwell_s",
               "track_id", "track_ids", "box", "boxes")
DEVICE_CHOICES_MAX = 1000  # as many as the devices page lists


@dataclass(frozen=True)
class EventFilters:
    since: float
    device_id: str | None = None
    label: str | None = None
    type: str | None = None


@dataclass(frozen=True)
class Cursor:
    """Where the next (older) page starts: events before (ts, id) in the table's order."""

    ts: float
    id: int

    def __str__(self) -> str:
        return f"{self.ts!r}:{self.id}"  # repr: the float comes back exactly

    @classmethod
    def parse(cls, text: str | None) -> Cursor | None:
        """None for no cursor or a malformed one (a hand-edited link starts at the first page)."""
        ts_text, _, id_text = (text or "").partition(":")
        try:
            ts, event_id = float(ts_text), int(id_text)
        except ValueError:
            return None
        return cls(ts, event_id) if math.isfinite(ts) and ts >= 0 and event_id >= 0 else None


@dataclass
class EventRow:
    id: int
    device_id: str
    ts: float
    priority: str
    type: str
    label: str | None
    score: float | None
    bundle: str
    has_snapshot: bool
    details: dict[str, Any]
    device_name: str = ""
    frame_event_id: int | None = None  # the event whose JPEG shows this one: itself, or its companion


@dataclass
class EventsPage:
    rows: list[EventRow]
    next_cursor: Cursor | None


def _row_columns() -> list[Any]:
    return [Event.id, Event.device_id, Event.ts, Event.priority, Event.type, Event.label, Event.score,
            Event.bundle_name, Event.bundle_version, Event.snapshot_jpeg.is_not(None).label("has_snapshot"),
            *(Event.data[key].label(f"data_{key}") for key in DETAIL_KEYS)]


def page_of_events(session: Session, filters: EventFilters, cursor: Cursor | None = None,
                   limit: int = PAGE_SIZE) -> EventsPage:
    query = select(*_row_columns()).where(Event.ts >= filters.since)
    query = query.where(Event.type == filters.type if filters.type else Event.type != SNAPSHOT_TYPE)
    if filters.device_id:
        query = query.where(Event.device_id == filters.device_id)
    if filters.label:
        query = query.where(Event.label == filters.label)
    if cursor is not None:
        query = query.where(or_(Event.ts < cursor.ts, and_(Event.ts == cursor.ts, Event.id < cursor.id)))
    found = session.execute(query.order_by(Event.ts.desc(), Event.id.desc()).limit(limit + 1)).all()
    rows = [_event_row(found_row) for found_row in found[:limit]]
    _attach_frames(session, rows)
    names = device_names(session, {row.device_id for row in rows})
    for row in rows:
        row.device_name = names.get(row.device_id, row.device_id)
    more = len(found) > limit
    return EventsPage(rows, Cursor(rows[-1].ts, rows[-1].id) if more else None)


def _event_row(found: Any) -> EventRow:
    bundle = (found.bundle_name or "") + (f":{found.bundle_version}" if found.bundle_version else "")
    details = {key: getattr(found, f"data_{key}") for key in DETAIL_KEYS}
    return EventRow(found.id, found.device_id, found.ts, found.priority, found.type, found.label, found.score,
                    bundle, bool(found.has_snapshot), {k: v for k, v in details.items() if v is not None})


def _attach_frames(session: Session, rows: Sequence[EventRow]) -> None:
    """Each row's frame: its own JPEG, else its companion snapshot's (same device, ts, label, rule)."""
    for row in rows:
        row.frame_event_id = row.id if row.has_snapshot else None
    wanting = [row for row in rows if not row.has_snapshot and row.type != SNAPSHOT_TYPE]
    if not wanting:
        return
    rule = Event.data["rule"].as_string()
    companions = session.execute(
        select(Event.id, Event.device_id, Event.ts, Event.label, rule.label("rule"))
        .where(Event.type == SNAPSHOT_TYPE, Event.snapshot_jpeg.is_not(None),
               Event.device_id.in_({row.device_id for row in wanting}), Event.ts.in_({row.ts for row in wanting}))
        .limit(4 * len(wanting))
    ).all()
    frames = {(c.device_id, c.ts, c.label, c.rule): c.id for c in companions}
    for row in wanting:
        row.frame_event_id = frames.get((row.device_id, row.ts, row.label, row.details.get("rule")))


def device_names(session: Session, device_ids: set[str]) -> dict[str, str]:
    if not device_ids:
        return {}
    return dict(session.execute(select(Device.id, Device.name).where(Device.id.in_(device_ids))).all())


def device_choices(session: Session) -> list[tuple[str, str]]:
    """(id, name) of the devices the filter offers, by name."""
    rows = session.execute(select(Device.id, Device.name).order_by(Device.name, Device.id).limit(DEVICE_CHOICES_MAX))
    return [(device_id, name) for device_id, name in rows]


def any_event_stored(session: Session) -> bool:
    """Whether the fleet ever stored an event: the empty page says "none yet" or "none match"."""
    return session.scalar(select(Event.id).limit(1)) is not None
