"""The device twin: desired state (from deployments) out, reported state (the heartbeat) in."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import Select, String, Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from edgewise.core.wire import BundleRef, DesiredState, ReportedState
from edgewise.fleet.db.ids import dialect_of, ids_match
from edgewise.fleet.db.models import Bundle, Device, ShadowAssignment
from edgewise.fleet.db.postgresql import lock_rows_in_id_order
from edgewise.fleet.errors import NotFound
from edgewise.fleet.rollouts.bundles import archive_url
from edgewise.fleet.rollouts.changes import Changes
from edgewise.fleet.rollouts.engine import on_device_reports

_BUNDLE_REFS: dict[tuple[str, str], BundleRef] = {}  # (database url, digest) -> its reference
_BUNDLE_REFS_KEPT = 1024


def _bundle_refs(session: Session, digests: set[str]) -> dict[str, BundleRef]:
    """The reference of each bundle that exists. A bundle is named by its digest and never changes,
    so each is read once: a rollout wakes every device of a batch, each asking for the same one."""
    database = str(session.get_bind().engine.url)
    missing = sorted(d for d in digests if (database, d) not in _BUNDLE_REFS)
    if missing:
        if len(_BUNDLE_REFS) > _BUNDLE_REFS_KEPT:
            _BUNDLE_REFS.clear()
        for bundle in session.execute(select(Bundle.digest, Bundle.name, Bundle.version, Bundle.size_bytes)
                                      .where(Bundle.digest.in_(missing))):
            _BUNDLE_REFS[database, bundle.digest] = BundleRef(
                name=bundle.name, version=bundle.version, digest=bundle.digest, url=archive_url(bundle.digest),
                size_bytes=bundle.size_bytes)
    return {d: _BUNDLE_REFS[database, d] for d in digests if (database, d) in _BUNDLE_REFS}


def _desired_states(session: Session, rows: list[Any]) -> dict[str, DesiredState]:
    """Each device's desired state from its row of `_desired_rows`."""
    refs = _bundle_refs(session, {d for row in rows for d in (row.desired_digest, row.shadow_digest) if d})
    states = {}
    for row in rows:
        shadow = refs.get(row.shadow_digest) if row.shadow_digest else None
        states[row.id] = DesiredState(
            device_id=row.id, revision=str(row.desired_revision), deployment_id=row.desired_deployment_id,
            bundle=refs.get(row.desired_digest or ""), allow_downgrade=bool(row.desired_downgrade), shadow=shadow,
            shadow_share=row.shadow_share if shadow is not None else 0.0)
    return states


@dataclass
class ReportOutcome:
    rollout: Changes
    status_change: dict[str, Any] | None = None
    came_online: bool = False


_DEVICES = cast(Table, Device.__table__)


# Built once per database, Core statements: long polls and heartbeats run these for every batch.
@functools.cache
def _desired_rows(dialect: str) -> Select[Any]:
    """What a desired state is made of, device and shadow assignment in one read."""
    shadows = cast(Table, ShadowAssignment.__table__)
    return (select(_DEVICES.c.id, _DEVICES.c.desired_revision, _DEVICES.c.desired_digest, _DEVICES.c.desired_downgrade,
                   _DEVICES.c.desired_deployment_id, shadows.c.bundle_digest.label("shadow_digest"),
                   shadows.c.share.label("shadow_share"))
            .select_from(_DEVICES.outerjoin(shadows, shadows.c.device_id == _DEVICES.c.id))
            .where(ids_match(_DEVICES.c.id, dialect)))


@functools.cache
def _before_report(dialect: str) -> Select[Any]:
    return select(
        _DEVICES.c.id, _DEVICES.c.name, _DEVICES.c.last_seen, _DEVICES.c.health, _DEVICES.c.update_state,
        _DEVICES.c.current_digest, _DEVICES.c.desired_deployment_id, _DEVICES.c.reported,
    ).where(ids_match(_DEVICES.c.id, dialect))
_BEFORE_COLUMNS = ("id", "name", "last_seen", "health", "update_state", "current_digest", "desired_deployment_id",
                   "reported")


