"""The rollout engine: deployments assign a bundle to devices batch by batch, bake, halt by
themselves past the failure threshold, and roll back to what each device ran before.

The statuses and the moves between them are in `lifecycle.py`; operators' halt and rollback in
`operator_actions.py`. Target states: pending -> assigned -> updating -> succeeded | failed;
-> rolled_back | cancelled. A pending target (a batch not reached) is never touched: its
device's desired state is unchanged. Every change is written to `deployment_history`.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, inspect, select, update
from sqlalchemy.orm import Session

from edgewise.core.errors import ConfigError, InternalError
from edgewise.fleet.db.ids import dialect_of, ids_match
from edgewise.fleet.db.models import Bundle, Deployment, DeploymentHistory, DeploymentTarget, Device
from edgewise.fleet.errors import Conflict
from edgewise.fleet.rollouts.changes import Changes, bump, history_row, record
from edgewise.fleet.rollouts.lifecycle import FINISHED_TARGET, LIVE, DeploymentStatus, TargetStatus, move, set_status
from edgewise.fleet.rollouts.quality_gate import Verdict, judge, pool
from edgewise.fleet.rollouts.selectors import Selector, matches
from edgewise.fleet.rollouts.shadow_results import assign_shadow, clear_shadow, reports_for
from edgewise.fleet.rollouts.strategies import StrategySpec, plan

ACTIVE, SHADOWING = DeploymentStatus.ROLLING, DeploymentStatus.SHADOWING
_TARGETS, _HISTORY = cast(Table, DeploymentTarget.__table__), cast(Table, DeploymentHistory.__table__)
CANCELLED = TargetStatus.CANCELLED.value
UPDATING_STATES = ("download", "verify", "install", "activate", "health-check", "commit")
_DEFERRED = "edgewise.deferred_evaluations"  # session.info key: deployment ids to evaluate at commit
# What assigning a device needs: its identity, what it runs and reports, and its desired state.
_VERDICT_COLUMNS = (Device.id, Device.revoked, Device.reported, Device.update_state, Device.current_digest,
                    Device.health, Device.desired_digest, Device.desired_deployment_id)


def _order(devices: list[Any], now: float, offline_after_s: float) -> list[Any]:
    # Canaries should be devices that can answer soon: online and healthy first, then by id for stability.
    def key(device: Any) -> tuple[int, int, str]:
        online = device.last_seen is not None and now - device.last_seen < offline_after_s
        return (0 if online else 1, 0 if device.health == "ok" else 1, device.id)

    return sorted(devices, key=key)


def create_deployment(session: Session, bundle: Bundle, selector: Selector, spec: StrategySpec,
                      created_by: str = "", offline_after_s: float = 35.0) -> tuple[Deployment, Changes]:
    now = time.time()
    # Columns, not ORM objects, and bulk statements below: on SQLite every device request waits
    # while this transaction holds the writer, and a fleet of thousands must not stall for it.
    candidates = session.execute(select(Device.id, Device.group, Device.tags, Device.last_seen, Device.health)
                                 .where(Device.revoked.is_(False))).all()
    devices = [d for d in candidates if matches(selector, d)]
    if not devices:
        raise ConfigError(f"selector {selector.describe()} matches no enrolled device",
                          "check `edgewise devices list` for groups, tags and ids")
    busy = session.execute(
        select(DeploymentTarget.device_id, Deployment.id)
        .join(Deployment, Deployment.id == DeploymentTarget.deployment_id)
        .where(Deployment.status.in_(LIVE), DeploymentTarget.device_id.in_([d.id for d in devices]))
    ).first()
    if busy is not None:
        raise Conflict(f"device {busy[0]} is in deployment {busy[1]}, which is still rolling",
                       f"wait for it, or `edgewise deployments halt {busy[1]}` first")
    batches = plan(spec, [d.id for d in _order(devices, now, offline_after_s)])
    deployment = Deployment(
        id="dep-" + secrets.token_hex(6), bundle_digest=bundle.digest, selector=selector.model_dump(),
        strategy=spec.model_dump(), status=ACTIVE.value, current_batch=0, batch_count=len(batches),
        created_at=now, updated_at=now, created_by=created_by,
    )
    session.add(deployment)
    session.flush()
    session.execute(insert(_TARGETS), [
        {"deployment_id": deployment.id, "device_id": device_id, "batch": index, "status": "pending", "detail": ""}
        for index, batch in enumerate(batches) for device_id in batch])
    changes = Changes()
    record(session, changes, deployment.id, ACTIVE, detail=f"{bundle.ref} to {len(devices)} device(s) in "
            f"{len(batches)} batch(es) by {spec.name}")
    if spec.quality is not None:
        _start_shadow(session, deployment, batches[0], spec, changes)
    else:
        _assign_batch(session, deployment, bundle.digest, 0, changes)
    return deployment, changes


def _start_shadow(session: Session, deployment: Deployment, canaries: list[str], spec: StrategySpec,
                  changes: Changes) -> None:
    assign_shadow(session, deployment.id, deployment.bundle_digest, canaries, spec.shadow_share)
    bump(session, canaries, changes)
    move(deployment, SHADOWING)
    record(session, changes, deployment.id, SHADOWING, ACTIVE, detail=f"candidate in shadow on {len(canaries)} "
            f"canary device(s), {spec.shadow_share:.0%} of frames, until the quality gate decides")


def _gate(session: Session, deployment: Deployment, spec: StrategySpec, changes: Changes, now: float) -> None:
    """Promote (the first batch starts serving) or roll back on the canaries' shadow reports."""
    canaries = list(session.scalars(select(DeploymentTarget.device_id).where(
        DeploymentTarget.deployment_id == deployment.id, DeploymentTarget.batch == 0)))
    if spec.quality is None:  # a gated deployment always has its criteria: a bug otherwise
        raise InternalError(f"deployment {deployment.id} is shadowing without quality criteria")
    verdict = judge(spec.quality, pool(reports_for(session, deployment.bundle_digest, canaries)), canaries)
    if verdict.decision == "wait":
        if now - deployment.created_at < spec.gate_timeout_s:
            return
        verdict = Verdict("rollback", f"quality gate failed: no verdict within {spec.gate_timeout_s:.0f}s "
                                      f"({verdict.reason})")
    bump(session, clear_shadow(session, deployment.id), changes)
    if verdict.decision == "promote":
        move(deployment, ACTIVE)
        record(session, changes, deployment.id, "promoted", SHADOWING, detail=verdict.reason)
        _assign_batch(session, deployment, deployment.bundle_digest, 0, changes)
    else:
        set_status(session, deployment, DeploymentStatus.ROLLED_BACK, changes, verdict.reason)


