"""Audit log reading: filters, server-side paging, export; read only."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lib.audit import record
from lib.audit_queries import AuditFilter, distinct_values, export_audit, list_audit
from lib.db import utcnow
from lib.errors import PermissionDeniedError, ValidationError
from lib.models import AuditLog
from lib.roles import Operator

ADMIN = Operator.from_role_names("alice", ["admin"])
FINANCE = Operator.from_role_names("fiona", ["finance"])
MANAGER = Operator.from_role_names("mia", ["manager"])


@pytest.fixture
def entries(session_factory) -> None:
    with session_factory.begin() as session:
        record(session, actor=ADMIN, action="payout.request", result="pending",
               target="payout:1", input={"amount": "10.00"})
        record(session, actor=FINANCE, action="payout.approve", result="approved",
               target="payout:1")
        record(session, actor=ADMIN, action="payout.approve", result="refused:permission_denied",
               target="payout:2")
        old = AuditLog(actor="mallory_100%", action="auth.login_failed", result="failed",
                       input={}, occurred_at=utcnow() - timedelta(days=40))
        session.add(old)


def test_newest_first_with_input_as_text(session_factory, entries) -> None:
    with session_factory() as session:
        page = list_audit(session, operator=FINANCE)
    assert page.total == 4
    assert [r.action for r in page.rows][:3] == ["payout.approve", "payout.approve",
                                                 "payout.request"]
    assert page.rows[2].input == '{"amount": "10.00"}'
    assert page.rows[2].actor_role == "admin"


def test_filters(session_factory, entries) -> None:
    with session_factory() as session:
        def total(**kw) -> int:
            return list_audit(session, operator=FINANCE, filters=AuditFilter(**kw)).total

        assert total(actor="ALI") == 2
        assert total(actor="100%") == 1  # LIKE wildcards are matched literally
        assert total(actor="_") == 1
        assert total(action="payout.approve") == 2
        assert total(result="approved") == 1
        assert total(occurred_from=utcnow() - timedelta(days=1)) == 3
        assert total(occurred_to=utcnow() - timedelta(days=30)) == 1
        assert total(actor="alice", action="payout.approve",
                     result="refused:permission_denied") == 1


def test_paging(session_factory, entries) -> None:
    with session_factory() as session:
        first = list_audit(session, operator=ADMIN, limit=3)
        second = list_audit(session, operator=ADMIN, limit=3, offset=3)
        assert first.has_more and not second.has_more
        assert {r.id for r in first.rows}.isdisjoint({r.id for r in second.rows})
        with pytest.raises(ValidationError):
            list_audit(session, operator=ADMIN, limit=501)


def test_a_long_log_is_counted_up_to_the_cap(session_factory, entries, monkeypatch) -> None:
    """Issue 22: the total stops at the cap ("more than"), pages still follow each other."""
    from lib import audit_queries

    monkeypatch.setattr(audit_queries, "COUNT_CAP", 3)
    with session_factory() as session:
        capped = list_audit(session, operator=ADMIN, limit=2, offset=2)
        narrow = list_audit(session, operator=ADMIN, filters=AuditFilter(action="payout.approve"))
    assert (capped.total, capped.total_is_lower_bound) == (3, True)
    assert capped.has_more and len(capped.rows) == 2
    assert (narrow.total, narrow.total_is_lower_bound) == (2, False)


def test_export_and_choices(session_factory, entries) -> None:
    with session_factory() as session:
        rows = export_audit(session, operator=FINANCE,
                            filters=AuditFilter(action="payout.approve"))
        assert [r["result"] for r in rows] == ["approved", "refused:permission_denied"]
        assert distinct_values(session, operator=FINANCE, column="action") == [
            "auth.login_failed", "payout.approve", "payout.request"]
        assert "approved" in distinct_values(session, operator=FINANCE, column="result")
        with pytest.raises(ValidationError):
            distinct_values(session, operator=FINANCE, column="detail")


def test_managers_cannot_read_the_log(session_factory, entries) -> None:
    with session_factory() as session:
        with pytest.raises(PermissionDeniedError):
            list_audit(session, operator=MANAGER)
        with pytest.raises(PermissionDeniedError):
            export_audit(session, operator=MANAGER)
        with pytest.raises(PermissionDeniedError):
            distinct_values(session, operator=MANAGER, column="action")
