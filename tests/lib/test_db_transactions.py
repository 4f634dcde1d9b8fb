"""Transactions through lib.db are real ones on SQLite too (issue 8).

pysqlite's legacy transaction handling let a SAVEPOINT that was the first write commit on its
own, read each SELECT outside any snapshot and committed DDL at once. lib.db emits BEGIN itself:
``session_factory.begin()`` begins IMMEDIATE (writers queue for the lock instead of failing on
a read-to-write upgrade), a plain session begins deferred (reads never block a writer).

The savepoint test runs on the suite's backend; the others are about SQLite's locking and use
their own SQLite file in WAL mode whatever the backend.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from lib import audit
from lib.db import SessionFactory, make_engine, make_session_factory
from lib.models import AuditLog, Freelancer


class _Rollback(Exception):
    """Raised inside a transaction to roll it back."""


def _freelancers(session_factory: sessionmaker[Session]) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(Freelancer)) or 0


def test_a_savepoint_that_is_the_first_write_rolls_back_with_the_transaction(
        session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(_Rollback), session_factory.begin() as session:
        with session.begin_nested():
            session.add(Freelancer(name="Ada", email="ada@example.com"))
        raise _Rollback
    assert _freelancers(session_factory) == 0


def test_a_savepoint_first_in_a_plain_session_rolls_back_with_it(
        session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        with session.begin_nested():
            session.add(Freelancer(name="Ada", email="ada@example.com"))
        session.rollback()
    assert _freelancers(session_factory) == 0


def test_a_rolled_back_savepoint_keeps_the_rest_of_the_transaction(
        session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        session.add(Freelancer(name="Ada", email="ada@example.com"))
        session.flush()
        with pytest.raises(_Rollback), session.begin_nested():
            session.add(Freelancer(name="Grace", email="grace@example.com"))
            session.flush()
            raise _Rollback
    assert _freelancers(session_factory) == 1


# ---- SQLite locking ------------------------------------------------------------------------------

#: How long a test gives a second connection to do what it should not be able to do yet.
_GRACE = 0.5


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'locks.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    try:
        yield engine
    finally:
        engine.dispose()


def _count(session: Session | None = None, *, engine: Engine | None = None) -> int:
    statement = text("SELECT count(*) FROM item")
    if session is not None:
        return session.execute(statement).scalar_one()
    assert engine is not None
    with engine.connect() as conn:
        return conn.execute(statement).scalar_one()


def _insert(session: Session, name: str) -> None:
    session.execute(text("INSERT INTO item (name) VALUES (:name)"), {"name": name})


def test_the_database_is_in_wal_mode(sqlite_engine: Engine) -> None:
    with sqlite_engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"


def test_ddl_rolls_back(sqlite_engine: Engine) -> None:
    with pytest.raises(_Rollback), sqlite_engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE scratch (id INTEGER PRIMARY KEY)")
        raise _Rollback
    with sqlite_engine.connect() as conn:
        tables: Sequence[str] = conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table'").scalars().all()
    assert "scratch" not in tables


def test_the_reads_of_one_session_are_one_snapshot(sqlite_engine: Engine) -> None:
    factory = make_session_factory(sqlite_engine)
    with factory() as reader:
        assert _count(reader) == 0
        with factory.begin() as writer:
            _insert(writer, "committed meanwhile")
        assert _count(reader) == 0  # the reader's snapshot predates the commit
    assert _count(engine=sqlite_engine) == 1


def test_a_reading_session_does_not_block_a_writer(sqlite_engine: Engine) -> None:
    """Dashboard pages read in plain sessions: those must not take SQLite's write lock."""
    factory = make_session_factory(sqlite_engine)
    committed = threading.Event()

    def write() -> None:
        with factory.begin() as writer:
            _insert(writer, "while a page reads")
        committed.set()

    with factory() as reader:
        _count(reader)
        thread = threading.Thread(target=write)
        thread.start()
        assert committed.wait(timeout=10), "the writer waited for a reader"
    thread.join(timeout=30)


def test_a_begin_transaction_takes_the_write_lock_at_once(sqlite_engine: Engine) -> None:
    factory = make_session_factory(sqlite_engine)
    assert isinstance(factory, SessionFactory)
    with factory.begin() as session:
        session.execute(text("SELECT 1"))
        driver = session.connection().connection.driver_connection
        assert driver is not None and driver.in_transaction
        other = sqlite_engine.raw_connection()
        try:
            other_driver = other.driver_connection
            assert other_driver is not None
            other_driver.execute("PRAGMA busy_timeout=0")
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other_driver.execute("BEGIN IMMEDIATE")
        finally:
            other.close()


