"""The device twin: desired state (from deployments) out, reported state (the heartbeat) in."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from edgewise.core.wire import BundleRef, DesiredState, ReportedState
from edgewise.fleet.bundles import archive_url
from edgewise.fleet.db.models import Bundle, Device
from edgewise.fleet.errors import NotFound
from edgewise.fleet.rollout import Changes, on_device_report


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
    return DesiredState(device_id=device.id, revision=str(device.desired_revision),
                        deployment_id=device.desired_deployment_id, bundle=bundle_ref)


def desired_revision(session: Session, device_id: str) -> str:
    device = session.get(Device, device_id)
    return "" if device is None else str(device.desired_revision)


@dataclass
class ReportOutcome:
    rollout: Changes
    status_change: dict[str, Any] | None = None
    came_online: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def apply_report(session: Session, device_id: str, report: ReportedState, offline_after_s: float) -> ReportOutcome:
    """Store what the device reports (this is also its heartbeat) and let its deployment react."""
    device = session.get(Device, device_id, with_for_update=True)
    if device is None:
        raise NotFound(f"device {device_id} not found")
    now = time.time()
    came_online = device.last_seen is None or now - device.last_seen > offline_after_s
    before = (device.health, device.update_state, device.current_digest)
    device.reported = report.model_dump(mode="json")
    device.last_seen = now
    if report.agent_version:
        device.agent_version = report.agent_version
    if report.hardware:
        device.hardware = report.hardware
    device.current_digest = report.current_bundle.digest if report.current_bundle else None
    device.current_version = report.current_bundle.version if report.current_bundle else None
    device.health = report.health.status
    device.update_state = report.update.state
    after = (device.health, device.update_state, device.current_digest)
    status_change = None
    if after != before or came_online:
        status_change = {"device_id": device.id, "name": device.name, "health": device.health,
                         "update_state": device.update_state, "bundle_version": device.current_version,
                         "online": True, "ts": now}
    return ReportOutcome(on_device_report(session, device), status_change, came_online)
