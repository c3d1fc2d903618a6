"""The rollout engine on a real SQLite database, below the HTTP API: batch assignment writes in bulk
statements, and ORM objects the same transaction already holds must not go stale because of it."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import select

from edgewise.fleet.db import Database, open_database
from edgewise.fleet.db.models import Bundle, Deployment, DeploymentHistory, DeploymentTarget, Device
from edgewise.fleet.rollouts.changes import Changes
from edgewise.fleet.rollouts.engine import (
    advance_all,
    create_deployment,
    defer_evaluation,
    evaluate,
    evaluate_deferred,
    on_device_reports,
)
from edgewise.fleet.rollouts.selectors import Selector
from edgewise.fleet.rollouts.strategies import StrategySpec

OLD, NEW = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def fleet_db(tmp_path: Path, count: int) -> Database:
    db = open_database(f"sqlite:///{tmp_path / 'fleet.db'}")
    now = time.time()
    with db.session() as session:
        for index in range(count):
            session.add(Device(id=f"dev-{index}", name=f"cam-{index}", public_key="k" * 44, enrolled_at=now,
                               last_seen=now, health="ok", current_digest=OLD, desired_digest=OLD,
                               reported={"health": {"status": "ok"}}))
        for digest, version in ((OLD, "1"), (NEW, "2")):
            session.add(Bundle(digest=digest, name="pests", version=version, ref=f"pests:{version}",
                               registered_at=now))
    return db


def test_next_batch_is_assigned_and_loaded_objects_see_it(tmp_path: Path) -> None:
    db = fleet_db(tmp_path, 4)
    with db.session() as session:
        bundle = session.get(Bundle, NEW)
        deployment, changes = create_deployment(session, bundle, Selector(), StrategySpec(name="staged", batches=2))
        first = set(changes.desired_changed)
        assert len(first) == 2
    with db.session() as session:
        # Everything this transaction will touch is already loaded, as in a group commit.
        devices = {d.id: d for d in session.scalars(select(Device))}
        targets = {t.device_id: t for t in session.scalars(select(DeploymentTarget))}
        second = set(devices) - first
        assert {targets[d].status for d in second} == {"pending"}
        revisions = {d: devices[d].desired_revision for d in second}
        for device_id in first:  # the first batch reports the new bundle, healthy
            devices[device_id].current_digest = NEW
            targets[device_id].status, targets[device_id].finished_at = "succeeded", time.time()
        moved = Changes()
        evaluate(session, session.get(Deployment, deployment.id), moved)
        assert moved.desired_changed == second
        for device_id in second:
            assert devices[device_id].desired_digest == NEW  # reloaded, not the stale object
            assert devices[device_id].desired_revision == revisions[device_id] + 1
            assert targets[device_id].status == "assigned"
            assert targets[device_id].previous_digest == OLD
    with db.session(write=False) as session:
        history = [(h.to_state, h.device_id) for h in session.scalars(
            select(DeploymentHistory).order_by(DeploymentHistory.id))]
    assert history[0] == ("rolling", None)
    assert [state for state, _ in history].index("batch") > max(
        i for i, (state, device) in enumerate(history) if device in first)


def test_assignment_judges_each_device_at_once(tmp_path: Path) -> None:
    """A device already running the bundle succeeds as it is assigned; one revoked since fails."""
    db = fleet_db(tmp_path, 3)  # staged in 3 batches: dev-0, dev-1, dev-2 (all online and healthy: by id)
    with db.session() as session:
        session.get(Device, "dev-1").current_digest = NEW
        deployment, _ = create_deployment(session, session.get(Bundle, NEW), Selector(),
                                          StrategySpec(name="staged", batches=3))
    for step in range(2):
        with db.session() as session:
            if step == 0:
                session.get(Device, "dev-0").current_digest = NEW
                session.scalars(select(DeploymentTarget).where(DeploymentTarget.device_id == "dev-0")).one() \
                    .status = "succeeded"
                session.get(Device, "dev-2").revoked = True
            evaluate(session, session.get(Deployment, deployment.id), Changes())
    with db.session(write=False) as session:
        targets = {t.device_id: t for t in session.scalars(select(DeploymentTarget))}
        history = [(h.device_id, h.from_state, h.to_state, h.detail) for h in session.scalars(
            select(DeploymentHistory).order_by(DeploymentHistory.id)) if h.device_id == "dev-1"]
        revoked_desired = session.get(Device, "dev-2").desired_digest
    assert targets["dev-1"].status == "succeeded" and targets["dev-1"].finished_at is not None
    assert history == [("dev-1", "pending", "assigned", "batch 1"), ("dev-1", "assigned", "succeeded", "")]
    assert (targets["dev-2"].status, targets["dev-2"].detail) == ("failed", "device revoked")
    assert revoked_desired == OLD  # a revoked device's desired state is never touched


def test_device_reports_leave_timed_out_devices_to_the_tick(tmp_path: Path) -> None:
    """A report that finishes a target evaluates its deployment at the end of the group commit, but
    devices silent past their timeout fail in the housekeeping tick, not in a device's request."""
    db = fleet_db(tmp_path, 2)
    with db.session() as session:
        deployment, _ = create_deployment(session, session.get(Bundle, NEW), Selector(),
                                          StrategySpec(device_timeout_s=60, failure_threshold=1.0))
    with db.session() as session:
        for target in session.scalars(select(DeploymentTarget)):
            target.assigned_at = time.time() - 120  # both silent past their timeout
    updated = SimpleNamespace(id="dev-0", reported={"health": {"status": "ok"}}, update_state="idle",
                              current_digest=NEW, health="ok", desired_deployment_id=deployment.id)
    with db.session() as session:
        defer_evaluation(session)
        on_device_reports(session, {"dev-0": updated})
        evaluate_deferred(session)
    with db.session(write=False) as session:
        assert {t.device_id: t.status for t in session.scalars(select(DeploymentTarget))} == {
            "dev-0": "succeeded", "dev-1": "assigned"}
    with db.session() as session:
        advance_all(session)
    with db.session(write=False) as session:
        silent = session.scalars(select(DeploymentTarget).where(DeploymentTarget.device_id == "dev-1")).one()
        assert (silent.status, silent.detail) == ("failed", "no success reported within 60s")
        assert session.get(Deployment, deployment.id).status == "completed"
