"""Failed-login throttling counted from the audit log (so every replica agrees)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from lib import login_throttle as lt
from lib.db import utcnow
from lib.models import AuditLog

POLICY = lt.ThrottlePolicy(max_failures_per_username=3, max_failures_per_client=5,
                           window=timedelta(minutes=15))


def fail(session_factory, username: str, client: str | None = "10.0.0.1", times: int = 1) -> None:
    with session_factory.begin() as session:
        for _ in range(times):
            lt.record_login_failed(session, username=username, client=client)


def check(session_factory, username: str, client: str | None = "10.0.0.1", **kw):
    with session_factory() as session:
        return lt.check_login_allowed(session, username=username, client=client, policy=POLICY,
                                      **kw)


def test_allowed_until_the_limit_then_locked(session_factory) -> None:
    fail(session_factory, "admin", times=2)
    assert check(session_factory, "admin").allowed
    fail(session_factory, " Admin ")  # same user, however typed
    decision = check(session_factory, "admin")
    assert not decision.allowed
    assert timedelta(minutes=14) < decision.retry_after <= timedelta(minutes=15)
    assert decision.message == ("Too many failed sign-in attempts. Try again in 15 minutes, "
                                "or ask an admin for help.")
    # The message names no count, no client and not whether the user exists.
    assert "admin" not in decision.message.lower().replace("ask an admin", "")
    # Another user from another client is not affected.
    assert check(session_factory, "finance", client="10.0.0.2").allowed


def test_the_lock_ends_when_the_window_passes(session_factory) -> None:
    fail(session_factory, "admin", times=3)
    later = utcnow() + timedelta(minutes=16)
    assert check(session_factory, "admin", now=later).allowed
    decision = check(session_factory, "admin", now=utcnow() + timedelta(minutes=14, seconds=30))
    assert not decision.allowed and decision.message.endswith("1 minute, or ask an admin for help.")


def test_old_failures_do_not_count(session_factory) -> None:
    with session_factory.begin() as session:
        for _ in range(5):
            session.add(AuditLog(actor="admin", action=lt.LOGIN_FAILED, result="failed",
                                 input={}, occurred_at=utcnow() - timedelta(hours=1)))
    assert check(session_factory, "admin").allowed


def test_a_successful_login_resets_the_username_count(session_factory) -> None:
    fail(session_factory, "admin", times=2)
    with session_factory.begin() as session:
        lt.record_login_ok(session, username="admin", role_label="admin", client="10.0.0.1")
    fail(session_factory, "admin", times=2)
    assert check(session_factory, "admin").allowed


def test_one_client_spraying_many_usernames_is_locked(session_factory) -> None:
    for name in ("a", "b", "c", "d", "e"):
        fail(session_factory, name, client="203.0.113.9")
    decision = check(session_factory, "someone-else", client="203.0.113.9")
    assert not decision.allowed
    assert check(session_factory, "someone-else", client="198.51.100.1").allowed
    # An unknown client address is never limited as a client (it would lock everyone out).
    for name in ("f", "g", "h", "i", "j", "k"):
        fail(session_factory, name, client=None)
    assert check(session_factory, "z", client=None).allowed


def test_every_outcome_is_audited(session_factory) -> None:
    with session_factory.begin() as session:
        lt.record_login_failed(session, username="Admin", client="10.0.0.1")
        lt.record_login_locked(session, username="admin", client="10.0.0.1",
                               decision=lt.ThrottleDecision(False, timedelta(minutes=3)))
        lt.record_login_ok(session, username="admin", role_label="admin", client=None)
        lt.record_logout(session, username="admin", client=None)
    with session_factory() as session:
        rows = session.execute(select(AuditLog.actor, AuditLog.action, AuditLog.result,
                                      AuditLog.target).order_by(AuditLog.id)).all()
    assert [tuple(r) for r in rows] == [
        ("admin", "auth.login_failed", "failed", "client:10.0.0.1"),
        ("admin", "auth.login_locked", "refused:locked", "client:10.0.0.1"),
        ("admin", "auth.login", "ok", None),
        ("admin", "auth.logout", "ok", None),
    ]


def test_locked_attempts_do_not_extend_the_lock(session_factory) -> None:
    fail(session_factory, "admin", times=3)
    with session_factory.begin() as session:
        for _ in range(10):
            lt.record_login_locked(session, username="admin", client="10.0.0.1",
                                   decision=lt.ThrottleDecision(False, timedelta(minutes=1)))
    assert check(session_factory, "admin", now=utcnow() + timedelta(minutes=16)).allowed
