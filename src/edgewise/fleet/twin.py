"""The device twin: desired state (from deployments) out, reported state (the heartbeat) in."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from edgewise.core.wire import BundleRef, DesiredState, ReportedState
from edgewise.fleet.bundles import archive_url
from edgewise.fleet.db.models import Bundle, Device
from edgewise.fleet.errors import NotFound
from edgewise.fleet.rollout import Changes, on_device_report
from edgewise.fleet.shadow_store import shadow_of


def desired_state(session: Session, device_id: str) -> DesiredState:
    device = session.get(Device, device_id)
    if device is None:
        raise NotFound(f"device {device_id} not found")
    bundle_ref: BundleRef | None = None
    if device.desired_digest:
        bundle = session.get(Bundle, device.desired_digest)
        if bundle is not None:
            bundle_ref = BundleRef(name=bundle.name, version=bundle.version, digest=bundle.digest,
                                   url=archive_url(bundle.digest), size_bytes=bundle.size_bytes)
    shadow_ref, share = None, 0.0
    assignment = shadow_of(session, device_id)
    candidate = session.get(Bundle, assignment.bundle_digest) if assignment else None
    if assignment is not None and candidate is not None:
        shadow_ref = BundleRef(name=candidate.name, version=candidate.version, digest=candidate.digest,
                               url=archive_url(candidate.digest), size_bytes=candidate.size_bytes)
        share = assignment.share
    return DesiredState(device_id=device.id, revision=str(device.desired_revision),
                        deployment_id=device.desired_deployment_id, bundle=bundle_ref, shadow=shadow_ref,
                        shadow_share=share)


def desired_revision(session: Session, device_id: str) -> str:
    device = session.get(Device, device_id)
    return "" if device is None else str(device.desired_revision)


@dataclass
class ReportOutcome:
    rollout: Changes
    status_change: dict[str, Any] | None = None
    came_online: bool = False


def apply_report(session: Session, device_id: str, report: ReportedState, offline_after_s: float) -> ReportOutcome:
    """Store what the device reports (this is also its heartbeat) and let its deployment react.

    Heartbeats are the most frequent write, so the common case is one SELECT and one UPDATE
    statement; the ORM object is loaded only for a device inside a deployment.
    """
    before = session.execute(
        select(Device.name, Device.last_seen, Device.health, Device.update_state, Device.current_digest,
               Device.desired_deployment_id).where(Device.id == device_id)
    ).first()
    if before is None:
        raise NotFound(f"device {device_id} not found")
    now = time.time()
    came_online = before.last_seen is None or now - before.last_seen > offline_after_s
    current = report.current_bundle
    values: dict[str, Any] = {
        "reported": report.model_dump(mode="json"), "last_seen": now, "health": report.health.status,
        "update_state": report.update.state, "current_digest": current.digest if current else None,
        "current_version": current.version if current else None,
    }
    if report.agent_version:
        values["agent_version"] = report.agent_version
    if report.hardware:
        values["hardware"] = report.hardware
    session.execute(update(Device).where(Device.id == device_id).values(**values))
    status_change = None
    if (before.health, before.update_state, before.current_digest) != (
            values["health"], values["update_state"], values["current_digest"]) or came_online:
        status_change = {"device_id": device_id, "name": before.name, "health": values["health"],
                         "update_state": values["update_state"], "bundle_version": values["current_version"],
                         "online": True, "ts": now}
    rollout = Changes()
    if before.desired_deployment_id is not None:
        device = session.get(Device, device_id, with_for_update=True)
        if device is not None:
            rollout = on_device_report(session, device)
    return ReportOutcome(rollout, status_change, came_online)
