"""Stored webhooks for the dashboard: last event per type, failures with their error."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lib.db import utcnow
from lib.errors import PermissionDeniedError, ValidationError
from lib.models import WebhookEvent, WebhookStatus
from lib.roles import Operator
from lib.webhook_queries import failed_events, last_events_per_type

ADMIN = Operator.from_role_names("alice", ["admin"])


def _event(session, n: int, type_: str, status: WebhookStatus, *, ago: timedelta,
           error: str | None = None) -> None:
    session.add(WebhookEvent(
        stripe_event_id=f"evt_{n}", type=type_, endpoint="connect", account="acct_1",
        received_at=utcnow() - ago, status=status.value, attempts=1, error=error,
        payload={"id": f"evt_{n}", "type": type_},
    ))
    session.flush()


def test_empty(session_factory) -> None:
    with session_factory() as session:
        assert last_events_per_type(session, operator=ADMIN) == []
        page = failed_events(session, operator=ADMIN)
    assert page.rows == [] and page.total == 0


def test_last_event_per_type_and_failures(session_factory) -> None:
    with session_factory.begin() as session:
        _event(session, 1, "account.updated", WebhookStatus.PROCESSED, ago=timedelta(hours=3))
        _event(session, 2, "account.updated", WebhookStatus.FAILED, ago=timedelta(hours=2),
               error="stripe_unavailable: Stripe is down")
        _event(session, 3, "transfer.created", WebhookStatus.PROCESSED,
               ago=timedelta(minutes=5))
        _event(session, 4, "account.updated", WebhookStatus.PROCESSED, ago=timedelta(hours=1))
    with session_factory() as session:
        types = last_events_per_type(session, operator=ADMIN)
        page = failed_events(session, operator=ADMIN)
    assert [t.type for t in types] == ["transfer.created", "account.updated"]
    account = types[1]
    assert (account.received, account.failed) == (3, 1)
    assert account.last_event_id == "evt_4" and account.last_status == "processed"
    assert page.total == 1
    assert page.rows[0].stripe_event_id == "evt_2"
    assert page.rows[0].error == "stripe_unavailable: Stripe is down"


def test_failures_page(session_factory) -> None:
    with session_factory.begin() as session:
        for n in range(5):
            _event(session, n, "account.updated", WebhookStatus.FAILED,
                   ago=timedelta(minutes=n), error=f"error {n}")
    with session_factory() as session:
        page = failed_events(session, operator=ADMIN, limit=2, offset=2)
        assert [r.stripe_event_id for r in page.rows] == ["evt_2", "evt_3"]
        assert page.total == 5
        with pytest.raises(ValidationError):
            failed_events(session, operator=ADMIN, limit=0)


def test_retrying_and_dead_letters_interleave_newest_first_on_every_page(
    session_factory,
) -> None:
    """Each status's newest rows are read apart and merged: pages must still interleave them
    by time, and processed events between them never show."""
    statuses = [WebhookStatus.FAILED, WebhookStatus.DEAD, WebhookStatus.PROCESSED]
    with session_factory.begin() as session:
        for n in range(12):
            _event(session, n, "account.updated", statuses[n % 3], ago=timedelta(minutes=n))
    expected = [f"evt_{n}" for n in range(12) if n % 3 != 2]
    with session_factory() as session:
        seen = [r.stripe_event_id for offset in (0, 3, 6)
                for r in failed_events(session, operator=ADMIN, limit=3, offset=offset).rows]
    assert seen == expected


@pytest.mark.parametrize("role", ["finance", "manager"])
def test_only_admins_read_webhooks(session_factory, role: str) -> None:
    operator = Operator.from_role_names("x", [role])
    with session_factory() as session:
        with pytest.raises(PermissionDeniedError):
            last_events_per_type(session, operator=operator)
        with pytest.raises(PermissionDeniedError):
            failed_events(session, operator=operator)
