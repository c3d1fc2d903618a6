"""The events page's queries on SQLite and PostgreSQL: the same buckets for the same events, the
paging cursor through ties, snapshot companions folded into their event, line-crossing sums."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from edgewise.fleet.dashboard.event_counts import class_counts, line_counts
from edgewise.fleet.dashboard.event_queries import Cursor, EventFilters, page_of_events
from edgewise.fleet.dashboard.time_window import window_for
from edgewise.fleet.db import Database, open_database
from edgewise.fleet.db.models import Device, Event

NOW = 1_750_000_000.0  # a fixed "now": buckets and ticks do not depend on when the test runs


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = open_database(db_url)
    with database.session() as session:
        session.add(Device(id="dev-a", name="front-door", public_key="k", enrolled_at=NOW))
    yield database
    database.dispose()


_seqs = itertools.count(1)


def add_events(db: Database, *events: dict[str, Any]) -> None:
    with db.session() as session:
        for values in events:
            session.add(Event(**{"device_id": "dev-a", "seq": next(_seqs), "received_at": NOW, "priority": "event",
                                 "type": "alarm", "data": {}, **values}))


def test_buckets_are_the_same_on_every_database(db: Database) -> None:
    window = window_for("1h", NOW)  # 12 buckets of 5 min
    start, width = window.start, window.choice.bucket_s
    add_events(db, {"ts": start + 0.4, "label": "person"},  # bucket 0
               {"ts": start + width - 0.4, "label": "person"},  # still bucket 0: floor, not round
               {"ts": start + width, "label": "car"},  # bucket 1
               {"ts": start + 11 * width + 1, "label": None},  # the last bucket
               {"ts": start - 1, "label": "person"},  # before the window: not counted
               {"ts": start + 2, "label": "person", "type": "snapshot", "priority": "snapshot"})  # a companion
    with db.session(write=False) as session:
        counts = class_counts(session, window)
    assert counts.per_label["person"] == [2] + [0] * 11
    assert counts.per_label["car"] == [0, 1] + [0] * 10
    assert counts.per_label[None][-1] == 1
    assert counts.types == {"alarm"} and not counts.capped


def test_paging_walks_through_equal_times_once(db: Database) -> None:
    add_events(db, *({"ts": NOW - 10 * (i // 3), "label": "person"} for i in range(7)))  # ties of three
    seen: list[int] = []
    cursor: Cursor | None = None
    with db.session(write=False) as session:
        for _ in range(10):
            page = page_of_events(session, EventFilters(since=NOW - 3600), cursor, limit=2)
            seen += [row.id for row in page.rows]
            cursor = Cursor.parse(str(page.next_cursor)) if page.next_cursor else None  # through its text, as a link
            if cursor is None:
                break
    assert len(seen) == 7 == len(set(seen))
    assert page.rows[0].device_name == "front-door"
    assert Cursor.parse("garbage") is None and Cursor.parse("nan:3") is None and Cursor.parse("-1:3") is None


def test_a_snapshot_companion_shows_in_its_event_row(db: Database) -> None:
    data = {"rule": "crowded", "zone": "bay", "boxes": [[1, 2, 3, 4]], "track_ids": [7], "inside": 1}
    add_events(db, {"ts": NOW - 5, "label": "person", "type": "zone_count", "data": data},
               {"ts": NOW - 5, "label": "person", "type": "snapshot", "priority": "snapshot", "data": data,
                "snapshot_jpeg": b"\xff\xd8jpeg\xff\xd9"},
               {"ts": NOW - 5, "label": "person", "type": "dwell", "data": {"rule": "other", "box": [1, 2, 3, 4]}})
    with db.session(write=False) as session:
        rows = page_of_events(session, EventFilters(since=NOW - 60)).rows
        alone = page_of_events(session, EventFilters(since=NOW - 60, type="snapshot")).rows
    by_type = {row.type: row for row in rows}
    assert set(by_type) == {"zone_count", "dwell"}  # the companion is not a row of its own
    assert by_type["zone_count"].frame_event_id == alone[0].id
    assert by_type["zone_count"].details["boxes"] == [[1, 2, 3, 4]]
    assert by_type["dwell"].frame_event_id is None  # another rule's firing at the same time has no frame


def test_line_counts_sum_crossings_and_keep_the_running_counts(db: Database) -> None:
    crossings = [("in", 1, 0), ("out", 1, 1), ("in", 2, 1)]
    add_events(db, *({"ts": NOW - 30 + i, "label": "person", "type": "line_cross",
                      "data": {"rule": "door-count", "line": "door", "direction": d, "in": i_, "out": o_}}
                     for i, (d, i_, o_) in enumerate(crossings)))
    with db.session(write=False) as session:
        [door] = line_counts(session, window_for("1h", NOW))
    assert (door.device_name, door.line, door.crossed_in, door.crossed_out) == ("front-door", "door", 2, 1)
    assert door.running == {"in": 2, "out": 1}
