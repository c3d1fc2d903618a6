"""What only PostgreSQL (through psycopg) does: the group commit's one-round-trip statements.

Group commits on PostgreSQL send a batch in one round trip with psycopg's pipeline mode, which
SQLAlchemy does not expose; under load each round trip costs the committing thread a GIL
handoff, longer than PostgreSQL takes to run the statements. This is the one module of the
server that reaches through SQLAlchemy to the driver: the domain (`fleet/devices`) asks for
these by what they do, and never imports psycopg.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from psycopg.types.json import Json
from sqlalchemy import JSON, Table
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    import psycopg

Row = dict[str, Any]
Key = tuple[str, int]  # (device id, seq)


def driver_connection(session: Session) -> psycopg.Connection[Any]:
    """The session's psycopg connection (its transaction begun); only on PostgreSQL."""
    driver = session.connection().connection.driver_connection
    if driver is None:
        raise RuntimeError("the session's connection was closed under it")  # a bug, never expected
    return cast("psycopg.Connection[Any]", driver)


def lock_rows_in_id_order(session: Session, table: str, columns: Sequence[str], ids: Sequence[str]
                          ) -> dict[str, Row]:
    """`SELECT columns ... FOR UPDATE` of these ids, in id order, in one round trip (the
    transaction's BEGIN included); each row by its id. The first column must be `id`."""
    sql = (f'SELECT {", ".join(columns)} FROM "{table}" WHERE id = ANY(%s::varchar[]) '
           "ORDER BY id FOR UPDATE")
    driver = driver_connection(session)
    with driver.cursor() as cursor:
        with driver.pipeline():
            cursor.execute(sql, (list(ids),))
        return {row[0]: dict(zip(columns, row, strict=True)) for row in cursor.fetchall()}


def insert_new_and_mark_seen(session: Session, inserts: Sequence[tuple[Table, Sequence[Mapping[str, Any]]]],
                             seen: Sequence[str], now: float) -> list[set[Key]]:
    """For each (table, rows): insert the rows whose (device_id, seq) is not stored yet; and set
    `last_seen` of the `seen` devices to `now`. The keys each insert stored; one round trip.

    Through psycopg's own executemany: SQLAlchemy would send one INSERT with a VALUES row per
    item, a statement text that psycopg parses again, in Python, every time (it caches only
    short statements with few parameters)."""
    driver = driver_connection(session)
    cursors = [driver.cursor() for _ in inserts]
    try:
        with driver.pipeline():
            for cursor, (table, rows) in zip(cursors, inserts, strict=True):
                if rows:
                    columns = tuple(rows[0])
                    as_json = {c.name for c in table.columns if isinstance(c.type, JSON)}
                    cursor.executemany(_insert_new_sql(table.name, columns), [
                        tuple(Json(row[c]) if c in as_json and row[c] is not None else row[c] for c in columns)
                        for row in rows], returning=True)
            if seen:
                driver.execute("UPDATE devices SET last_seen = %s WHERE id = ANY(%s::varchar[])", (now, list(seen)))
        stored: list[set[Key]] = []
        for cursor, (_table, rows) in zip(cursors, inserts, strict=True):
            keys: set[Key] = set()
            while rows:
                keys.update((row[0], row[1]) for row in cursor.fetchall())
                if not cursor.nextset():
                    break
            stored.append(keys)
        return stored
    finally:
        for cursor in cursors:
            cursor.close()


@functools.cache
def _insert_new_sql(table: str, columns: tuple[str, ...]) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    return (f'INSERT INTO "{table}" ({names}) VALUES ({", ".join(["%s"] * len(columns))}) '
            "ON CONFLICT (device_id, seq) DO NOTHING RETURNING device_id, seq")
