"""Ingest: event and telemetry batches stored exactly once per (device, seq), acknowledged after commit.

A retried batch inserts nothing new: rows already stored are found by the unique (device_id, seq)
key and acknowledged again, and `INSERT ... ON CONFLICT DO NOTHING` keeps two racing retries of
the same batch from storing a row twice.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from edgewise.core.errors import ProtocolError
from edgewise.core.wire import EventIn, IngestAck, IngestBatch, TelemetryIn
from edgewise.fleet.db import Database
from edgewise.fleet.db.models import Device, Event, Telemetry
from edgewise.fleet.shadow_store import store_captures, store_shadow_reports

MAX_SNAPSHOT_BYTES = 2 << 20


def _insert_ignoring_duplicates(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(table).on_conflict_do_nothing(index_elements=["device_id", "seq"]), rows)


def _existing(session: Session, model: Any, device_id: str, seqs: Sequence[int]) -> set[int]:
    if not seqs:
        return set()
    found = session.scalars(select(model.seq).where(model.device_id == device_id, model.seq.in_(list(seqs))))
    return set(found)


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


def _event_row(device_id: str, event: EventIn, now: float) -> dict[str, Any]:
    return {"device_id": device_id, "seq": event.seq, "ts": event.ts, "received_at": now,
            "priority": event.priority, "type": event.type, "label": event.label, "score": event.score,
            "bundle_version": event.bundle_version, "data": event.data, "snapshot_jpeg": _snapshot(event)}


def _telemetry_row(device_id: str, item: TelemetryIn, now: float) -> dict[str, Any]:
    row = item.model_dump()
    row.update(device_id=device_id, received_at=now)
    return row


def store_batch(db: Database, device_id: str, batch: IngestBatch) -> tuple[IngestAck, list[dict[str, Any]]]:
    """Store the new items of `batch`; returns the ack and the newly stored events (for forwarding)."""
    now = time.time()
    events = {e.seq: e for e in batch.events}  # a seq repeated inside one batch is one item
    telemetry = {t.seq: t for t in batch.telemetry}
    with db.session() as session:
        old_events = _existing(session, Event, device_id, list(events))
        old_telemetry = _existing(session, Telemetry, device_id, list(telemetry))
        new_events = [_event_row(device_id, e, now) for seq, e in events.items() if seq not in old_events]
        new_telemetry = [_telemetry_row(device_id, t, now) for seq, t in telemetry.items() if seq not in old_telemetry]
        _insert_ignoring_duplicates(session, Event.__table__, new_events)
        _insert_ignoring_duplicates(session, Telemetry.__table__, new_telemetry)
        store_shadow_reports(session, device_id, [e for seq, e in events.items() if seq not in old_events])
        captured = store_captures(session, device_id, batch.captures)
        seen: dict[str, Any] = {"last_seen": now}
        if batch.dropped:
            seen["dropped"] = dict(batch.dropped)
        session.execute(update(Device).where(Device.id == device_id).values(**seen))
    duplicates = len(batch.events) + len(batch.telemetry) - len(new_events) - len(new_telemetry)
    acked = sorted(set(events) | set(telemetry))
    forwarded = [{k: v for k, v in row.items() if k != "snapshot_jpeg"} | {"has_snapshot": bool(row["snapshot_jpeg"])}
                 for row in new_events]
    return IngestAck(acked=acked, duplicates=duplicates, captured=captured), forwarded
