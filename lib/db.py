"""Engine and session factory for SQLite (a laptop, the demo) and PostgreSQL (production).

Data functions in ``lib/`` take a session as a keyword-only argument and never commit; the caller
frames the transaction with ``with factory.begin() as session:``.

SQLite transactions are SQLAlchemy's, not pysqlite's. pysqlite's legacy mode emits ``BEGIN`` only
before INSERT/UPDATE/DELETE: the SELECTs of one transaction were not one snapshot, DDL committed
at once, and a SAVEPOINT that was the first write opened SQLite's own transaction, which its
RELEASE committed, out of reach of the outer rollback. So the driver is left in autocommit and
the engine's "begin" event emits ``BEGIN`` itself (SQLAlchemy's documented recipe for pysqlite;
on the driver connection, so statement counters and echo see only the application's SQL).

Which ``BEGIN``: in WAL mode a deferred transaction that has read and then writes fails at once
with "database is locked" when another connection committed in between (``busy_timeout`` does
not help for that upgrade). ``factory.begin()`` frames the read-then-write transactions
(claim a payout, consume a state), so it begins ``IMMEDIATE``: the write lock is taken up front
and a second writer waits for it. A plain ``factory()`` session never commits (the
reads of the pages and the API), so it begins deferred and never blocks a writer; so do
``engine.connect()`` and ``engine.begin()`` unless given :func:`write_engine`'s engine.

One thread, two writers: a second ``begin()`` transaction opened on the same file while this
thread's first one is still open would wait for the first one's lock, which cannot be released
until the second one returns. It fails at once instead of after ``busy_timeout``. (A refused
action is audited beside the caller's session, ``lib.audit.record_refusal``, never through a
nested transaction.)
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, DateTime, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from lib.settings import normalise_database_url


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC and always hands back an aware datetime, on SQLite as on PostgreSQL.

    SQLite has no time zone type; without this, values read back naive and comparisons with
    aware datetimes raise.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use lib.db.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: Execution option naming how a SQLite transaction begins: "DEFERRED" (the default) or
#: "IMMEDIATE" (takes the write lock at BEGIN). PostgreSQL ignores it.
SQLITE_BEGIN = "connect_ops_sqlite_begin"
_BEGIN_MODES = frozenset({"DEFERRED", "IMMEDIATE", "EXCLUSIVE"})


class _ThreadWriters(threading.local):
    """This thread's open IMMEDIATE transactions (the connections that hold a write lock).

    Weak references: a connection forgotten without commit or rollback is never kept alive here.
    """

    def __init__(self) -> None:
        self.connections: weakref.WeakSet[Connection] = weakref.WeakSet()


_writers = _ThreadWriters()


def _driver(connection: Connection) -> sqlite3.Connection:
    driver = connection.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver


def _execute_on_driver(connection: Connection, statement: str) -> None:
    """Run a transaction statement on the driver, its errors wrapped as SQLAlchemy's are."""
    try:
        _driver(connection).execute(statement)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(statement, (), exc, sqlite3.Error) from exc


def _database(connection: Connection) -> str | None:
    name = connection.engine.url.database
    return None if not name or name == ":memory:" else os.path.abspath(name)


def _refuse_waiting_on_this_thread(connection: Connection) -> None:
    """Before a write transaction: fail if this thread already holds the file's write lock."""
    database = _database(connection)
    if database is None:
        return
    for outer in list(_writers.connections):
        if outer.closed or not outer.in_transaction():
            _writers.connections.discard(outer)
        elif _database(outer) == database:
            raise OperationalError(
                "BEGIN IMMEDIATE", (), sqlite3.OperationalError(
                    "database is locked by this thread's own open transaction: a second one "
                    "would wait for it forever"))


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets the dashboard read while the companion writes; busy_timeout makes a
        # concurrent writer wait instead of failing at once with "database is locked".
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
        # Autocommit at the driver: pysqlite emits no BEGIN of its own; _begin below does.
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        if mode not in _BEGIN_MODES:
            raise ValueError(f"{SQLITE_BEGIN} must be one of {sorted(_BEGIN_MODES)}, not {mode!r}")
        if mode != "DEFERRED":
            _refuse_waiting_on_this_thread(connection)
        _execute_on_driver(connection, f"BEGIN {mode}")
        if mode != "DEFERRED":
            _writers.connections.add(connection)

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _ending(connection: Connection) -> None:
        _writers.connections.discard(connection)


def write_engine(engine: Engine) -> Engine:
    """``engine`` for transactions that write: on SQLite they begin IMMEDIATE (see the module)."""
    if engine.dialect.name != "sqlite":
        return engine
    return engine.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})


#: Per-connection settings. JIT compilation pays off for long analytical queries; the desk's
#: are short aggregates over indexes, where compiling costs more than it saves (at 100,000
#: accounts the Requirements counts took 371 ms with JIT and 207 ms without).
POSTGRESQL_SESSION_OPTIONS = "-c jit=off"


def make_engine(database_url: str, *, echo: bool = False) -> Engine:
    """Create an engine for ``database_url``; a SQLite file's folder is created if missing."""
    url = make_url(normalise_database_url(database_url))
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20,
                         connect_args={"options": POSTGRESQL_SESSION_OPTIONS})


class SessionFactory(sessionmaker[Session]):
    """A sessionmaker whose ``begin()`` transactions take SQLite's write lock up front.

    ``factory()`` sessions (reads) use the engine as given; ``factory.begin()`` binds the
    session to :func:`write_engine`, so on SQLite its transaction begins IMMEDIATE.
    """

    def __init__(self, engine: Engine, **kw: Any) -> None:
        super().__init__(bind=engine, **kw)
        self.write_bind = write_engine(engine)

    @contextmanager
    def begin(self) -> Iterator[Session]:
        """A new session in a transaction that commits at the end, or rolls back on error."""
        with self(bind=self.write_bind) as session, session.begin():
            yield session


def make_session_factory(engine: Engine) -> SessionFactory:
    """A session factory whose objects stay readable after commit."""
    return SessionFactory(engine, expire_on_commit=False)
