"""The fleet database's connection handling against a real PostgreSQL: pooled connections that the
server dropped are replaced before use, and reads run outside any transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from edgewise.fleet.db import engine as engine_module
from edgewise.fleet.db import open_database
from edgewise.fleet.db.models import Device


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
