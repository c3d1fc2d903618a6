"""The device twin: desired state (from deployments) out, reported state (the heartbeat) in."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Select, String, Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from edgewise.core.wire import BundleRef, DesiredState, ReportedState
from edgewise.fleet.bundles import archive_url
from edgewise.fleet.db.ids import dialect_of, ids_match
from edgewise.fleet.db.models import Bundle, Device, ShadowAssignment
from edgewise.fleet.errors import NotFound
from edgewise.fleet.rollout import Changes, on_device_reports


def _bundle_ref(bundle: Bundle | None) -> BundleRef | None:
    if bundle is None:
        return None
    return BundleRef(name=bundle.name, version=bundle.version, digest=bundle.digest, url=archive_url(bundle.digest),
                     size_bytes=bundle.size_bytes)


def desired_states(session: Session, device_ids: list[str]) -> dict[str, DesiredState]:
    """The desired state of each device that exists, in three queries however many there are
    (a rollout wakes every device of a batch at once)."""
    ids = sorted(set(device_ids))
    devices = session.execute(select(Device.id, Device.desired_revision, Device.desired_digest,
                                     Device.desired_deployment_id).where(Device.id.in_(ids))).all()
    shadows = {a.device_id: a for a in session.scalars(select(ShadowAssignment)
                                                       .where(ShadowAssignment.device_id.in_(ids)))}
    digests = {d.desired_digest for d in devices if d.desired_digest} | {a.bundle_digest for a in shadows.values()}
    bundles = {b.digest: b for b in session.scalars(select(Bundle).where(Bundle.digest.in_(sorted(digests))))}
    states = {}
    for device in devices:
        assignment = shadows.get(device.id)
        shadow = _bundle_ref(bundles.get(assignment.bundle_digest)) if assignment else None
        states[device.id] = DesiredState(
            device_id=device.id, revision=str(device.desired_revision), deployment_id=device.desired_deployment_id,
            bundle=_bundle_ref(bundles.get(device.desired_digest or "")), shadow=shadow,
            shadow_share=assignment.share if assignment is not None and shadow is not None else 0.0)
    return states


@dataclass
class ReportOutcome:
    rollout: Changes
    status_change: dict[str, Any] | None = None
    came_online: bool = False


_DEVICES = cast(Table, Device.__table__)


# Built once per database, Core statements: long polls and heartbeats run these for every batch.
@functools.cache
def _revisions(dialect: str) -> Select[Any]:
    return select(_DEVICES.c.id, _DEVICES.c.desired_revision).where(ids_match(_DEVICES.c.id, dialect))


@functools.cache
def _before_report(dialect: str) -> Select[Any]:
    return select(
        _DEVICES.c.id, _DEVICES.c.name, _DEVICES.c.last_seen, _DEVICES.c.health, _DEVICES.c.update_state,
        _DEVICES.c.current_digest, _DEVICES.c.desired_deployment_id, _DEVICES.c.reported,
    ).where(ids_match(_DEVICES.c.id, dialect))
# One statement for every heartbeat of a group commit, executed once per report (executemany).
_STORE_REPORT = (
    update(_DEVICES).where(_DEVICES.c.id == bindparam("b_id")).values(
        reported=bindparam("b_reported", type_=_DEVICES.c.reported.type), last_seen=bindparam("b_now"),
        health=bindparam("b_health"), update_state=bindparam("b_update_state"),
        current_digest=bindparam("b_digest"), current_version=bindparam("b_version"),
        agent_version=func.coalesce(bindparam("b_agent", type_=String), _DEVICES.c.agent_version),
        hardware=func.coalesce(bindparam("b_hardware", type_=String), _DEVICES.c.hardware))
)


def apply_reports(session: Session, reports: list[tuple[str, ReportedState]], offline_after_s: float
                  ) -> list[ReportOutcome]:
    """Store what devices report (this is also their heartbeat) and let their deployments react.

    Heartbeats are the most frequent write: however many arrive together, they cost one SELECT and
    one executemany UPDATE. The deployment engine runs only for a device of a deployment that
    reports something new (health, update progress or bundle): a repeated report cannot change its
    verdict, and bake timers and timeouts move on in the housekeeping tick.
    """
    ids = sorted({device_id for device_id, _ in reports})
    before = {row.id: row._asdict() for row in session.execute(_before_report(dialect_of(session)), {"ids": ids})}
    now = time.time()
    rows: list[dict[str, Any]] = []
    outcomes: list[ReportOutcome] = []
    news_for: dict[str, int] = {}  # device id -> index of its last report with news
    for device_id, report in reports:
        previous = before.get(device_id)
        if previous is None:
            raise NotFound(f"device {device_id} not found")
        current = report.current_bundle
        reported = report.model_dump(mode="json")
        now_row = {"id": device_id, "name": previous["name"], "last_seen": now, "health": report.health.status,
                   "update_state": report.update.state, "current_digest": current.digest if current else None,
                   "desired_deployment_id": previous["desired_deployment_id"], "reported": reported}
        came_online = previous["last_seen"] is None or now - previous["last_seen"] > offline_after_s
        status_change = None
        if came_online or any(previous[k] != now_row[k] for k in ("health", "update_state", "current_digest")):
            status_change = {"device_id": device_id, "name": previous["name"], "health": now_row["health"],
                             "update_state": now_row["update_state"],
                             "bundle_version": current.version if current else None, "online": True, "ts": now}
        news = status_change is not None or (previous["reported"] or {}).get("update") != reported.get("update")
        if previous["desired_deployment_id"] is not None and news:
            news_for[device_id] = len(outcomes)
        before[device_id] = now_row  # a second report from the same device in this batch follows this one
        rows.append({"b_id": device_id, "b_reported": reported, "b_now": now, "b_health": now_row["health"],
                     "b_update_state": now_row["update_state"], "b_digest": now_row["current_digest"],
                     "b_version": current.version if current else None,
                     "b_agent": report.agent_version or None, "b_hardware": report.hardware or None})
        outcomes.append(ReportOutcome(Changes(), status_change, came_online))
    session.execute(_STORE_REPORT, rows)
    if news_for:
        for device_id, changes in on_device_reports(session, list(news_for)).items():
            outcomes[news_for[device_id]].rollout = changes
    return outcomes


def read_desired_many(session: Session, reads: list[tuple[str, str | None]]
                      ) -> list[tuple[DesiredState | None, str]]:
    """For each (device id, revision it has seen): (its desired state, revision), or (None, revision)
    while the revision is still the one seen. Long polls re-read often, so unchanged is one read."""
    ids = sorted({device_id for device_id, _ in reads})
    revisions = dict(session.execute(_revisions(dialect_of(session)), {"ids": ids}).all())
    missing = [device_id for device_id, _ in reads if device_id not in revisions]
    if missing:
        raise NotFound(f"device {missing[0]} not found")
    states = desired_states(session, [d for d, seen in reads if str(revisions[d]) != seen])
    results: list[tuple[DesiredState | None, str]] = []
    for device_id, seen in reads:
        state = states.get(device_id) if str(revisions[device_id]) != seen else None
        results.append((state, state.revision) if state is not None else (None, str(revisions[device_id])))
    return results