def lock_and_read_reporting_devices(session: Session, device_ids: list[str]) -> dict[str, dict[str, Any]]:
    """PostgreSQL: lock the rows of every device a group commit may write, in id order, before
    writing any (an operator's rollout updates device rows in id order too, so neither can hold a
    row the other needs while waiting for another: no deadlock), and keep what `apply_reports`
    reads of them (returned, by device id, for the group commit to hand to `apply_reports`). One
    round trip, the transaction's BEGIN included: device requests wait on these round trips."""
    ids = sorted(set(device_ids))
    if not ids:
        return {}
    return lock_rows_in_id_order(session, "devices", _BEFORE_COLUMNS, ids)


# One statement for every heartbeat of a group commit, executed once per report (executemany).
_STORE_REPORT = (
    update(_DEVICES).where(_DEVICES.c.id == bindparam("b_id")).values(
        reported=bindparam("b_reported", type_=_DEVICES.c.reported.type), last_seen=bindparam("b_now"),
        health=bindparam("b_health"), update_state=bindparam("b_update_state"),
        current_digest=bindparam("b_digest"), current_version=bindparam("b_version"),
        agent_version=func.coalesce(bindparam("b_agent", type_=String), _DEVICES.c.agent_version),
        hardware=func.coalesce(bindparam("b_hardware", type_=String), _DEVICES.c.hardware))
)


def apply_reports(session: Session, reports: list[tuple[str, ReportedState]], offline_after_s: float,
                  locked: Mapping[str, Mapping[str, Any]] | None = None) -> list[ReportOutcome]:
    """Store what devices report (this is also their heartbeat) and let their deployments react.

    Heartbeats are the most frequent write: however many arrive together, they cost one SELECT and
    one executemany UPDATE. The deployment engine runs only for a device of a deployment that
    reports something new (health, update progress or bundle): a repeated report cannot change its
    verdict, and bake timers and timeouts move on in the housekeeping tick. `locked`: the rows
    `lock_and_read_reporting_devices` already read in this transaction (PostgreSQL), not read again.
    """
    ids = sorted({device_id for device_id, _ in reports})
    locked = locked or {}
    if all(device_id in locked for device_id in ids):
        before = {device_id: dict(locked[device_id]) for device_id in ids}
    else:
        before = {row.id: row._asdict() for row in session.execute(_before_report(dialect_of(session)), {"ids": ids})}
    now = time.time()
    rows: list[dict[str, Any]] = []
    outcomes: list[ReportOutcome] = []
    news_for: dict[str, int] = {}  # device id -> index of its last report with news
    news: dict[str, SimpleNamespace] = {}  # device id -> what it now reports, for its deployment
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
        has_news = status_change is not None or (previous["reported"] or {}).get("update") != reported.get("update")
        if previous["desired_deployment_id"] is not None and has_news:
            news_for[device_id] = len(outcomes)
            news[device_id] = SimpleNamespace(**now_row)
        before[device_id] = now_row  # a second report from the same device in this batch follows this one
        rows.append({"b_id": device_id, "b_reported": reported, "b_now": now, "b_health": now_row["health"],
                     "b_update_state": now_row["update_state"], "b_digest": now_row["current_digest"],
                     "b_version": current.version if current else None,
                     "b_agent": report.agent_version or None, "b_hardware": report.hardware or None})
        outcomes.append(ReportOutcome(Changes(), status_change, came_online))
    session.execute(_STORE_REPORT, rows)
    if news_for:
        for device_id, changes in on_device_reports(session, news).items():
            outcomes[news_for[device_id]].rollout = changes
    return outcomes


def read_desired_many(session: Session, reads: list[tuple[str, str | None]]
                      ) -> list[tuple[DesiredState | None, str]]:
    """For each (device id, revision it has seen): (its desired state, revision), or (None, revision)
    while the revision is still the one seen. Long polls re-read often: one query for all of them."""
    ids = sorted({device_id for device_id, _ in reads})
    rows = {row.id: row for row in session.execute(_desired_rows(dialect_of(session)), {"ids": ids})}
    missing = [device_id for device_id, _ in reads if device_id not in rows]
    if missing:
        raise NotFound(f"device {missing[0]} not found")
    changed = {device_id for device_id, seen in reads if str(rows[device_id].desired_revision) != seen}
    states = _desired_states(session, [rows[device_id] for device_id in sorted(changed)])
    results: list[tuple[DesiredState | None, str]] = []
    for device_id, seen in reads:
        state = states.get(device_id) if str(rows[device_id].desired_revision) != seen else None
        results.append((state, state.revision) if state is not None else (None, str(rows[device_id].desired_revision)))
    return results
