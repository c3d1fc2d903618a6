"""What a rollout step changed: the history rows it records and the devices whose desired state
moved, for the caller to announce after the commit (the stream, webhooks, woken long polls)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from edgewise.fleet.db.models import DeploymentHistory, Device


@dataclass
class Changes:
    """What a rollout step changed, for the caller to announce after commit."""

    desired_changed: set[str] = field(default_factory=set)
    history: list[dict[str, Any]] = field(default_factory=list)


def record(session: Session, changes: Changes, deployment_id: str, to_state: str, from_state: str = "",
            device_id: str | None = None, detail: str = "") -> None:
    session.add(DeploymentHistory(**history_row(changes, deployment_id, to_state, from_state, device_id, detail,
                                             time.time())))


def history_row(changes: Changes, deployment_id: str, to_state: str, from_state: str, device_id: str | None,
             detail: str, ts: float) -> dict[str, Any]:
    """One history row (to insert), also listed in `changes` for the caller to announce."""
    to_state, from_state = str(to_state), str(from_state)  # plain text, whether given as a status or a word
    changes.history.append({"deployment_id": deployment_id, "device_id": device_id, "from": from_state,
                            "to": to_state, "detail": detail})
    return {"deployment_id": deployment_id, "ts": ts, "device_id": device_id, "from_state": from_state,
            "to_state": to_state, "detail": detail}


def set_desired(device: Device, digest: str | None, deployment_id: str | None, changes: Changes,
                 downgrade: bool = False) -> None:
    device.desired_digest = digest
    device.desired_downgrade = downgrade
    device.desired_deployment_id = deployment_id
    device.desired_revision = (device.desired_revision or 0) + 1
    changes.desired_changed.add(device.id)


def bump(session: Session, device_ids: list[str], changes: Changes) -> None:
    """The desired state of these devices changed without a new bundle (their shadow did)."""
    for device_id in device_ids:
        device = session.get(Device, device_id)
        if device is not None:
            device.desired_revision = (device.desired_revision or 0) + 1
            changes.desired_changed.add(device_id)
