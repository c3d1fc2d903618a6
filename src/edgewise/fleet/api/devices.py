"""Operator endpoints for devices: list (filters, paging), show, tag/group, revoke."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select

from edgewise.fleet.api.deps import ERRORS, require
from edgewise.fleet.api.schemas import DeviceDetail, DeviceOut, DevicePage, DevicePatch
from edgewise.fleet.api.strict_route import StrictJSONRoute
from edgewise.fleet.auth import Operator
from edgewise.fleet.context import context_of
from edgewise.fleet.db.models import Device
from edgewise.fleet.errors import NotFound

router = APIRouter(prefix="/devices", tags=["devices"], responses=ERRORS, route_class=StrictJSONRoute)


def device_out(device: Device, offline_after_s: float, detail: bool = False) -> DeviceOut:
    online = device.last_seen is not None and time.time() - device.last_seen < offline_after_s and not device.revoked
    model = DeviceDetail if detail else DeviceOut
    update_error = str(((device.reported or {}).get("update") or {}).get("error") or "")
    return model.model_validate(device).model_copy(update={"online": online, "update_error": update_error})


@router.get("", response_model=DevicePage)
def list_devices(
    request: Request,
    group: str | None = Query(None, max_length=64),
    tag: list[str] = Query(default_factory=list, max_length=32, description="KEY=VALUE, repeatable; all must match"),
    online: bool | None = None,
    bundle_version: str | None = Query(None, max_length=64),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=10_000_000),
    _operator: Operator = Depends(require("read")),
) -> DevicePage:
    ctx = context_of(request)
    query = select(Device)
    if group is not None:
        query = query.where(Device.group == group)
    if bundle_version is not None:
        query = query.where(Device.current_version == bundle_version)
    if online is not None:
        cutoff = time.time() - ctx.settings.offline_after_s
        query = query.where((Device.last_seen >= cutoff) if online else
                            ((Device.last_seen < cutoff) | Device.last_seen.is_(None)))
    wanted = dict(t.split("=", 1) for t in tag if "=" in t)
    with ctx.db.session(write=False) as session:
        rows = session.scalars(query.order_by(Device.name, Device.id)).all()
    if wanted:  # JSON queries differ between SQLite and PostgreSQL; tags are small, filter here
        rows = [d for d in rows if all((d.tags or {}).get(k) == v for k, v in wanted.items())]
    page = rows[offset : offset + limit]
    items = [device_out(d, ctx.settings.offline_after_s) for d in page]
    return DevicePage(items=items, total=len(rows), limit=limit, offset=offset)


def _get(request: Request, device_id: str) -> DeviceDetail:
    ctx = context_of(request)
    with ctx.db.session(write=False) as session:
        device = session.get(Device, device_id)
        if device is None:
            raise NotFound(f"device {device_id} not found", "list devices with `edgewise devices list`")
        out = device_out(device, ctx.settings.offline_after_s, detail=True)
    return DeviceDetail.model_validate(out.model_dump())


@router.get("/{device_id}", response_model=DeviceDetail)
def show_device(device_id: str, request: Request, _operator: Operator = Depends(require("read"))) -> DeviceDetail:
    return _get(request, device_id)


@router.patch("/{device_id}", response_model=DeviceDetail)
def patch_device(device_id: str, body: DevicePatch, request: Request,
                 _operator: Operator = Depends(require("deploy"))) -> DeviceDetail:
    ctx = context_of(request)
    with ctx.db.session() as session:
        device = session.get(Device, device_id)
        if device is None:
            raise NotFound(f"device {device_id} not found")
        tags = {k: v for k, v in (device.tags or {}).items() if k not in body.remove_tags}
        device.tags = {**tags, **body.set_tags}
        if body.group is not None:
            device.group = body.group
    return _get(request, device_id)


@router.post("/{device_id}/revoke", response_model=DeviceDetail)
def revoke_device(device_id: str, request: Request, _operator: Operator = Depends(require("admin"))) -> DeviceDetail:
    ctx = context_of(request)
    with ctx.db.session() as session:
        device = session.get(Device, device_id)
        if device is None:
            raise NotFound(f"device {device_id} not found")
        device.revoked = True
    ctx.forwarder.emit("device.revoked", {"device_id": device_id})
    ctx.notifier.publish("device", {"device_id": device_id, "revoked": True})
    return _get(request, device_id)
