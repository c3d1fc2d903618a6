"""The device side of the protocol (see `edgewise.core.wire`): enroll, desired/reported state,
ingest and bundle archives. Every endpoint but enrollment is authenticated as one device, which
can only ever read or write its own rows: the device id comes from the verified signature, never
from the URL or the body.
"""

from __future__ import annotations

import asyncio
import random
import time

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import FileResponse

from edgewise.core.wire import (
    DesiredState,
    EnrollRequest,
    EnrollResponse,
    IngestAck,
    IngestBatch,
    ReportedState,
)
from edgewise.fleet.api.deps import ERRORS
from edgewise.fleet.api.strict_route import StrictJSONRoute
from edgewise.fleet.auth import AuthedDevice, SignedRequest
from edgewise.fleet.context import context_of
from edgewise.fleet.devices.enrollment import enroll
from edgewise.fleet.gateway.requests import Ingest, ReadDesired, RecheckDesired, ReportState

router = APIRouter(tags=["device"], responses=ERRORS, route_class=StrictJSONRoute)


# The signature headers every device request carries, for the OpenAPI schema. They are read by
# hand (`DeviceAuthenticator.read`), not declared as FastAPI parameters: FastAPI re-inspects every
# declared parameter on every request, a cost every heartbeat would pay four times over.
SIGNED = {"parameters": [
    {"name": name, "in": "header", "required": False, "schema": {"type": "string"}, "description": description}
    for name, description in (("x-edgewise-device", "device id (see edgewise.core.auth)"),
                              ("x-edgewise-timestamp", "unix seconds when signed"),
                              ("x-edgewise-nonce", "random, once per request"),
                              ("x-edgewise-signature", "base64 ed25519 signature of the request"))]}


async def signed_request(request: Request) -> SignedRequest:
    """The request as signed; it is verified with the request's own work, in the group commit."""
    return await context_of(request).devices.read(request)


async def current_device(request: Request) -> AuthedDevice:
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


@router.get("/device/desired", response_model=DesiredState, responses={304: {"description": "unchanged"}},
            openapi_extra=SIGNED)
async def get_desired(
    request: Request,
    wait: float = Query(0.0, ge=0, le=3600, description="long-poll up to this many seconds for a change"),
    if_none_match: str | None = Header(None),
    signed: SignedRequest = Depends(signed_request),
) -> Response:
    ctx = context_of(request)
    seen = _etag_revision(if_none_match)
    # Each poll ends at a random point of its last quarter, and re-reads at random intervals: a
    # fleet that reconnects at once (a server restart, a site's power back) would otherwise poll
    # in lockstep forever, a thousand requests in the same millisecond every period.
    deadline = time.monotonic() + min(wait, ctx.settings.long_poll_max_s) * random.uniform(0.75, 1.0)  # noqa: S311
    changed = ctx.notifier.waiter(signed.device_id)  # registered before reading, so no change slips between
    try:
        answer = await ctx.device_requests.submit(ReadDesired(seen), signed)
        while answer.state is None or ctx.notifier.is_pending(signed.device_id):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            recheck = ctx.settings.long_poll_recheck_s * random.uniform(0.5, 1.0)  # noqa: S311
            try:
                await asyncio.wait_for(changed.wait(), timeout=min(remaining, recheck))
            except asyncio.TimeoutError:
                if remaining <= recheck or answer.state is not None:
                    continue  # the poll ends, or a change already read waits for its turn to be told
                # otherwise re-read: another server replica may have changed it
            changed.clear()
            answer = await ctx.device_requests.submit(RecheckDesired(signed.device_id, seen))
        if answer.state is None:
            return Response(status_code=304, headers={"ETag": f'"{answer.revision}"'})
        return _desired_response(answer.state)
    finally:
        ctx.notifier.forget(signed.device_id, changed)


@router.put("/device/state", status_code=204, response_class=Response, openapi_extra=SIGNED)
async def put_state(body: ReportedState, request: Request,
                    signed: SignedRequest = Depends(signed_request)) -> Response:
    ctx = context_of(request)
    outcome = await ctx.device_requests.submit(ReportState(body), signed)
    ctx.announce(outcome.rollout)
    if outcome.status_change is not None:
        ctx.forwarder.emit("device.status", outcome.status_change)
        ctx.notifier.publish("device", outcome.status_change)
    return Response(status_code=204)


@router.post("/device/ingest", response_model=IngestAck, openapi_extra=SIGNED)
async def post_ingest(body: IngestBatch, request: Request,
                      signed: SignedRequest = Depends(signed_request)) -> IngestAck:
    ctx = context_of(request)
    answer = await ctx.device_requests.submit(Ingest(body), signed)
    ack = answer.ack
    for event in answer.new_events:
        ctx.forwarder.emit("event", event)
        ctx.notifier.publish("event", event)
    if ctx.metrics is not None:
        ctx.metrics.ingested(len(answer.new_events), len(body.telemetry), ack.duplicates)
    return ack


@router.get("/device/bundles/{digest}/archive", response_class=FileResponse,
            responses={206: {"description": "partial content (Range)"}}, openapi_extra=SIGNED)
def get_archive(digest: str, request: Request, device: AuthedDevice = Depends(current_device)) -> FileResponse:
    path, bundle = context_of(request).catalog.archive(digest)
    headers = {"X-Edgewise-Archive-Sha256": bundle.archive_sha256, "X-Edgewise-Bundle-Digest": bundle.digest}
    return FileResponse(path, media_type="application/x-tar", headers=headers, filename=f"{bundle.name}-"
                        f"{bundle.version}.tar")
