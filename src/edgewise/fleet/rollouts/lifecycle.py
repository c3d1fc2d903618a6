"""The lifecycle of a deployment: its statuses and the one table of moves between them.

    rolling ──► completed            every batch done within the failure threshold
       │  └──► halted               past the threshold, or by an operator
       ▼
    shadowing ──► rolling            the quality gate promotes the candidate
         └──────► rolled_back        the gate fails (or times out)
    any but rolled_back ──► rolled_back   by an operator (or the gate)

A move the table does not have is refused (a Conflict, a 409 for an operator's request), so a
halted deployment cannot quietly start rolling again and a rolled-back one stays rolled back.
The agent's update state machine has the same shape (`edgewise.agent.update`).
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Protocol

from sqlalchemy.orm import Session

from edgewise.fleet.errors import Conflict
from edgewise.fleet.rollouts.changes import Changes, record


class DeploymentStatus(StrEnum):
    ROLLING = "rolling"
    SHADOWING = "shadowing"  # quality gate: the first batch runs the candidate in shadow
    HALTED = "halted"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"


class TargetStatus(StrEnum):
    """Where one device of a deployment is."""

    PENDING = "pending"  # its batch has not come yet
    ASSIGNED = "assigned"
    UPDATING = "updating"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    CANCELLED = "cancelled"  # the deployment ended before assigning it (rolled back while pending)


MOVES: dict[DeploymentStatus, frozenset[DeploymentStatus]] = {
    DeploymentStatus.ROLLING: frozenset({DeploymentStatus.SHADOWING, DeploymentStatus.HALTED,
                                         DeploymentStatus.COMPLETED, DeploymentStatus.ROLLED_BACK}),
    DeploymentStatus.SHADOWING: frozenset({DeploymentStatus.ROLLING, DeploymentStatus.HALTED,
                                           DeploymentStatus.ROLLED_BACK}),
    DeploymentStatus.HALTED: frozenset({DeploymentStatus.ROLLED_BACK}),
    DeploymentStatus.COMPLETED: frozenset({DeploymentStatus.ROLLED_BACK}),
    DeploymentStatus.ROLLED_BACK: frozenset(),
}
# As plain strings: they go into SQL (`status IN (...)`) and are compared with column values.
LIVE: tuple[str, ...] = (DeploymentStatus.ROLLING.value, DeploymentStatus.SHADOWING.value)  # the engine moves these on
FINISHED_TARGET: tuple[str, ...] = tuple(status.value for status in (
    TargetStatus.SUCCEEDED, TargetStatus.FAILED, TargetStatus.ROLLED_BACK, TargetStatus.CANCELLED))


class HasStatus(Protocol):
    id: str
    status: str
    reason: str
    updated_at: float


def move(deployment: HasStatus, to: DeploymentStatus, reason: str | None = None) -> DeploymentStatus:
    """Move `deployment` to `to` if the table allows it; the status it had. `reason` (if given)
    becomes the deployment's reason."""
    current = DeploymentStatus(deployment.status)
    if to not in MOVES[current]:
        raise Conflict(f"deployment {deployment.id} is {current}: it cannot become {to}",
                       "reload it: another operator or the rollout engine moved it first")
    deployment.status = to.value  # a plain str in the row: database drivers need not know our enum
    deployment.updated_at = time.time()
    if reason is not None:
        deployment.reason = reason
    return current


def set_status(session: Session, deployment: HasStatus, status: DeploymentStatus, changes: Changes,
               reason: str) -> None:
    """`move`, and record the move in the deployment's history."""
    previous = move(deployment, status, reason)
    record(session, changes, deployment.id, status, previous, detail=reason)
