"""The events page (`/ui/events`: the table with filters and paging, the per-class counts chart, line
crossings) and the frames its rows show (`/ui/events/{id}/snapshot.jpg`)."""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from edgewise.core.strict_json import INT64_MAX
from edgewise.fleet.auth import bearer_token, operator_from_token
from edgewise.fleet.context import ServerContext, context_of
from edgewise.fleet.dashboard.counts_section import counts_section, link
from edgewise.fleet.dashboard.event_details import boxes_text, describe
from edgewise.fleet.dashboard.event_queries import (
    SNAPSHOT_TYPE,
    Cursor,
    EventFilters,
    any_event_stored,
    device_choices,
    page_of_events,
)
from edgewise.fleet.dashboard.time_window import DEFAULT_RANGE, RANGES, RangeKey, window_for
from edgewise.fleet.dashboard.views import _page, signed_in_page
from edgewise.fleet.db.models import Event
from edgewise.fleet.errors import NotFound

router = APIRouter(prefix="/ui", include_in_schema=False)
# A stored snapshot never changes; private: it is only for the operator who signed in.
SNAPSHOT_CACHE_CONTROL = "private, max-age=86400"


@router.get("/events", response_class=HTMLResponse)
@signed_in_page
def events_page(
    request: Request,
    ctx: ServerContext,
    device: str | None = Query(None, max_length=40),
    label: str | None = Query(None, max_length=128),
    event_type: str | None = Query(None, alias="type", max_length=64),
    range_key: RangeKey = Query(DEFAULT_RANGE, alias="range"),
    before: str | None = Query(None, max_length=64, description="paging cursor: the next page's start"),
) -> Response:
    window = window_for(range_key)
    filters = EventFilters(window.start, device or None, label or None, event_type or None)
    query = {"device": filters.device_id, "label": filters.label, "type": filters.type, "range": range_key}
    with ctx.db.session(write=False) as session:
        page = page_of_events(session, filters, Cursor.parse(before))
        counts = counts_section(session, window, filters.device_id, "/ui/events", query)
        devices = device_choices(session)
        stored = bool(page.rows) or any_event_stored(session)
    chosen_label = {filters.label} if filters.label else set()  # offered even when the range has none
    labels = sorted({label for label in counts.counts.per_label if label is not None} | chosen_label)
    types = sorted(counts.counts.types | {SNAPSHOT_TYPE} | ({filters.type} if filters.type else set()))
    next_href = link("/ui/events", **query, before=str(page.next_cursor)) if page.next_cursor else None
    return _page(request, "events.html", page=page, filters=filters, range_key=range_key, ranges=RANGES,
                 section=counts, devices=devices, labels=labels, types=types, stored=stored,
                 next_href=next_href, first_href=link("/ui/events", **query) if before else None,
                 describe=describe, boxes_text=boxes_text)


@router.get("/events/{event_id}/snapshot.jpg", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}})
def event_snapshot_jpeg(request: Request, event_id: int = Path(ge=0, le=INT64_MAX)) -> Response:
    """An event's frame as the device drew it. Refused (401, not the sign-in page) without a session
    or token: an <img> cannot follow a redirect to a form."""
    ctx = context_of(request)
    operator_from_token(ctx.db, bearer_token(request), "read")
    with ctx.db.session(write=False) as session:
        jpeg = session.scalar(select(Event.snapshot_jpeg).where(Event.id == event_id))
    if jpeg is None:
        raise NotFound(f"event {event_id} has no snapshot", "open /ui/events to see which events have frames")
    # The content's hash, not the id: SQLite may hand a deleted row's id to a new event.
    etag = f'"{hashlib.sha256(jpeg).hexdigest()[:32]}"'
    headers = {"Cache-Control": SNAPSHOT_CACHE_CONTROL, "ETag": etag}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(jpeg, media_type="image/jpeg", headers=headers)
