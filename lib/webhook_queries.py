"""Reading stored webhook events for the dashboard: the last event per type, and failures
(events the worker is retrying and dead letters waiting for a person).

The aggregation is SQL (one GROUP BY per question), so the page stays fast however many events
Stripe has sent. A failure's ``error`` is what processing recorded on the row (already free of
secrets: it is a domain error message, never a payload).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, func, literal, select, union_all
from sqlalchemy.orm import Session, aliased

from lib.models import WebhookEvent, WebhookStatus
from lib.paging import check_page
from lib.roles import Action, Operator, authorize
from lib.summaries.store import read

MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class EventTypeRow:
    """One event type: how many arrived, how many failed, and the latest one."""

    type: str
    received: int
    failed: int
    last_received_at: datetime | None
    last_event_id: str
    last_status: str
    last_account: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: What the failures list holds: retried by the worker (failed) or waiting for a person (dead).
NEEDS_ATTENTION = (WebhookStatus.FAILED.value, WebhookStatus.DEAD.value)
_STATE = {WebhookStatus.FAILED.value: "retrying", WebhookStatus.DEAD.value: "dead letter"}


@dataclass(frozen=True, slots=True)
class FailedEventRow:
    stripe_event_id: str
    type: str
    endpoint: str
    account: str | None
    received_at: datetime
    attempts: int
    error: str | None
    #: "retrying" (the worker tries again at ``next_attempt_at``) or "dead letter".
    state: str = "retrying"
    next_attempt_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class FailedPage:
    rows: list[FailedEventRow]
    total: int


def last_events_per_type(session: Session, *, operator: Operator) -> list[EventTypeRow]:
    """Per event type: counts and the most recently received event, newest type first.

    The counts per type and status come from the ``events`` summary (issue 22: one row per type
    and status, whatever the log's size); the latest event of each type is one read of the
    ``(type, status, id)`` index per type.
    """
    authorize(operator, Action.VIEW_WEBHOOKS, session=session)
    received: dict[str, int] = {}
    failed: dict[str, int] = {}
    for row in read(session, "events", group=("k1", "k2")):
        received[row.k1] = received.get(row.k1, 0) + row.n
        if row.k2 in NEEDS_ATTENTION:
            failed[row.k1] = failed.get(row.k1, 0) + row.n
    if not received:
        return []
    names = [select(literal(name, String()).label("value")) for name in sorted(received)]
    listed = (union_all(*names) if len(names) > 1 else names[0]).subquery()
    inner = aliased(WebhookEvent)
    last_id = (select(func.max(inner.id)).where(inner.type == listed.c.value)
               .scalar_subquery())
    statement = (
        select(listed.c.value, WebhookEvent)
        .join(WebhookEvent, WebhookEvent.id == last_id)
        .order_by(WebhookEvent.received_at.desc(), listed.c.value)
    )
    return [
        EventTypeRow(type=t, received=received[t], failed=failed.get(t, 0),
                     last_received_at=event.received_at, last_event_id=event.stripe_event_id,
                     last_status=event.status, last_account=event.account)
        for t, event in session.execute(statement)
    ]


def failed_events(
    session: Session, *, operator: Operator, limit: int = 50, offset: int = 0
) -> FailedPage:
    """Events whose processing failed (being retried, or dead-lettered), newest first, with
    the recorded error."""
    authorize(operator, Action.VIEW_WEBHOOKS, session=session)
    check_page(limit, offset, maximum=MAX_PAGE)
    where = WebhookEvent.status.in_(NEEDS_ATTENTION)
    total = sum(row.n for row in read(session, "events", group=("k2",),
                                      where={"k2": NEEDS_ATTENTION}))
    events = session.scalars(
        select(WebhookEvent).where(where)
        .order_by(WebhookEvent.received_at.desc(), WebhookEvent.id.desc())
        .limit(limit).offset(offset)
    )
    rows = [
        FailedEventRow(stripe_event_id=e.stripe_event_id, type=e.type, endpoint=e.endpoint,
                       account=e.account, received_at=e.received_at, attempts=e.attempts,
                       error=e.error, state=_STATE.get(e.status, e.status),
                       next_attempt_at=e.next_attempt_at)
        for e in events
    ]
    return FailedPage(rows=rows, total=int(total))
