"""Connection attempts: every issued OAuth URL or onboarding link, and how it ended.

The connection metrics are computed from these rows, so every callback, return, webhook and
deauthorization updates them through the functions here.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lib.db import utcnow
from lib.dml import rowcount
from lib.models import AttemptOutcome, ConnectionAttempt, ConnectionMethod

#: A pending attempt older than this was abandoned by the freelancer.
ABANDON_AFTER = timedelta(hours=24)


class FailureReason(enum.StrEnum):
    """The callback reasons of the platform's existing API, plus our own few."""

    ACCESS_DENIED = "access_denied"
    MISSING_PARAMETERS = "missing_parameters"
    INVALID_STATE = "invalid_state"
    EXCHANGE_FAILED = "exchange_failed"
    SERVER_ERROR = "server_error"
    ACCOUNT_ALREADY_CONNECTED = "account_already_connected"
    ABANDONED = "abandoned"


def start_attempt(
    session: Session, *, freelancer_id: int, method: ConnectionMethod, issued_by: str,
    stripe_account_id: str | None = None, link_expires_at: datetime | None = None,
) -> ConnectionAttempt:
    """Record a newly issued link."""
    attempt = ConnectionAttempt(
        freelancer_id=freelancer_id, method=method.value, issued_by=issued_by,
        stripe_account_id=stripe_account_id, link_expires_at=link_expires_at,
        started_at=utcnow(),
    )
    session.add(attempt)
    session.flush()
    return attempt


def finish_attempt(
    session: Session, *, attempt_id: int | None, outcome: AttemptOutcome,
    reason: FailureReason | None = None, stripe_account_id: str | None = None,
) -> None:
    """Close an attempt (only a pending one: a late duplicate never rewrites the outcome)."""
    if attempt_id is None:
        return
    values: dict[str, object] = {"outcome": outcome.value, "finished_at": utcnow()}
    if reason is not None:
        values["failure_reason"] = reason.value
    if stripe_account_id is not None:
        values["stripe_account_id"] = stripe_account_id
    session.execute(
        update(ConnectionAttempt)
        .where(ConnectionAttempt.id == attempt_id,
               ConnectionAttempt.outcome == AttemptOutcome.PENDING.value)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def mark_returned(session: Session, *, attempt_id: int) -> ConnectionAttempt | None:
    """The freelancer came back from hosted onboarding (not proof of completion)."""
    attempt = session.get(ConnectionAttempt, attempt_id)
    if attempt is not None and attempt.returned_at is None:
        attempt.returned_at = utcnow()
    return attempt


def succeed_pending_for_account(session: Session, *, stripe_account_id: str) -> None:
    """Onboarding finished (seen on the account): close its pending link attempts."""
    ids = session.scalars(
        select(ConnectionAttempt.id).where(
            ConnectionAttempt.stripe_account_id == stripe_account_id,
            ConnectionAttempt.outcome == AttemptOutcome.PENDING.value,
            ConnectionAttempt.method == ConnectionMethod.ACCOUNT_LINK.value,
        )
    ).all()
    for attempt_id in ids:
        finish_attempt(session, attempt_id=attempt_id, outcome=AttemptOutcome.SUCCEEDED)


def abandon_stale_attempts(session: Session, *, now: datetime | None = None) -> int:
    """Mark attempts pending for longer than ``ABANDON_AFTER`` as abandoned; returns how many."""
    cutoff = (now or utcnow()) - ABANDON_AFTER
    result = session.execute(
        update(ConnectionAttempt)
        .where(ConnectionAttempt.outcome == AttemptOutcome.PENDING.value,
               ConnectionAttempt.started_at < cutoff)
        .values(outcome=AttemptOutcome.ABANDONED.value,
                failure_reason=FailureReason.ABANDONED.value, finished_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(rowcount(result) or 0)