def _assign_batch(session: Session, deployment: Deployment, digest: str, batch: int, changes: Changes) -> None:
    """Point every device of `batch` at `digest`, in a few bulk statements (a batch may be the
    whole fleet), remembering what each ran before for rollback."""
    now = time.time()
    session.flush()  # pending ORM changes first, so the history below stays in order
    spec = StrategySpec.model_validate(deployment.strategy)
    rows = session.execute(
        select(DeploymentTarget.id.label("target_id"), DeploymentTarget.device_id.label("target_device"),
               *_VERDICT_COLUMNS)
        .join(Device, Device.id == DeploymentTarget.device_id, isouter=True)
        .where(DeploymentTarget.deployment_id == deployment.id, DeploymentTarget.batch == batch)
        .order_by(DeploymentTarget.id)).all()
    targets: list[dict[str, Any]] = []
    assigned: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    for row in rows:
        target = {"t_id": row.target_id, "status": "failed", "detail": "device revoked", "previous_digest": None,
                  "previous_deployment_id": None, "assigned_at": None, "finished_at": None}
        targets.append(target)
        if row.id is None or row.revoked:
            continue
        target.update(previous_digest=row.desired_digest, previous_deployment_id=row.desired_deployment_id,
                      status="assigned", assigned_at=now, detail="")
        assigned.append({"d_id": row.id})
        changes.desired_changed.add(row.id)
        history.append(history_row(changes, deployment.id, "assigned", "pending", row.id, f"batch {batch}", now))
        verdict = _target_verdict(row, digest, deployment.id, spec)
        if _moves(target["status"], verdict):
            detail = _update_error(row)
            target.update(status=verdict, detail=detail, finished_at=now if verdict in FINISHED_TARGET else None)
            history.append(history_row(changes, deployment.id, str(verdict), "assigned", row.id, detail, now))
    if targets:
        session.execute(update(_TARGETS).where(DeploymentTarget.id == bindparam("t_id"))
                        .values(status=bindparam("status"), detail=bindparam("detail"),
                                previous_digest=bindparam("previous_digest"),
                                previous_deployment_id=bindparam("previous_deployment_id"),
                                assigned_at=bindparam("assigned_at"), finished_at=bindparam("finished_at")),
                        targets)
    if history:
        session.execute(insert(_HISTORY), history)
    if assigned:
        # Last, and one statement for the whole batch: from here to the commit, requests of these
        # devices wait on their rows (on PostgreSQL; on SQLite every request waits on the writer).
        devices = cast(Table, Device.__table__)
        session.execute(update(devices).where(ids_match(devices.c.id, dialect_of(session)))
                        .values(desired_digest=digest, desired_deployment_id=deployment.id,
                                desired_downgrade=spec.allow_downgrade,
                                desired_revision=devices.c.desired_revision + 1),
                        {"ids": sorted(a["d_id"] for a in assigned)})
    # The statements above bypass the ORM: objects this transaction already holds must reload.
    _expire_loaded(session, DeploymentTarget, [t["t_id"] for t in targets])
    _expire_loaded(session, Device, [a["d_id"] for a in assigned])
    deployment.current_batch, deployment.batch_done_at, deployment.updated_at = batch, None, now


