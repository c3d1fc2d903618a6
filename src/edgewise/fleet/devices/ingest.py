"""Ingest: event and telemetry batches stored exactly once per (device, seq), acknowledged after commit.

A retried batch inserts nothing new: `INSERT ... ON CONFLICT (device_id, seq) DO NOTHING RETURNING`
stores only the rows not stored yet and names them, so the rest are acknowledged again as
duplicates, and two racing retries of the same batch can never store a row twice.
"""

from __future__ import annotations

import base64
import binascii
import functools
import time
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from edgewise.core.errors import ProtocolError
from edgewise.core.wire import SHADOW_EVENT_TYPE, EventIn, IngestAck, IngestBatch, TelemetryIn
from edgewise.fleet.db.models import Device, Event, Telemetry
from edgewise.fleet.db.postgresql import insert_new_and_mark_seen
from edgewise.fleet.rollouts.shadow_results import decode_capture, store_captures, store_shadow_reports

MAX_SNAPSHOT_BYTES = 2 << 20


def _snapshot(event: EventIn) -> bytes | None:
    if not event.snapshot_jpeg_b64:
        return None
    try:
        data = base64.b64decode(event.snapshot_jpeg_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"event {event.seq}: snapshot is not valid base64", "send the JPEG base64-encoded") \
            from None
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise ProtocolError(f"event {event.seq}: snapshot is over {MAX_SNAPSHOT_BYTES} bytes", "send a smaller JPEG")
    return data


ForwardedEvent = dict[str, object]
"""A newly stored event as forwarders and the live stream get it: its row, without the image bytes."""


@dataclass
class DecodedImages:
    """A batch's snapshot and capture images, decoded (and size-checked) before any database work."""

    snapshots: dict[int, bytes | None]
    captures: dict[str, bytes]


def decode_images(batch: IngestBatch) -> DecodedImages:
    """Raises ProtocolError for the first corrupt or oversized image: the whole batch is refused."""
    return DecodedImages({e.seq: _snapshot(e) for e in batch.events},
                         {f.capture_id: decode_capture(f) for f in batch.captures})


def _event_row(device_id: str, event: EventIn, now: float, snapshot: bytes | None) -> dict[str, Any]:
    return {"device_id": device_id, "seq": event.seq, "ts": event.ts, "received_at": now,
            "priority": event.priority, "type": event.type, "label": event.label, "score": event.score,
            "bundle_name": event.bundle_name, "bundle_version": event.bundle_version, "data": event.data,
            "snapshot_jpeg": snapshot}


def _telemetry_row(device_id: str, item: TelemetryIn, now: float) -> dict[str, Any]:
    row = item.model_dump()
    row.update(device_id=device_id, received_at=now)
    return row


_DEVICES = cast(Table, Device.__table__)
_EVENTS, _TELEMETRY = cast(Table, Event.__table__), cast(Table, Telemetry.__table__)
_SEEN = update(_DEVICES).where(_DEVICES.c.id == bindparam("b_id")).values(last_seen=bindparam("b_now"))


def _store(session: Session, events: list[dict[str, Any]], telemetry: list[dict[str, Any]], seen: list[str],
           now: float) -> tuple[set[tuple[str, int]], set[tuple[str, int]]]:
    """Insert the events and telemetry whose (device_id, seq) is not stored yet, and mark `seen`
    devices as seen `now`; the keys of the events and of the telemetry it inserted."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        new_events, new_telemetry = insert_new_and_mark_seen(
            session, [(_EVENTS, events), (_TELEMETRY, telemetry)], seen, now)
        return new_events, new_telemetry
    stored = [{(row[0], row[1]) for row in session.execute(_insert_new_statement(dialect, table), rows)}
              if rows else set() for table, rows in ((_EVENTS, events), (_TELEMETRY, telemetry))]
    if seen:
        session.execute(_SEEN, [{"b_id": device_id, "b_now": now} for device_id in seen])
    return stored[0], stored[1]


@functools.cache
def _insert_new_statement(dialect: str, table: Any) -> Any:
    """Built once per table: this runs for every group commit that carries events."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (insert(table).on_conflict_do_nothing(index_elements=["device_id", "seq"])
            .returning(table.c.device_id, table.c.seq))


def store_batches(session: Session, batches: list[tuple[str, IngestBatch, DecodedImages]]
                  ) -> list[tuple[IngestAck, list[ForwardedEvent]]]:
    """Store the new items of each (device id, batch, its decoded images), however many devices sent
    them: one INSERT for all events, one for all telemetry, one UPDATE for last seen.

    Returns, per batch, its ack and its newly stored events (for forwarding). An item already
    stored, or sent twice in this group, is stored once and counted as a duplicate after the first.
    """
    now = time.time()
    event_rows: dict[tuple[str, int], dict[str, Any]] = {}
    telemetry_rows: dict[tuple[str, int], dict[str, Any]] = {}
    owners: list[tuple[list[tuple[str, int]], list[tuple[str, int]]]] = []  # per batch: keys it brought first
    for device_id, batch, images in batches:
        mine_events, mine_telemetry = [], []
        for event in {e.seq: e for e in batch.events}.values():  # a seq repeated inside one batch is one item
            key = (device_id, event.seq)
            if key not in event_rows:
                event_rows[key] = _event_row(device_id, event, now, images.snapshots.get(event.seq))
                mine_events.append(key)
        for item in {t.seq: t for t in batch.telemetry}.values():
            key = (device_id, item.seq)
            if key not in telemetry_rows:
                telemetry_rows[key] = _telemetry_row(device_id, item, now)
                mine_telemetry.append(key)
        owners.append((mine_events, mine_telemetry))
    new_events, new_telemetry = _store(session, list(event_rows.values()), list(telemetry_rows.values()),
                                       sorted({b[0] for b in batches}), now)
    results = []
    for (device_id, batch, images), (mine_events, mine_telemetry) in zip(batches, owners, strict=True):
        stored = [key for key in mine_events if key in new_events]
        if any(event_rows[key]["type"] == SHADOW_EVENT_TYPE for key in stored):
            stored_seqs = {seq for _, seq in stored}
            store_shadow_reports(session, device_id, [e for e in batch.events if e.seq in stored_seqs])
        captured = store_captures(session, device_id, batch.captures, images.captures) if batch.captures else []
        if batch.dropped:
            session.execute(update(Device).where(Device.id == device_id).values(dropped=dict(batch.dropped)),
                            execution_options={"synchronize_session": False})
        fresh = len(stored) + sum(1 for key in mine_telemetry if key in new_telemetry)
        seqs = {e.seq for e in batch.events} | {t.seq for t in batch.telemetry}
        ack = IngestAck(acked=sorted(seqs), duplicates=len(batch.events) + len(batch.telemetry) - fresh,
                        captured=captured)
        forwarded: list[ForwardedEvent] = [{k: v for k, v in event_rows[key].items() if k != "snapshot_jpeg"}
                     | {"has_snapshot": event_rows[key]["snapshot_jpeg"] is not None} for key in stored]
        results.append((ack, forwarded))
    return results
