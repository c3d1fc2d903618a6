"""The fleet database against a real PostgreSQL: pooled connections that the server dropped are
replaced before use, reads run outside any transaction, and a group commit's first statement both
locks its devices and reads what their heartbeats need."""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import event, select, text

from edgewise.core.wire import ReportedState
from edgewise.fleet.db import engine as engine_module
from edgewise.fleet.db import open_database
from edgewise.fleet.db.models import Device
from edgewise.fleet.devices.twin import apply_reports, lock_and_read_reporting_devices


def test_a_connection_the_database_dropped_is_replaced_before_use(postgres_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    db = open_database(postgres_url)
    try:
        with db.session(write=False) as session:
            backend = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        killer = engine_module.make_engine(postgres_url)  # as a database restart would: idle connections go
        with killer.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        killer.dispose()
        monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_S", 0.0)  # the pooled one counts as idle
        with db.session(write=False) as session:
            assert session.execute(text("SELECT pg_backend_pid()")).scalar_one() != backend
            assert session.execute(select(Device.id)).all() == []
    finally:
        db.dispose()


def test_reads_on_postgresql_run_outside_a_transaction(postgres_url: str) -> None:
    db = open_database(postgres_url)
    try:
        with db.session(write=False) as session:
            # now() is when the transaction began: outside one, each statement is its own.
            before = session.execute(text("SELECT now()")).scalar_one()
            session.execute(text("SELECT pg_sleep(0.05)"))
            assert session.execute(text("SELECT now()")).scalar_one() > before
        with db.session() as session:  # a write is one transaction, start to end
            start = session.execute(text("SELECT now()")).scalar_one()
            session.execute(text("SELECT pg_sleep(0.05)"))
            assert session.execute(text("SELECT now()")).scalar_one() == start
    finally:
        db.dispose()


def test_the_group_commit_lock_reads_what_heartbeats_need(postgres_url: str) -> None:
    db = open_database(postgres_url)
    try:
        with db.session() as session:
            session.add(Device(id="dev-lock", name="cam", public_key="k" * 44, enrolled_at=time.time()))
        statements: list[str] = []

        def note(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
            statements.append(statement)

        with db.session() as session:
            locked = lock_and_read_reporting_devices(session, ["dev-lock", "dev-lock"])
            event.listen(db.engine, "before_cursor_execute", note)
            try:
                outcome, = apply_reports(session, [("dev-lock", ReportedState.model_validate(
                    {"agent_version": "9.9", "health": {"status": "ok"}}))], offline_after_s=30, locked=locked)
            finally:
                event.remove(db.engine, "before_cursor_execute", note)
            # the row is locked until this transaction ends: another writer cannot take it meanwhile
            with psycopg.connect(postgres_url) as other, pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute("SELECT id FROM devices WHERE id = 'dev-lock' FOR UPDATE NOWAIT")
        assert [s.split()[0] for s in statements] == ["UPDATE"]  # no second read of the devices
        assert outcome.came_online and outcome.status_change is not None
        with db.session(write=False) as session:
            device = session.get(Device, "dev-lock")
            assert (device.agent_version, device.health) == ("9.9", "ok") and device.last_seen is not None
    finally:
        db.dispose()