def _expire_loaded(session: Session, model: type[Any], keys: list[Any]) -> None:
    wanted = set(keys)
    for loaded in list(session.identity_map.values()):
        if isinstance(loaded, model) and inspect(loaded).identity[0] in wanted:
            session.expire(loaded)


def _target_verdict(device: Any, digest: str, deployment_id: str, spec: StrategySpec) -> str | None:
    """succeeded / failed / updating from the device's reported state (a Device, or a row of
    `_VERDICT_COLUMNS`), or None for no news."""
    update = (device.reported or {}).get("update") or {}
    aimed_here = update.get("target_digest") == digest or update.get("deployment_id") == deployment_id
    if device.update_state in ("failed", "rollback") and aimed_here:
        return "failed"
    if device.current_digest == digest:
        if device.health == "failed":
            return "failed"
        # A device still activating or health-checking the new model has not proven it yet, whatever
        # health it reports for the moment: success only once its update has left those states.
        if device.update_state in ("activate", "health-check") and aimed_here:
            return "updating"
        if device.health == "ok" or not spec.require_health:
            return "succeeded"
        return "updating"
    if device.update_state in UPDATING_STATES and aimed_here:
        return "updating"
    return None


def _moves(status: str, verdict: str | None) -> bool:
    """Whether a target in `status` moves on to `verdict`. A canary that turns unhealthy while
    baking becomes a failure; otherwise finished (and not yet reached) targets stay as they are."""
    if verdict is None or verdict == status or (status == "succeeded" and verdict != "failed"):
        return False
    return status not in ("failed", "rolled_back", "pending")


def _update_error(device: Any) -> str:
    return str(((device.reported or {}).get("update") or {}).get("error") or "")


def _judge_target(session: Session, deployment: Deployment, target: DeploymentTarget, device: Any,
                  digest: str, changes: Changes, spec: StrategySpec | None = None) -> bool:
    """Move the target on from what its device reports; whether it changed."""
    spec = spec or StrategySpec.model_validate(deployment.strategy)
    verdict = _target_verdict(device, digest, deployment.id, spec)
    if not _moves(target.status, verdict):
        return False
    previous, target.status = target.status, str(verdict)
    if verdict in FINISHED_TARGET:
        target.finished_at = time.time()
    detail = _update_error(device)
    target.detail = detail or target.detail
    record(session, changes, deployment.id, str(verdict), previous, device.id, detail)
    return True


def defer_evaluation(session: Session) -> None:
    """Within this transaction, evaluate each deployment once, at `evaluate_deferred`, not per report.

    A group commit carries hundreds of reports from the devices of one rollout; evaluating after
    each would count the same targets hundreds of times.
    """
    session.info[_DEFERRED] = {}  # deployment id -> the deployment (the session keeps only weak references)


def evaluate_deferred(session: Session) -> Changes:
    changes = Changes()
    deferred: dict[str, Deployment] = session.info.pop(_DEFERRED, {})
    for deployment_id in sorted(deferred):  # each locked by on_device_reports in this transaction
        evaluate(session, deferred[deployment_id], changes, timers=False)
    return changes


