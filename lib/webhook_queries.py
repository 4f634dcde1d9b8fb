"""Reading stored webhook events for the dashboard: the last event per type, and failures
(events the worker is retrying and dead letters waiting for a person).

The aggregation is SQL (one GROUP BY per question), so the page stays fast however many events
Stripe has sent. A failure's ``error`` is what processing recorded on the row (already free of
secrets: it is a domain error message, never a payload).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Executable, Result, String, func, literal, select, text, union_all
from sqlalchemy.orm import Session

from lib.models import WebhookEvent, WebhookStatus
from lib.paging import check_page
from lib.records import as_row
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
        return as_row(self)


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
        return as_row(self)


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
    pairs = []
    for row in read(session, "events", group=("k1", "k2")):
        received[row.k1] = received.get(row.k1, 0) + row.n
        pairs.append((row.k1, row.k2))
        if row.k2 in NEEDS_ATTENTION:
            failed[row.k1] = failed.get(row.k1, 0) + row.n
    if not received:
        return []
    last_ids: dict[str, int] = {}
    # (type, newest id or NULL) per pair.
    newest: Result[str, int | None] = session.execute(_newest_per_pair(session, pairs))
    for t, found in newest:
        if found is not None:
            last_ids[str(t)] = max(int(found), last_ids.get(str(t), 0))
    events = {e.id: e for e in session.scalars(
        select(WebhookEvent).where(WebhookEvent.id.in_(list(last_ids.values()))))}
    rows = [
        EventTypeRow(type=t, received=received[t], failed=failed.get(t, 0),
                     last_received_at=events[i].received_at,
                     last_event_id=events[i].stripe_event_id, last_status=events[i].status,
                     last_account=events[i].account)
        for t, i in last_ids.items() if i in events
    ]
    return sorted(rows, key=lambda r: (-(r.last_received_at.timestamp()
                                         if r.last_received_at else 0), r.type))


#: PostgreSQL: the pairs as arrays, each one correlated seek, planned once (a UNION of 54
#: seeks spent 5.5 ms planning them at 1M events, to run for 2).
_NEWEST_PER_PAIR = text(
    "SELECT pair.type, (SELECT max(e.id) FROM webhook_events e WHERE e.type = pair.type "
    "AND e.status = pair.status) FROM unnest(CAST(:types AS text[]), "
    "CAST(:statuses AS text[])) AS pair (type, status)")


def _newest_per_pair(session: Session, pairs: list[tuple[str, str]]) -> Executable:
    """The newest id of each (type, status): one seek to the end of its range of the
    (type, status, id) index (a max over a whole type read every status's entries)."""
    if session.get_bind().dialect.name == "postgresql":
        return _NEWEST_PER_PAIR.bindparams(types=[t for t, _ in pairs],
                                           statuses=[status for _, status in pairs])
    newest = [select(literal(t, String()).label("type"), func.max(WebhookEvent.id).label("id"))
              .where(WebhookEvent.type == t, WebhookEvent.status == status)
              for t, status in pairs]
    return union_all(*newest) if len(newest) > 1 else newest[0]


def failed_events(
    session: Session, *, operator: Operator, limit: int = 50, offset: int = 0
) -> FailedPage:
    """Events whose processing failed (being retried, or dead-lettered), newest first, with
    the recorded error."""
    authorize(operator, Action.VIEW_WEBHOOKS, session=session)
    check_page(limit, offset, maximum=MAX_PAGE)
    total = sum(row.n for row in read(session, "events", group=("k2",),
                                      where={"k2": NEEDS_ATTENTION}))
    newest_first = (WebhookEvent.received_at.desc(), WebhookEvent.id.desc())
    # Each status's newest rows by one backward seek of (status, received_at), then merged:
    # with "status IN (…)" PostgreSQL walked received_at backwards past every processed event
    # (15,000 of them at 1M events) to find 50 failures.
    per_status = [
        select(WebhookEvent.id, WebhookEvent.received_at)
        .where(WebhookEvent.status == status).order_by(*newest_first)
        .limit(offset + limit).subquery()
        for status in NEEDS_ATTENTION
    ]
    candidates = union_all(*[select(part.c.id, part.c.received_at) for part in per_status])
    merged = candidates.subquery()
    page_ids = (select(merged.c.id).order_by(merged.c.received_at.desc(), merged.c.id.desc())
                .limit(limit).offset(offset))
    events = session.scalars(
        select(WebhookEvent).where(WebhookEvent.id.in_(page_ids)).order_by(*newest_first))
    rows = [
        FailedEventRow(stripe_event_id=e.stripe_event_id, type=e.type, endpoint=e.endpoint,
                       account=e.account, received_at=e.received_at, attempts=e.attempts,
                       error=e.error, state=_STATE.get(e.status, e.status),
                       next_attempt_at=e.next_attempt_at)
        for e in events
    ]
    return FailedPage(rows=rows, total=int(total))
