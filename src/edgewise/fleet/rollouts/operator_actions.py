"""What operators do to a deployment: halt it where it is, roll it back, read its progress."""

from __future__ import annotations

import time
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgewise.fleet.db.models import Deployment, DeploymentTarget, Device
from edgewise.fleet.errors import Conflict, NotFound
from edgewise.fleet.rollouts.changes import Changes, bump, record, set_desired
from edgewise.fleet.rollouts.lifecycle import LIVE, DeploymentStatus, TargetStatus, set_status
from edgewise.fleet.rollouts.shadow_results import clear_shadow

CANCELLED = TargetStatus.CANCELLED.value


def get_deployment(session: Session, deployment_id: str) -> Deployment:
    deployment = session.get(Deployment, deployment_id, with_for_update=True)
    if deployment is None:
        raise NotFound(f"deployment {deployment_id} not found", "list them with `edgewise deployments list`")
    return deployment


def halt(session: Session, deployment_id: str, reason: str = "halted by an operator") -> Changes:
    deployment = get_deployment(session, deployment_id)
    if deployment.status not in LIVE:
        raise Conflict(f"deployment {deployment_id} is {deployment.status}, not rolling")
    changes = Changes()
    bump(session, clear_shadow(session, deployment.id), changes)
    set_status(session, deployment, DeploymentStatus.HALTED, changes, reason)
    return changes


def rollback(session: Session, deployment_id: str, reason: str = "rolled back by an operator") -> Changes:
    """Every device this deployment touched gets back the desired state it had before."""
    deployment = get_deployment(session, deployment_id)
    if deployment.status == DeploymentStatus.ROLLED_BACK:
        raise Conflict(f"deployment {deployment_id} is already rolled back")
    changes = Changes()
    bump(session, clear_shadow(session, deployment.id), changes)
    targets = session.scalars(select(DeploymentTarget).where(DeploymentTarget.deployment_id == deployment_id)).all()
    for target in targets:
        if target.status == "pending":  # never assigned: nothing to undo, but no longer waiting either
            target.status, target.finished_at = CANCELLED, time.time()
            target.detail = "not assigned before the rollback"
            record(session, changes, deployment_id, CANCELLED, "pending", target.device_id, target.detail)
            continue
        device = session.get(Device, target.device_id)
        # A device that a newer deployment has since taken over keeps that newer desired state.
        if device is not None and device.desired_deployment_id == deployment_id:
            # An authenticated operator action (or the halt rule the operator set): the device may go
            # back to the older version it ran before, which anti-rollback would refuse otherwise.
            set_desired(device, target.previous_digest, target.previous_deployment_id, changes, downgrade=True)
        previous, target.status = target.status, "rolled_back"
        record(session, changes, deployment_id, "rolled_back", previous, target.device_id)
    set_status(session, deployment, DeploymentStatus.ROLLED_BACK, changes, reason)
    return changes


def progress(session: Session, deployment_ids: Iterable[str]) -> dict[str, dict[str, int]]:
    """deployment id -> target status -> count."""
    counts: dict[str, dict[str, int]] = {}
    ids = list(deployment_ids)
    if not ids:
        return counts
    rows = session.execute(select(DeploymentTarget.deployment_id, DeploymentTarget.status)
                           .where(DeploymentTarget.deployment_id.in_(ids))).all()
    for deployment_id, status in rows:
        bucket = counts.setdefault(deployment_id, {})
        bucket[status] = bucket.get(status, 0) + 1
    return counts
