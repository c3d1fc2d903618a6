"""The device side of the protocol (see `edgewise.core.wire`): enroll, desired/reported state,
ingest and bundle archives. Every endpoint but enrollment is authenticated as one device, which
can only ever read or write its own rows: the device id comes from the verified signature, never
from the URL or the body.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import FileResponse

from edgewise.core.wire import (
    DesiredState,
    EnrollRequest,
    EnrollResponse,
    ErrorResponse,
    IngestAck,
    IngestBatch,
    ReportedState,
)
from edgewise.fleet.auth import AuthedDevice, SignedRequest
from edgewise.fleet.context import ServerContext, context_of
from edgewise.fleet.enrollment import enroll
from edgewise.fleet.ingest import store_batch
from edgewise.fleet.twin import ReportOutcome, apply_report, desired_state

ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 409, 422, 503)}
router = APIRouter(tags=["device"], responses=ERRORS)  # type: ignore[arg-type]


async def signed_request(
    request: Request,
    x_edgewise_device: str | None = Header(None, description="device id (see edgewise.core.auth)"),
    x_edgewise_timestamp: str | None = Header(None),
    x_edgewise_nonce: str | None = Header(None),
    x_edgewise_signature: str | None = Header(None),
) -> SignedRequest:
    """The request as signed; it is verified inside the handler's worker thread (one thread hop)."""
    return await context_of(request).devices.read(request)


async def current_device(
    request: Request,
    x_edgewise_device: str | None = Header(None, description="device id (see edgewise.core.auth)"),
    x_edgewise_timestamp: str | None = Header(None),
    x_edgewise_nonce: str | None = Header(None),
    x_edgewise_signature: str | None = Header(None),
) -> AuthedDevice:
    device = await context_of(request).devices.authenticate(request)
    request.state.device_id = device.id
    return device


@router.post("/enroll", response_model=EnrollResponse)
def enroll_device(body: EnrollRequest, request: Request) -> EnrollResponse:
    ctx = context_of(request)
    response = enroll(ctx.db, body, ctx.settings.agent_config)
    ctx.forwarder.emit("device.enrolled", {"device_id": response.device_id, "name": body.name})
    ctx.notifier.publish("device", {"device_id": response.device_id, "enrolled": True})
    return response


def _etag_revision(if_none_match: str | None) -> str | None:
    if not if_none_match:
        return None
    return if_none_match.strip().removeprefix("W/").strip('"')


def _desired_response(state: DesiredState) -> Response:
    return Response(state.model_dump_json(), media_type="application/json", headers={"ETag": f'"{state.revision}"'})


def _read_desired(ctx: ServerContext, device_id: str) -> DesiredState:
    with ctx.db.session(write=False) as session:
        return desired_state(session, device_id)


@router.get("/device/desired", response_model=DesiredState, responses={304: {"description": "unchanged"}})
async def get_desired(
    request: Request,
    wait: float = Query(0.0, ge=0, le=3600, description="long-poll up to this many seconds for a change"),
    if_none_match: str | None = Header(None),
    signed: SignedRequest = Depends(signed_request),
) -> Response:
    ctx = context_of(request)
    device = await to_thread.run_sync(ctx.devices.verify, signed)
    seen = _etag_revision(if_none_match)
    deadline = time.monotonic() + min(wait, ctx.settings.long_poll_max_s)
    while True:
        changed = ctx.notifier.waiter(device.id)  # registered before reading, so no change slips between
        try:
            state = await to_thread.run_sync(_read_desired, ctx, device.id)
            if state.revision != seen:
                return _desired_response(state)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Response(status_code=304, headers={"ETag": f'"{state.revision}"'})
            try:
                await asyncio.wait_for(changed.wait(), timeout=min(remaining, ctx.settings.long_poll_recheck_s))
            except asyncio.TimeoutError:
                pass
        finally:
            ctx.notifier.forget(device.id, changed)


@router.put("/device/state", status_code=204, response_class=Response)
async def put_state(body: ReportedState, request: Request,
                    signed: SignedRequest = Depends(signed_request)) -> Response:
    ctx = context_of(request)

    def work() -> ReportOutcome:
        device = ctx.devices.verify(signed)
        with ctx.db.session() as session:
            return apply_report(session, device.id, body, ctx.settings.offline_after_s)

    outcome = await to_thread.run_sync(work)
    ctx.announce(outcome.rollout)
    if outcome.status_change is not None:
        ctx.forwarder.emit("device.status", outcome.status_change)
        ctx.notifier.publish("device", outcome.status_change)
    return Response(status_code=204)


@router.post("/device/ingest", response_model=IngestAck)
async def post_ingest(body: IngestBatch, request: Request,
                      signed: SignedRequest = Depends(signed_request)) -> IngestAck:
    ctx = context_of(request)

    def work() -> tuple[IngestAck, list[dict[str, Any]]]:
        return store_batch(ctx.db, ctx.devices.verify(signed).id, body)

    ack, new_events = await to_thread.run_sync(work)
    for event in new_events:
        ctx.forwarder.emit("event", event)
        ctx.notifier.publish("event", event)
    if ctx.metrics is not None:
        ctx.metrics.ingested(len(new_events), len(body.telemetry), ack.duplicates)
    return ack


@router.get("/device/bundles/{digest}/archive", response_class=FileResponse,
            responses={206: {"description": "partial content (Range)"}})
def get_archive(digest: str, request: Request, device: AuthedDevice = Depends(current_device)) -> FileResponse:
    path, bundle = context_of(request).catalog.archive(digest)
    headers = {"X-Edgewise-Archive-Sha256": bundle.archive_sha256, "X-Edgewise-Bundle-Digest": bundle.digest}
    return FileResponse(path, media_type="application/x-tar", headers=headers, filename=f"{bundle.name}-"
                        f"{bundle.version}.tar")
