"""Alembic environment: the connection is handed in by `edgewise.fleet.db.engine.migrate`."""

from __future__ import annotations

from alembic import context

from edgewise.fleet.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic revision --autogenerate` run by a developer
    from edgewise.fleet.db.engine import make_engine

    url = context.config.get_main_option("sqlalchemy.url") or "sqlite:///fleet-dev.db"
    with make_engine(url).connect() as dev_connection:
        context.configure(connection=dev_connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