def on_device_reports(session: Session, reports: dict[str, Any]) -> dict[str, Changes]:
    """Update each device's target in its current deployment from what it just reported.

    `reports[device_id]` is what the device now reports, as stored in this transaction (whose
    device rows are already locked): `id`, `reported`, `update_state`, `current_digest`,
    `health` and `desired_deployment_id`. A rollout brings hundreds of reports in one group
    commit: their targets and deployments are loaded in one query, not one per report.
    """
    results = {device_id: Changes() for device_id in reports}
    deployment_ids = sorted({r.desired_deployment_id for r in reports.values() if r.desired_deployment_id})
    if not deployment_ids:
        return results
    loaded = session.execute(
        select(DeploymentTarget, Deployment).join(Deployment, Deployment.id == DeploymentTarget.deployment_id)
        .where(DeploymentTarget.deployment_id.in_(deployment_ids), DeploymentTarget.device_id.in_(sorted(reports)))
        .order_by(Deployment.id, DeploymentTarget.device_id).with_for_update(of=Deployment)).all()
    targets = {(target.deployment_id, target.device_id): (target, deployment) for target, deployment in loaded}
    specs: dict[str, StrategySpec] = {}
    for device_id in sorted(reports):
        device = reports[device_id]
        found = targets.get((device.desired_deployment_id or "", device_id))
        if found is None:
            continue
        target, deployment = found
        # A halted deployment still records how its devices end up, but never moves on.
        if deployment.status not in (ACTIVE, DeploymentStatus.HALTED):
            continue
        spec = specs.setdefault(deployment.id, StrategySpec.model_validate(deployment.strategy))
        changes = results[device_id]
        if not _judge_target(session, deployment, target, device, deployment.bundle_digest, changes, spec):
            continue  # nothing new for the deployment; timers move on in the housekeeping tick
        if target.status not in FINISHED_TARGET:
            continue  # a device starting its update changes no count that halts or ends a batch
        deferred = session.info.get(_DEFERRED)
        if deferred is not None:
            deferred[deployment.id] = deployment
        else:
            evaluate(session, deployment, changes, timers=False)
    return results


def evaluate(session: Session, deployment: Deployment, changes: Changes, now: float | None = None,
             timers: bool = True) -> None:
    """Halt past the threshold; otherwise move to the next batch once this one is done and baked.

    Counts come from one SQL aggregate, so a report costs the same whatever the deployment's size.
    `timers=False` (after device reports) leaves silent devices to the housekeeping tick, which
    runs every second.
    """
    if deployment.status not in LIVE:
        return
    now = time.time() if now is None else now
    spec = StrategySpec.model_validate(deployment.strategy)
    if deployment.status == SHADOWING:
        _gate(session, deployment, spec, changes, now)
        return
    of_this = DeploymentTarget.deployment_id == deployment.id
    reached_batches = DeploymentTarget.batch <= deployment.current_batch
    if timers:
        silent = session.scalars(select(DeploymentTarget).where(
            of_this, reached_batches, DeploymentTarget.status.in_(("assigned", "updating")),
            DeploymentTarget.assigned_at < now - spec.device_timeout_s)).all()
        for target in silent:
            previous, target.status, target.finished_at = target.status, "failed", now
            target.detail = f"no success reported within {spec.device_timeout_s:.0f}s"
            record(session, changes, deployment.id, "failed", previous, target.device_id, target.detail)
    session.flush()
    in_current = DeploymentTarget.batch == deployment.current_batch
    reached = failed = unfinished = 0
    for status, current, count in session.execute(
            select(DeploymentTarget.status, in_current, func.count()).where(of_this, reached_batches)
            .group_by(DeploymentTarget.status, in_current)):
        reached += count
        failed += count if status == "failed" else 0
        unfinished += count if current and status not in FINISHED_TARGET else 0
    if reached and failed / reached > spec.failure_threshold:
        set_status(session, deployment, DeploymentStatus.HALTED, changes,
                    f"{failed} of {reached} device(s) failed (threshold {spec.failure_threshold:.0%})")
        return
    if unfinished:
        return
    if deployment.batch_done_at is None:
        deployment.batch_done_at = now
    if now - deployment.batch_done_at < spec.bake_s:
        return
    if deployment.current_batch + 1 < deployment.batch_count:
        record(session, changes, deployment.id, "batch", detail=f"batch {deployment.current_batch + 1} starts")
        _assign_batch(session, deployment, deployment.bundle_digest, deployment.current_batch + 1, changes)
    else:
        set_status(session, deployment, DeploymentStatus.COMPLETED, changes, f"{reached - failed} device(s) updated")


def advance_all(session: Session) -> Changes:
    """Called on every server tick: bake timers and device timeouts move on without any request."""
    changes = Changes()
    for deployment in session.scalars(select(Deployment).where(Deployment.status.in_(LIVE))).all():
        evaluate(session, deployment, changes)
    return changes
