"""Recent links with the status a person understands (expired and abandoned derived)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lib.connection_attempts import FailureReason, finish_attempt, start_attempt
from lib.db import utcnow
from lib.errors import PermissionDeniedError, ValidationError
from lib.freelancers import create_freelancer
from lib.link_queries import recent_links
from lib.models import AttemptOutcome, ConnectionAttempt, ConnectionMethod
from lib.roles import Operator

ADMIN = Operator.from_role_names("alice", ["admin"])


def _attempt(session, freelancer_id: int, *, started_ago: timedelta, expires_in: timedelta,
             method: ConnectionMethod = ConnectionMethod.OAUTH) -> ConnectionAttempt:
    attempt = start_attempt(session, freelancer_id=freelancer_id, method=method,
                            issued_by="alice", link_expires_at=utcnow() + expires_in)
    attempt.started_at = utcnow() - started_ago
    session.flush()
    return attempt


def test_statuses_are_derived_from_outcome_expiry_and_age(session_factory) -> None:
    with session_factory.begin() as session:
        f = create_freelancer(session, name="Grace Hopper", email="grace@example.com")
        session.flush()
        fresh = _attempt(session, f.id, started_ago=timedelta(minutes=1),
                         expires_in=timedelta(minutes=4))
        expired = _attempt(session, f.id, started_ago=timedelta(minutes=20),
                           expires_in=-timedelta(minutes=10))
        old = _attempt(session, f.id, started_ago=timedelta(days=2),
                       expires_in=-timedelta(days=2))
        won = _attempt(session, f.id, started_ago=timedelta(minutes=3),
                       expires_in=timedelta(minutes=2), method=ConnectionMethod.ACCOUNT_LINK)
        lost = _attempt(session, f.id, started_ago=timedelta(minutes=2),
                        expires_in=timedelta(minutes=3))
        finish_attempt(session, attempt_id=won.id, outcome=AttemptOutcome.SUCCEEDED)
        finish_attempt(session, attempt_id=lost.id, outcome=AttemptOutcome.FAILED,
                       reason=FailureReason.ACCESS_DENIED)
        ids = {"fresh": fresh.id, "expired": expired.id, "old": old.id, "won": won.id,
               "lost": lost.id}
    with session_factory() as session:
        rows = recent_links(session, operator=ADMIN)
    by_id = {r.attempt_id: r for r in rows}
    assert by_id[ids["fresh"]].status == "pending"
    assert by_id[ids["expired"]].status == "expired"
    assert by_id[ids["old"]].status == "abandoned"
    assert by_id[ids["won"]].status == "succeeded"
    assert by_id[ids["lost"]].status == "failed"
    assert by_id[ids["lost"]].failure_reason == "access_denied"
    # Newest first, with the freelancer named.
    assert [r.attempt_id for r in rows][:2] == [ids["fresh"], ids["lost"]]
    assert rows[0].freelancer_name == "Grace Hopper"


def test_filter_by_freelancer_and_limit(session_factory) -> None:
    with session_factory.begin() as session:
        a = create_freelancer(session, name="A", email="a@example.com")
        b = create_freelancer(session, name="B", email="b@example.com")
        session.flush()
        for _ in range(3):
            _attempt(session, a.id, started_ago=timedelta(0), expires_in=timedelta(minutes=5))
        _attempt(session, b.id, started_ago=timedelta(0), expires_in=timedelta(minutes=5))
        a_id = a.id
    with session_factory() as session:
        assert len(recent_links(session, operator=ADMIN, freelancer_id=a_id)) == 3
        assert len(recent_links(session, operator=ADMIN, limit=2)) == 2
        assert recent_links(session, operator=ADMIN, freelancer_id=999) == []
        with pytest.raises(ValidationError):
            recent_links(session, operator=ADMIN, limit=0)


@pytest.mark.parametrize("role", ["finance", "manager"])
def test_only_link_issuers_may_read_them(session_factory, role: str) -> None:
    with session_factory() as session, pytest.raises(PermissionDeniedError):
        recent_links(session, operator=Operator.from_role_names("x", [role]))
