"""Recent connection links (OAuth URLs and onboarding links) with a status a person understands.

A link's stored ``outcome`` says only pending/succeeded/failed/abandoned; the dashboard also
needs to know that a pending link can no longer be used. So the shown status is derived here:
a pending attempt whose link expired is ``expired``, one pending for longer than
``ABANDON_AFTER`` is ``abandoned`` (what the nightly sweep would write), otherwise the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lib.connection_attempts import ABANDON_AFTER
from lib.db import utcnow
from lib.errors import ValidationError
from lib.models import AttemptOutcome, ConnectionAttempt, Freelancer
from lib.records import as_row
from lib.roles import Action, Operator, authorize

MAX_LINKS = 500
EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class LinkRow:
    attempt_id: int
    started_at: datetime
    freelancer_id: int
    freelancer_name: str
    freelancer_email: str
    method: str
    issued_by: str
    status: str
    link_expires_at: datetime | None
    returned_at: datetime | None
    finished_at: datetime | None
    failure_reason: str | None
    stripe_account_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return as_row(self)


def link_status(attempt: ConnectionAttempt, *, now: datetime) -> str:
    """pending / succeeded / failed / abandoned / expired, as the page shows it."""
    if attempt.outcome != AttemptOutcome.PENDING.value:
        return attempt.outcome
    if attempt.started_at < now - ABANDON_AFTER:
        return AttemptOutcome.ABANDONED.value
    if attempt.link_expires_at is not None and attempt.link_expires_at <= now \
            and attempt.returned_at is None:
        return EXPIRED
    return AttemptOutcome.PENDING.value


def recent_links(
    session: Session, *, operator: Operator, limit: int = 50, freelancer_id: int | None = None,
    now: datetime | None = None,
) -> list[LinkRow]:
    """The newest issued links (optionally of one freelancer), newest first."""
    authorize(operator, Action.GENERATE_LINK, session=session)
    if not 1 <= limit <= MAX_LINKS:
        raise ValidationError(f"Show 1 to {MAX_LINKS} links.")
    moment = now or utcnow()
    statement = (
        select(ConnectionAttempt, Freelancer)
        .join(Freelancer, Freelancer.id == ConnectionAttempt.freelancer_id)
        .order_by(ConnectionAttempt.started_at.desc(), ConnectionAttempt.id.desc())
        .limit(limit)
    )
    if freelancer_id is not None:
        statement = statement.where(ConnectionAttempt.freelancer_id == freelancer_id)
    return [
        LinkRow(
            attempt_id=a.id, started_at=a.started_at, freelancer_id=f.id,
            freelancer_name=f.name, freelancer_email=f.email, method=a.method,
            issued_by=a.issued_by, status=link_status(a, now=moment),
            link_expires_at=a.link_expires_at, returned_at=a.returned_at,
            finished_at=a.finished_at, failure_reason=a.failure_reason,
            stripe_account_id=a.stripe_account_id,
        )
        for a, f in session.execute(statement)
    ]
