"""Stripe webhooks: receive, verify, store, then process (dj-stripe's order).

- Verification happens on the raw body with the SDK before anything touches the database.
- The event is stored by its Stripe id (unique): a duplicate delivery of a processed event is a
  no-op answered 200; a redelivery of a failed one is processed again.
- Processing is claimed with a lease (one conditional UPDATE), so two replicas receiving the same
  event at once process it once. The Stripe calls run outside any write transaction. A type
  that is only recorded (``RECORDED_ONLY``) is stored already processed: no claim, no finish.
- ``account.*`` and ``capability.updated`` events re-read the account from Stripe instead of
  trusting the payload, and the mirror upsert refuses older data: out-of-order delivery cannot
  regress the mirror.
- A failure is recorded on the row and re-raised so the HTTP layer answers 500 and Stripe retries.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from lib import audit
from lib.accounts import get_account, mark_deauthorized, upsert_account
from lib.bank_payouts import apply_payout_event
from lib.connect_flow import detach
from lib.connection_attempts import succeed_pending_for_account
from lib.db import utcnow
from lib.errors import (
    ConflictError,
    ConnectOpsError,
    NotFoundError,
    StripeAuthenticationError,
    StripeRequestError,
)
from lib.freelancers import find_by_account
from lib.models import WebhookEvent, WebhookStatus
from lib.payouts.webhooks import apply_transfer_event
from lib.roles import Action, Operator, authorize
from lib.settings import Settings
from lib.stripe_gateway import StripeGateway

logger = logging.getLogger(__name__)

#: A replica that took an event and died gives it up after this long.
PROCESSING_LEASE = timedelta(minutes=2)


class Endpoint(enum.StrEnum):
    PLATFORM = "platform"
    CONNECT = "connect"


class Intake(enum.StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True)
class IntakeResult:
    intake: Intake
    event_id: str
    needs_processing: bool


def _created(event: dict[str, Any]) -> datetime | None:
    created = event.get("created")
    return datetime.fromtimestamp(int(created), tz=UTC) if created else None


def store_event(
    session: Session, *, event: dict[str, Any], endpoint: Endpoint, settings: Settings,
) -> IntakeResult:
    """Store a verified event once; a mode mismatch is stored as ignored, never processed.

    A type that is only recorded (nothing of ours depends on it) is stored already processed,
    in this one transaction: claiming and finishing it would be two more commits for no work.
    """
    event_id = str(event["id"])
    type_ = str(event.get("type", ""))[:100]
    livemode = bool(event.get("livemode"))
    mode_ok = livemode == settings.livemode
    recorded_only = mode_ok and type_ in RECORDED_ONLY
    if not mode_ok:
        status = WebhookStatus.IGNORED
    elif recorded_only:
        status = WebhookStatus.PROCESSED
    else:
        status = WebhookStatus.RECEIVED
    row = WebhookEvent(
        stripe_event_id=event_id, type=type_,
        endpoint=endpoint.value, account=event.get("account"), livemode=livemode,
        stripe_created=_created(event), payload=event, status=status.value,
        attempts=1 if recorded_only else 0,
        processed_at=utcnow() if recorded_only else None,
        error=None if mode_ok else (
            f"{'live' if livemode else 'test'}-mode event on a "
            f"{'live' if settings.livemode else 'test'}-mode deployment"
        ),
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        existing = session.scalars(
            select(WebhookEvent).where(WebhookEvent.stripe_event_id == event_id)
        ).one()
        pending = existing.status in (WebhookStatus.RECEIVED.value, WebhookStatus.FAILED.value)
        return IntakeResult(Intake.DUPLICATE, event_id, needs_processing=pending)
    if not mode_ok:
        logger.warning("ignored webhook %s: %s", event_id, row.error)
        return IntakeResult(Intake.IGNORED, event_id, needs_processing=False)
    return IntakeResult(Intake.STORED, event_id, needs_processing=not recorded_only)


def _claim(session_factory: sessionmaker[Session], event_id: str) -> dict[str, Any] | None:
    now = utcnow()
    with session_factory.begin() as session:
        claimed = session.execute(
            update(WebhookEvent)
            .where(
                WebhookEvent.stripe_event_id == event_id,
                or_(
                    WebhookEvent.status.in_(
                        [WebhookStatus.RECEIVED.value, WebhookStatus.FAILED.value]
                    ),
                    (WebhookEvent.status == WebhookStatus.PROCESSING.value)
                    & (WebhookEvent.processing_started_at < now - PROCESSING_LEASE),
                ),
            )
            .values(status=WebhookStatus.PROCESSING.value, processing_started_at=now,
                    attempts=WebhookEvent.attempts + 1)
            .returning(WebhookEvent.payload)
            .execution_options(synchronize_session=False)
        ).first()
    return dict(claimed[0]) if claimed else None


def _finish(
    session_factory: sessionmaker[Session], event_id: str, status: WebhookStatus,
    note: str | None = None,
) -> None:
    with session_factory.begin() as session:
        session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.stripe_event_id == event_id)
            .values(status=status.value, error=note, processed_at=utcnow(),
                    processing_started_at=None)
            .execution_options(synchronize_session=False)
        )


Handler = Callable[[sessionmaker[Session], StripeGateway, dict[str, Any]], str | None]


def process_event(
    session_factory: sessionmaker[Session], *, gateway: StripeGateway, event_id: str,
) -> WebhookStatus | None:
    """Process a stored event once; None when another worker has it or it is done."""
    event = _claim(session_factory, event_id)
    if event is None:
        return None
    handler = HANDLERS.get(str(event.get("type")))
    try:
        note = handler(session_factory, gateway, event) if handler else "no handler for this type"
    except ConnectOpsError as exc:
        # Our own errors (Stripe unreachable, bad data): record and let Stripe retry.
        _finish(session_factory, event_id, WebhookStatus.FAILED, f"{exc.code}: {exc.message}")
        logger.warning("webhook %s failed: %s", event_id, exc.code)
        raise
    status = WebhookStatus.IGNORED if note and note.startswith("ignored") else WebhookStatus.PROCESSED
    _finish(session_factory, event_id, status, note)
    return status


def record_failure(session_factory: sessionmaker[Session], *, event_id: str, error: str) -> None:
    """Record an unexpected processing failure on the row (the HTTP layer answers 500)."""
    _finish(session_factory, event_id, WebhookStatus.FAILED, error[:2000])


# ---- handlers ----------------------------------------------------------------------------------


def _account_id(event: dict[str, Any]) -> str | None:
    if event.get("account"):
        return str(event["account"])
    obj = (event.get("data") or {}).get("object") or {}
    if obj.get("object") == "account":
        return str(obj.get("id"))
    return None


def _is_ours(session: Session, account_id: str) -> bool:
    return (find_by_account(session, stripe_account_id=account_id) is not None
            or get_account(session, stripe_id=account_id) is not None)


def _refresh_account(
    session_factory: sessionmaker[Session], gateway: StripeGateway, event: dict[str, Any]
) -> str | None:
    account_id = _account_id(event)
    if not account_id:
        return "ignored: event names no account"
    with session_factory() as session:
        if not _is_ours(session, account_id):
            return f"ignored: {account_id} is not connected to any freelancer"
    fetched_at = utcnow()
    account = gateway.retrieve_account(account_id).data
    with session_factory.begin() as session:
        upsert_account(session, account=account, fetched_at=fetched_at)
        if account.get("details_submitted"):
            succeed_pending_for_account(session, stripe_account_id=account_id)
    return None


def _deauthorized(
    session_factory: sessionmaker[Session], gateway: StripeGateway, event: dict[str, Any]
) -> str | None:
    account_id = _account_id(event)
    if not account_id:
        return "ignored: event names no account"
    created = _created(event)
    with session_factory() as session:
        freelancer = find_by_account(session, stripe_account_id=account_id)
        connected_at = freelancer.connected_at if freelancer is not None else None
    if freelancer is not None and _predates(created, connected_at):
        # A late event from before the current connection must not undo a reconnect.
        return "ignored: deauthorization predates the current connection"
    if freelancer is not None and _still_connected(gateway, account_id):
        return "ignored: Stripe still grants access to this account (stale event)"
    with session_factory.begin() as session:
        mark_deauthorized(session, stripe_id=account_id, at=created)
        freelancer = find_by_account(session, stripe_account_id=account_id)
        if freelancer is None:
            return f"ignored: {account_id} is not connected to any freelancer"
        detach(session, freelancer=freelancer, at=created)
        audit.record(session, actor="stripe-webhook", action="connect.deauthorized",
                     result="disconnected", target=f"freelancer:{freelancer.id}",
                     input={"account": account_id, "event": event.get("id")})
    return None


def _predates(created: datetime | None, connected_at: datetime | None) -> bool:
    # Event times are whole seconds: only a full second earlier is provably older.
    return bool(created and connected_at and created < connected_at.replace(microsecond=0))


def _still_connected(gateway: StripeGateway, account_id: str) -> bool:
    """Ask Stripe: an account we can still read is still connected."""
    try:
        gateway.retrieve_account(account_id)
    except (StripeRequestError, StripeAuthenticationError):
        return False
    return True


def _transfer_event(
    session_factory: sessionmaker[Session], gateway: StripeGateway, event: dict[str, Any]
) -> str | None:
    # The payout engine owns the ledger; this module only routes the event to it.
    return apply_transfer_event(session_factory, gateway=gateway, event=event)


def _recorded_only(
    _session_factory: sessionmaker[Session], _gateway: StripeGateway, _event: dict[str, Any]
) -> str | None:
    # Stored for the dashboard's event view; nothing in our state depends on it.
    return None


HANDLERS: dict[str, Handler] = {
    "account.updated": _refresh_account,
    "capability.updated": _refresh_account,
    "account.application.authorized": _refresh_account,
    "account.application.deauthorized": _deauthorized,
    "transfer.created": _transfer_event,
    "transfer.updated": _transfer_event,
    "transfer.reversed": _transfer_event,
    # Connected accounts' payouts to their bank: kept for the Failed bank payouts page.
    "payout.created": apply_payout_event,
    "payout.updated": apply_payout_event,
    "payout.paid": apply_payout_event,
    "payout.failed": apply_payout_event,
    "payout.canceled": apply_payout_event,
    "balance.available": _recorded_only,
}
#: Types stored already processed by :func:`store_event` (no claim, no second transaction).
RECORDED_ONLY = frozenset(kind for kind, handler in HANDLERS.items() if handler is _recorded_only)


# ---- operator actions ---------------------------------------------------------------------------


def replay_event(
    session_factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    event_id: str,
) -> WebhookStatus | None:
    """Process a failed (or ignored-by-error) stored event again, from the dashboard."""
    authorize(operator, Action.REPLAY_WEBHOOK, session=session_factory)
    with session_factory.begin() as session:
        row = session.scalars(
            select(WebhookEvent).where(WebhookEvent.stripe_event_id == event_id)
        ).one_or_none()
        if row is None:
            raise NotFoundError(f"No stored event {event_id}.")
        if row.status != WebhookStatus.FAILED.value:
            raise ConflictError(f"Event {event_id} is {row.status}; only failed events replay.")
        audit.record(session, actor=operator, action="webhook.replay", result="requested",
                     target=event_id)
    return process_event(session_factory, gateway=gateway, event_id=event_id)
