"""Operator endpoints for what devices send: events (filters, paging, snapshots), telemetry, the
fleet summary, and a live Server-Sent-Events stream of everything that happens."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select

from edgewise.core.strict_json import INT64_MAX
from edgewise.fleet.api.deps import ERRORS, require
from edgewise.fleet.api.schemas import EventOut, EventPage, TelemetryOut
from edgewise.fleet.api.strict_route import StrictJSONRoute
from edgewise.fleet.auth import Operator
from edgewise.fleet.context import context_of
from edgewise.fleet.db.models import Device, Event, Telemetry
from edgewise.fleet.errors import NotFound

PAGE_MAX_BYTES = 4 << 20  # a page of events stops before its events' data passes this (one event always fits)
router = APIRouter(tags=["events"], responses=ERRORS, route_class=StrictJSONRoute)


@router.get("/events", response_model=EventPage)
def list_events(
    request: Request,
    device_id: str | None = Query(None, max_length=40),
    type: str | None = Query(None, max_length=64),
    priority: str | None = Query(None, max_length=16),
    label: str | None = Query(None, max_length=128),
    since: float | None = Query(None, ge=0, le=1e11, description="only events with ts >= since (unix seconds)"),
    until: float | None = Query(None, ge=0, le=1e11, description="only events with ts < until (unix seconds)"),
    before_id: int | None = Query(None, ge=0, le=INT64_MAX, description="paging cursor: events older than this id"),
    after_id: int | None = Query(None, ge=0, le=INT64_MAX, description="only events newer than this id (tailing)"),
    limit: int = Query(100, ge=1, le=1000),
    _operator: Operator = Depends(require("read")),
) -> EventPage:
    query = select(Event)
    for column, value in ((Event.device_id, device_id), (Event.type, type), (Event.priority, priority),
                          (Event.label, label)):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(Event.ts >= since)
    if until is not None:
        query = query.where(Event.ts < until)
    if before_id is not None:
        query = query.where(Event.id < before_id)
    if after_id is not None:
        query = query.where(Event.id > after_id)
    query = query.order_by(Event.id.desc()).limit(limit)
    with context_of(request).db.session(write=False) as session:
        rows = session.scalars(query).all()
        items: list[EventOut] = []
        size = 0
        for row in rows:
            size += len(json.dumps(row.data or {}, separators=(",", ":")))
            if items and size > PAGE_MAX_BYTES:
                break  # capped in bytes too: a page of large shadow reports stays a few MiB
            snapshot = {"has_snapshot": row.snapshot_jpeg is not None}
            items.append(EventOut.model_validate(row).model_copy(update=snapshot))
    more = len(items) < len(rows) or len(items) == limit
    return EventPage(items=items, next_before_id=items[-1].id if more and items else None)


@router.get("/events/{event_id}/snapshot", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}})
def event_snapshot(request: Request, event_id: int = Path(ge=0, le=INT64_MAX),
                   _operator: Operator = Depends(require("read"))) -> Response:
    with context_of(request).db.session(write=False) as session:
        data = session.scalar(select(Event.snapshot_jpeg).where(Event.id == event_id))
    if data is None:
        raise NotFound(f"event {event_id} has no snapshot")
    return Response(data, media_type="image/jpeg")


@router.get("/telemetry", response_model=list[TelemetryOut])
def list_telemetry(
    request: Request,
    device_id: str | None = Query(None, max_length=40),
    since: float | None = Query(None, ge=0, le=1e11),
    limit: int = Query(500, ge=1, le=5000),
    _operator: Operator = Depends(require("read")),
) -> list[TelemetryOut]:
    query = select(Telemetry)
    if device_id is not None:
        query = query.where(Telemetry.device_id == device_id)
    if since is not None:
        query = query.where(Telemetry.ts >= since)
    with context_of(request).db.session(write=False) as session:
        rows = session.scalars(query.order_by(Telemetry.ts.desc()).limit(limit)).all()
        return [TelemetryOut.model_validate(row) for row in reversed(rows)]


@router.get("/fleet/summary")
def fleet_summary(request: Request, _operator: Operator = Depends(require("read"))) -> dict[str, object]:
    """Counts for the overview: total, online, per bundle version, per health, alarms in the last hour."""
    ctx = context_of(request)
    now = time.time()
    cutoff = now - ctx.settings.offline_after_s
    live = Device.revoked.is_(False)
    with ctx.db.session(write=False) as session:
        total = session.scalar(select(func.count()).select_from(Device).where(live)) or 0
        online = session.scalar(select(func.count()).select_from(Device).where(live, Device.last_seen >= cutoff)) or 0
        by_version = select(Device.current_version, func.count()).where(live).group_by(Device.current_version)
        versions = {version: count for version, count in session.execute(by_version)}
        by_health = select(Device.health, func.count()).where(live).group_by(Device.health)
        health = {status: count for status, count in session.execute(by_health)}
        alarms = session.scalar(select(func.count()).select_from(Event)
                                .where(Event.priority == "alarm", Event.ts >= now - 3600)) or 0
    return {"total": total, "online": online, "offline": total - online, "alarms_last_hour": alarms,
            "versions": {str(k or "none"): v for k, v in versions.items()}, "health": health}


@router.get("/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def live_stream(request: Request, _operator: Operator = Depends(require("read"))) -> StreamingResponse:
    """Server-Sent Events: every event, device-status change and deployment change as it happens."""
    notifier = context_of(request).notifier

    async def messages() -> AsyncIterator[str]:
        queue = notifier.subscribe()
        try:
            yield ": connected\n\n"
            while not await request.is_disconnected():
                try:
                    message = await asyncio.wait_for(queue.get(), timeout=15.0)
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"data: {message}\n\n"
        finally:
            notifier.unsubscribe(queue)

    return StreamingResponse(messages(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