def test_two_writers_that_read_first_both_commit_one_after_the_other(
        sqlite_engine: Engine) -> None:
    """The double click: both read, then write. The second waits for the first's lock.

    With a deferred BEGIN the second would commit while the first holds only a read snapshot,
    and the first's write would then fail at once with "database is locked" (an upgrade of a
    stale snapshot, which busy_timeout does not wait for).
    """
    factory = make_session_factory(sqlite_engine)
    first_has_read = threading.Event()
    second_done = threading.Event()
    order: list[str] = []
    errors: list[BaseException] = []

    def second() -> None:
        first_has_read.wait(timeout=10)
        try:
            with factory.begin() as session:
                seen = _count(session)
                _insert(session, f"second saw {seen}")
            order.append("second")
        except OperationalError as exc:  # recorded for the assertion below
            errors.append(exc)
        finally:
            second_done.set()

    thread = threading.Thread(target=second)
    thread.start()
    started = time.monotonic()
    with factory.begin() as session:
        seen = _count(session)
        first_has_read.set()
        # Let the second writer commit if it can; it must not be able to.
        second_done.wait(timeout=_GRACE)
        _insert(session, f"first saw {seen}")
        order.append("first")
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert errors == []
    assert order == ["first", "second"]
    assert time.monotonic() - started >= _GRACE
    with factory() as session:
        names: Sequence[str] = session.execute(
            text("SELECT name FROM item ORDER BY id")).scalars().all()
    assert names == ["first saw 0", "second saw 1"]


def test_transaction_statements_are_not_counted_as_the_applications(
        sqlite_engine: Engine) -> None:
    """Query-count tests listen to cursor executions: BEGIN must not add to them."""
    factory = make_session_factory(sqlite_engine)
    seen: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        seen.append(statement)

    event.listen(sqlite_engine, "before_cursor_execute", count)
    try:
        with factory.begin() as session:
            _count(session)
        with factory() as session:
            _count(session)
    finally:
        event.remove(sqlite_engine, "before_cursor_execute", count)
    assert seen == ["SELECT count(*) FROM item"] * 2


# ---- one thread, two writers: the second would wait for the first forever --------------------


def test_a_nested_writer_fails_at_once_when_the_caller_has_only_read(
        sqlite_engine: Engine) -> None:
    factory = make_session_factory(sqlite_engine)
    started = time.monotonic()
    with factory.begin() as caller:
        assert _count(caller) == 0
        with pytest.raises(OperationalError, match="this thread's own open transaction"):
            with factory.begin() as nested:
                _insert(nested, "would deadlock")
        _insert(caller, "caller")  # the caller's transaction is untouched and goes on
    assert time.monotonic() - started < 5  # no busy_timeout waited out
    assert _count(engine=sqlite_engine) == 1


def test_a_writer_after_the_callers_transaction_ended_is_not_refused(
        sqlite_engine: Engine) -> None:
    factory = make_session_factory(sqlite_engine)
    with factory.begin() as first:
        _insert(first, "first")
    with factory.begin() as second:  # the same thread, one after the other
        _insert(second, "second")
    assert _count(engine=sqlite_engine) == 2


def test_a_refusal_audited_beside_the_callers_session_survives_its_rollback(
        sqlite_engine: Engine) -> None:
    """What lib.audit.record_refusal does instead of a nested transaction."""
    AuditLog.__table__.create(sqlite_engine)
    factory = make_session_factory(sqlite_engine)
    with pytest.raises(_Rollback), factory.begin() as caller:
        caller.execute(text("SELECT 1"))
        audit.record_refusal(caller, actor="finance", action="payout.approve",
                             detail="Only an admin may approve payouts.")
        raise _Rollback
    with factory() as session:
        assert session.scalars(select(AuditLog.action)).all() == ["payout.approve"]


def test_a_nested_writer_fails_at_once_when_the_caller_has_written(
        sqlite_engine: Engine) -> None:
    factory = make_session_factory(sqlite_engine)
    started = time.monotonic()
    with factory.begin() as caller:
        _insert(caller, "caller")
        with pytest.raises(OperationalError, match="this thread's own open transaction"):
            with factory.begin() as audit:
                _insert(audit, "would deadlock")
        _insert(caller, "caller again")
    assert time.monotonic() - started < 5
    assert _count(engine=sqlite_engine) == 2


def test_a_nested_writer_does_not_end_an_open_savepoint(sqlite_engine: Engine) -> None:
    factory = make_session_factory(sqlite_engine)
    with factory.begin() as caller, caller.begin_nested():
        _count(caller)
        with pytest.raises(OperationalError, match="this thread's own open transaction"):
            with factory.begin() as audit:
                _insert(audit, "would deadlock")
        _insert(caller, "in the savepoint")
    assert _count(engine=sqlite_engine) == 1
