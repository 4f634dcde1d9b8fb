from sqlalchemy import select

from lib.audit import record, record_now
from lib.models import AuditLog
from lib.roles import Operator


def test_entry_commits_with_the_action(session_factory) -> None:
    admin = Operator.from_role_names("alice", ["admin"])
    with session_factory.begin() as session:
        record(session, actor=admin, action="payout.request", result="ok", target="payout:1",
               input={"amount": "10.00", "note": "key sk_test_abcdefgh123"})
    with session_factory() as session:
        entry = session.scalars(select(AuditLog)).one()
    assert entry.actor == "alice" and entry.actor_role == "admin"
    assert entry.input["amount"] == "10.00"
    assert "sk_test_abcdefgh123" not in entry.input["note"]


def test_entry_rolls_back_with_the_action(session_factory) -> None:
    try:
        with session_factory.begin() as session:
            record(session, actor="alice", action="x", result="ok")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    with session_factory() as session:
        assert session.scalars(select(AuditLog)).all() == []


def test_record_now_survives_callers_rollback(session_factory) -> None:
    try:
        with session_factory.begin() as session:
            record(session, actor="alice", action="lost", result="ok")
            record_now(session_factory, actor="mallory", action="payout.approve",
                       result="refused", detail="not allowed")
            raise RuntimeError("rollback")
    except RuntimeError:
        pass
    with session_factory() as session:
        actions = [e.action for e in session.scalars(select(AuditLog))]
    assert actions == ["payout.approve"]


def test_an_entry_holds_what_postgresql_cannot_store_as_text(session_factory) -> None:
    """A refusal of input carrying NUL is still recorded (U+0000 is not valid PostgreSQL text)."""
    from lib import audit
    from lib.models import AuditLog

    audit.record_now(session_factory, actor="fuzz", action="payout.reverse", result="refused",
                     input={"reason": "a\x00b", "k\x00": ["x\x00"]}, detail="d\x00e")
    with session_factory() as session:
        entry = session.query(AuditLog).one()
    assert entry.input == {"reason": "a\\x00b", "k\\x00": ["x\\x00"]}
    assert entry.detail == "d\\x00e"
