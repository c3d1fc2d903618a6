"""`WHERE id IN (...)` for the statements every batch of device requests runs.

On PostgreSQL the list is bound as one array (`= ANY(:ids)`): psycopg parses a statement's text in
Python on every execution unless it is short and has at most 50 parameters, so an IN list of a few
hundred device ids was parsed anew for every batch. SQLite gets a plain expanding IN list.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ARRAY, Connection, any_, bindparam
from sqlalchemy.orm import Session


def ids_match(column: Any, dialect: str, name: str = "ids") -> Any:
    """`column` is one of the list bound as `name` (pass the list itself, on either database)."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


def dialect_of(connection: Connection | Session) -> str:
    if isinstance(connection, Session):
        return connection.get_bind().dialect.name
    return connection.dialect.name
