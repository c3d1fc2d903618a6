"""Engines and sessions for SQLite (WAL, the embedded default) and PostgreSQL, migrated on open."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

try:
    import fcntl
except ImportError:  # Windows: one server process there; SQLite's own locking is enough
    fcntl = None  # type: ignore[assignment]  # the module, or None where there is none

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from edgewise.core.errors import ConfigError, ServiceUnavailable

T = TypeVar("T")
RETRYABLE_SQLSTATES = {"40P01", "40001"}  # deadlock detected, serialization failure
PING_AFTER_IDLE_S = 5.0


def normalise_url(url: str) -> str:
    """Accept `postgresql://` (psycopg 3 driver) and plain file paths (SQLite)."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    if not url.startswith(("sqlite", "postgresql")):
        raise ConfigError(f"unsupported database URL {url!r}", "use sqlite:///PATH or postgresql://user@host/db")
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; NORMAL sync is durable across app crashes in WAL mode.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    # Checkpoints (which fsync) run in the housekeeping thread instead of inside a request's commit.
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10}, pool_size=20)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url, pool_size=20, max_overflow=20)
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use if it sat idle, as `pool_pre_ping` would every time:
    device requests check connections out hundreds of times a second, and a ping each time added
    a round trip to every batch. A busy connection that breaks (the database restarted)
    fails its transaction, and the pool replaces it."""

    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("checked_in_at", 0.0) > PING_AFTER_IDLE_S:
            try:
                engine.dialect.do_ping(dbapi_connection)
            except Exception as error:
                raise DisconnectionError("the pooled connection is gone") from error  # the pool retries

    event.listen(engine, "checkin", checked_in)
    event.listen(engine, "checkout", checkout)


class WriterLock:
    """One SQLite writer at a time, across this process's threads and every process that opens
    the same database file (the server and its device process, `edgewise server token create`).

    SQLite serialises writers itself, but a second one busy-waits in growing sleeps, and a
    transaction that read before another process committed cannot write at all ("database is
    locked"). Waiting here first, in the kernel (flock on a file beside the database), avoids both.
    """

    def __init__(self, database_path: str | None) -> None:
        self._threads = threading.Lock()
        self._file = None
        if database_path and fcntl is not None:
            self._file = open(f"{database_path}.writer-lock", "a+b")  # noqa: SIM115 - held for the engine's life

    def __enter__(self) -> None:
        self._threads.acquire()
        if self._file is not None:
            try:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
            except BaseException:
                self._threads.release()
                raise

    def __exit__(self, *_exc: object) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        self._threads.release()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _sqlite_path(engine: Engine) -> str | None:
    """The database file of an SQLite engine; None for an in-memory one."""
    path = engine.url.database
    return None if not path or path == ":memory:" or path.startswith("file::memory:") else path


class Database:
    """One engine and its session factory; `session()` commits on success and rolls back on error."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # Reads need no transaction of their own: on PostgreSQL that would be two more round trips
        # (BEGIN, COMMIT) for every batch of long polls. SQLite's driver opens none for reads anyway.
        reads = engine if engine.dialect.name == "sqlite" else engine.execution_options(isolation_level="AUTOCOMMIT")
        self._read_sessions = sessionmaker(reads, expire_on_commit=False)
        # SQLite has one writer: queueing writers here is fairer than busy-waiting inside SQLite.
        self._write_lock = WriterLock(_sqlite_path(engine)) if engine.dialect.name == "sqlite" else None

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @property
    def in_memory(self) -> bool:
        """An in-memory SQLite database, which no other process can open."""
        return self.is_sqlite and _sqlite_path(self.engine) is None

    @contextmanager
    def session(self, write: bool = True) -> Iterator[Session]:
        """A transaction; `write=False` for read-only work, which never waits for SQLite's writer."""
        lock = self._write_lock if write else None
        with lock if lock is not None else contextlib.nullcontext():
            session = self._sessions() if write else self._read_sessions()
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()

    def transact(self, work: Callable[[Session], T], attempts: int = 4) -> T:
        """`work(session)` in a write transaction, run again if PostgreSQL chose it as a deadlock
        victim or refused it as unserialisable: operator changes (a rollout touching a thousand
        devices) may cross the group commit of device requests, and must not fail for that."""
        for attempt in range(attempts):
            try:
                with self.session() as session:
                    return work(session)
            except OperationalError as error:
                if getattr(error.orig, "sqlstate", None) not in RETRYABLE_SQLSTATES or attempt == attempts - 1:
                    raise
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))  # noqa: S311 - jitter, not secrecy
        raise AssertionError("unreachable")  # pragma: no cover

    def checkpoint(self) -> None:
        """Copy SQLite's write-ahead log into the database file without blocking writers (no-op elsewhere)."""
        if self.is_sqlite:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def dispose(self) -> None:
        self.engine.dispose()
        if self._write_lock is not None:
            self._write_lock.close()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (the migrations ship inside the package)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except OperationalError as error:
        raise ServiceUnavailable(f"cannot reach the database: {error.orig}", "check --db and that it runs") from None


def open_database(url: str, run_migrations: bool = True) -> Database:
    engine = make_engine(url)
    if run_migrations:
        migrate(engine)
    return Database(engine)
