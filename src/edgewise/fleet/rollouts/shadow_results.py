"""Shadow assignments, shadow reports and captured frames in the fleet database.

A ShadowReport arrives as an event of type `shadow-report` (core.wire.SHADOW_EVENT_TYPE), so the
outbox's exactly-once delivery covers it; ingest also files it here, keyed by (device, seq).
Captured frames arrive in `IngestBatch.captures` and are stored once per (device, capture_id).
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from edgewise.core.errors import ProtocolError
from edgewise.core.wire import SHADOW_EVENT_TYPE, CapturedFrame, EventIn, ShadowReport
from edgewise.fleet.db.models import CapturedFrameRow, ShadowAssignment, ShadowReportRow

MAX_CAPTURE_BYTES = 4 << 20


def _insert_ignoring(session: Session, table: Any, rows: list[dict[str, Any]], keys: list[str]) -> None:
    if not rows:
        return
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(insert(table).on_conflict_do_nothing(index_elements=keys), rows)


def store_shadow_reports(session: Session, device_id: str, events: list[EventIn]) -> int:
    """File the shadow-report events of a batch; a malformed report is skipped (it stays an event)."""
    rows = []
    for event in events:
        if event.type != SHADOW_EVENT_TYPE:
            continue
        try:
            report = ShadowReport.model_validate(event.data)
        except ValidationError:
            continue
        rows.append({"device_id": device_id, "event_seq": event.seq, "ts": event.ts, "camera": report.camera,
                     "candidate_digest": report.candidate_digest, "candidate_version": report.candidate_version,
                     "serving_version": report.serving_version, "frames_shadowed": report.frames_shadowed,
                     "top1_agreement": report.top1_agreement, "report": report.model_dump(mode="json")})
    _insert_ignoring(session, ShadowReportRow.__table__, rows, ["device_id", "event_seq"])
    return len(rows)


def decode_capture(frame: CapturedFrame) -> bytes:
    try:
        data = base64.b64decode(frame.jpeg_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"capture {frame.capture_id}: image is not valid base64") from None
    if len(data) > MAX_CAPTURE_BYTES:
        raise ProtocolError(f"capture {frame.capture_id}: image is over {MAX_CAPTURE_BYTES} bytes",
                            "lower capture.max_side on the device")
    return data


def store_captures(session: Session, device_id: str, frames: list[CapturedFrame],
                   decoded: dict[str, bytes] | None = None) -> list[str]:
    """Store new captured frames; every capture_id of the batch is then durably stored (the ack).

    `decoded` holds the images already decoded by `decode_capture`, by capture id.
    """
    now = time.time()
    images = decoded if decoded is not None else {f.capture_id: decode_capture(f) for f in frames}
    rows = [{"device_id": device_id, "capture_id": f.capture_id, "ts": f.ts, "received_at": now,
             "camera": f.camera, "bundle_version": f.bundle_version, "label": f.label,
             "meta": f.model_dump(mode="json", exclude={"jpeg_b64"}), "jpeg": images[f.capture_id]} for f in frames]
    _insert_ignoring(session, CapturedFrameRow.__table__, rows, ["device_id", "capture_id"])
    return sorted({f.capture_id for f in frames})


def captured_frame(row: CapturedFrameRow, with_image: bool) -> CapturedFrame:
    meta = dict(row.meta)
    meta.update(device_id=row.device_id, jpeg_b64=base64.b64encode(row.jpeg).decode() if with_image else "")
    return CapturedFrame.model_validate(meta)


def assign_shadow(session: Session, deployment_id: str, digest: str, device_ids: list[str], share: float) -> None:
    now = time.time()
    for device_id in device_ids:
        session.merge(ShadowAssignment(device_id=device_id, deployment_id=deployment_id, bundle_digest=digest,
                                       share=share, assigned_at=now))


def clear_shadow(session: Session, deployment_id: str) -> list[str]:
    """Withdraw a deployment's shadow assignments; the devices that had one."""
    device_ids = list(session.scalars(select(ShadowAssignment.device_id)
                                      .where(ShadowAssignment.deployment_id == deployment_id)))
    session.execute(delete(ShadowAssignment).where(ShadowAssignment.deployment_id == deployment_id))
    return device_ids


def reports_for(session: Session, digest: str, device_ids: list[str]) -> dict[str, list[ShadowReport]]:
    """device id -> its shadow reports of candidate `digest`."""
    found: dict[str, list[ShadowReport]] = {d: [] for d in device_ids}
    rows = session.scalars(select(ShadowReportRow).where(ShadowReportRow.candidate_digest == digest,
                                                         ShadowReportRow.device_id.in_(device_ids)))
    for row in rows:
        found[row.device_id].append(ShadowReport.model_validate(row.report))
    return found
