"""Stripe webhooks: receive, verify, store — then a worker processes (dj-stripe's order).

Intake (the HTTP request, ``server/routes/webhooks.py``) does only what Stripe's 2xx needs:
the signature is verified on the raw body with the SDK, and the event is stored by its Stripe
id in one INSERT … ON CONFLICT DO NOTHING and one commit. No handler runs and Stripe is never
called in the request: a slow answer counts as a failed delivery at Stripe. A redelivery is a
no-op whatever state the stored event is in, so an event not yet processed is never lost and
never an error. A type only recorded (``RECORDED_ONLY``) is stored already processed.

Processing (``lib.worker``) claims due events under a lease (:func:`claim_due`): on PostgreSQL
``SELECT … FOR UPDATE SKIP LOCKED`` then an UPDATE in the same short transaction, so several
workers never take the same row; on SQLite the transaction begins IMMEDIATE, which serialises
claims. Each claim writes a fresh ``lease_token`` and only its holder may record the outcome,
so a worker whose lease expired (it stalled, or died and the event was taken over) cannot
overwrite a newer attempt. The worker renews its leases while it runs; a killed worker's
expire and the events are claimed again.

A failure of any kind (a Stripe error, a bug's exception) is recorded on the row and retried
with exponential backoff and jitter (:class:`RetryPolicy`); after ``max_attempts`` the event
is dead-lettered (``dead``) and shown on the Webhooks page, where a person replays it. A
worker that stops while holding an event (crash, kill) uses up an attempt too, so an event
that kills every worker is dead-lettered instead of killing them forever.

``account.*`` and ``capability.updated`` events re-read the account from Stripe instead of
trusting the payload, and the mirror upsert refuses older data: out-of-order delivery cannot
regress the mirror. Every handler is safe to run twice (a lease that expired under a stalled
worker), which is also what Stripe's at-least-once delivery demands.
"""

from __future__ import annotations

import enum
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from lib import audit
from lib.accounts import get_account, mark_deauthorized, upsert_account
from lib.bank_payouts import apply_payout_event
from lib.connection_attempts import succeed_pending_for_account
from lib.db import utcnow
from lib.dml import rowcount
from lib.errors import (
    ConflictError,
    ConnectOpsError,
    NotFoundError,
    StripeAccountAccessError,
    StripeRequestError,
)
from lib.freelancer_connection import detach
from lib.freelancers import find_by_account
from lib.logging_setup import mask_secrets
from lib.models import WebhookEvent, WebhookStatus
from lib.payouts.webhooks import apply_transfer_event
from lib.roles import Action, Operator, authorize
from lib.settings import Settings
from lib.stripe_gateway import StripeGateway

logger = logging.getLogger(__name__)

#: How long a claim holds an event unless renewed (``WORKER_LEASE_SECONDS`` overrides it).
DEFAULT_LEASE = timedelta(minutes=2)
#: Statuses the worker claims once ``next_attempt_at`` has come.
WAITING = (WebhookStatus.RECEIVED.value, WebhookStatus.FAILED.value)
#: Statuses no processing ever leaves.
TERMINAL = frozenset({WebhookStatus.PROCESSED, WebhookStatus.IGNORED})
MAX_ERROR_CHARS = 2000


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


def _created(event: dict[str, Any]) -> datetime | None:
    created = event.get("created")
    return datetime.fromtimestamp(int(created), tz=UTC) if created else None


#: The intake's one statement per dialect, built once with bind parameters: building it from
#: literal values on every delivery cost more CPU than the INSERT itself (issue 18's bench).
_INTAKE_COLUMNS = ("stripe_event_id", "type", "endpoint", "account", "livemode",
                   "stripe_created", "received_at", "payload", "status", "attempts",
                   "processed_at", "next_attempt_at", "error")
_INTAKE_STATEMENTS: dict[str, Any] = {}


def _intake_statement(dialect: str) -> Any:
    statement = _INTAKE_STATEMENTS.get(dialect)
    if statement is None:
        table = WebhookEvent.__table__
        assert isinstance(table, Table)  # a declarative class maps one Table
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = (insert(table)
                     .values({name: bindparam(name, type_=table.c[name].type)
                              for name in _INTAKE_COLUMNS})
                     .on_conflict_do_nothing(index_elements=["stripe_event_id"])
                     .returning(table.c.id))
        _INTAKE_STATEMENTS[dialect] = statement
    return statement


def store_event(
    session: Session, *, event: dict[str, Any], endpoint: Endpoint, settings: Settings,
    now: datetime | None = None,
) -> IntakeResult:
    """Store a verified event once (a duplicate is a no-op); a mode mismatch is stored ignored.

    One statement: ``INSERT … ON CONFLICT (stripe_event_id) DO NOTHING RETURNING id``. A type that is only
    recorded is stored already processed, so the worker never has to claim it.
    """
    moment = now or utcnow()
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
    error = None if mode_ok else (
        f"{'live' if livemode else 'test'}-mode event on a "
        f"{'live' if settings.livemode else 'test'}-mode deployment"
    )
    connection = session.connection()
    values = {
        "stripe_event_id": event_id, "type": type_, "endpoint": endpoint.value,
        "account": event.get("account"), "livemode": livemode,
        "stripe_created": _created(event), "received_at": moment, "payload": event,
        "status": status.value, "attempts": 1 if recorded_only else 0,
        "processed_at": moment if recorded_only else None,
        "next_attempt_at": moment if status is WebhookStatus.RECEIVED else None,
        "error": error,
    }
    # RETURNING, not rowcount: psycopg reports rowcount -1 for it.
    inserted = connection.execute(_intake_statement(connection.dialect.name), values).first()
    if inserted is None:
        return IntakeResult(Intake.DUPLICATE, event_id)
    if not mode_ok:
        logger.warning("ignored webhook %s: %s", event_id, error)
        return IntakeResult(Intake.IGNORED, event_id)
    return IntakeResult(Intake.STORED, event_id)


# ---- retries -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long a failing event is retried before it is dead-lettered."""

    max_attempts: int = 10
    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)
    lease: timedelta = DEFAULT_LEASE

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(max_attempts=settings.webhook_max_attempts,
                   base=timedelta(seconds=settings.webhook_retry_base_seconds),
                   cap=timedelta(seconds=settings.webhook_retry_max_seconds),
                   lease=timedelta(seconds=settings.worker_lease_seconds))

    def backoff(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        """The wait after failed attempt number ``attempt`` (1-based): base × 2^(attempt-1),
        capped, times 1.0–1.5 so workers that failed together do not retry in step."""
        exponential: timedelta = self.base * (2 ** min(max(attempt, 1) - 1, 30))
        # Spreads retries; not a secret.
        spread = rng.uniform(1.0, 1.5) if rng is not None else random.uniform(1.0, 1.5)
        return min(exponential, self.cap) * spread


def describe_error(exc: BaseException) -> str:
    """What a failure records on the row: our own errors as they are; a bug by its class and
    message; a database error by its class only (its text carries SQL and parameters)."""
    if isinstance(exc, ConnectOpsError):
        text = f"{exc.code}: {exc.message}"
    elif isinstance(exc, SQLAlchemyError):
        cause = getattr(exc, "orig", None) or exc
        text = f"{type(exc).__name__} ({type(cause).__name__}) in the database"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return mask_secrets(text)[:MAX_ERROR_CHARS]


# ---- claims --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    """One attempt at one event, held under ``token`` until ``lease_expires_at``.

    One claim transaction writes one token on every row it takes: (event id, token) names the
    attempt; a later claim of the same event always has a new token.
    """

    event_id: str
    type: str
    payload: dict[str, Any]
    attempt: int
    token: str


def _lease_values(worker_id: str, now: datetime, lease: timedelta) -> dict[str, Any]:
    return {"status": WebhookStatus.PROCESSING.value, "processing_started_at": now,
            "lease_expires_at": now + lease, "lease_token": str(uuid.uuid4()),
            "leased_by": worker_id[:200], "attempts": WebhookEvent.attempts + 1,
            "next_attempt_at": None}


def _take(session: Session, ids: list[int], values: dict[str, Any]) -> list[Claim]:
    if not ids:
        return []
    rows = session.execute(
        update(WebhookEvent).where(WebhookEvent.id.in_(ids)).values(**values)
        .returning(WebhookEvent.stripe_event_id, WebhookEvent.type, WebhookEvent.payload,
                   WebhookEvent.attempts, WebhookEvent.lease_token)
        .execution_options(synchronize_session=False)
    ).all()
    return [Claim(str(row.stripe_event_id), str(row.type), dict(row.payload), int(row.attempts),
                  str(row.lease_token)) for row in rows]


def claim_due(
    factory: sessionmaker[Session], *, worker_id: str, policy: RetryPolicy,
    limit: int = 10, now: datetime | None = None,
) -> list[Claim]:
    """Claim up to ``limit`` due events for ``worker_id``: expired leases first, then the
    events waiting longest. Rows another worker is claiming are skipped, never waited for."""
    moment = now or utcnow()
    with factory.begin() as session:
        # A lease that expired: its worker died (or stalled past renewing). That attempt is
        # spent; an event that used them all this way is dead-lettered, not retried forever.
        expired = list(session.execute(
            select(WebhookEvent.id, WebhookEvent.attempts)
            .where(WebhookEvent.status == WebhookStatus.PROCESSING.value,
                   WebhookEvent.lease_expires_at < moment)
            .order_by(WebhookEvent.lease_expires_at).limit(limit)
            .with_for_update(skip_locked=True)
        ).all())
        spent = [event_id for event_id, attempts in expired if attempts >= policy.max_attempts]
        if spent:
            session.execute(
                update(WebhookEvent).where(WebhookEvent.id.in_(spent))
                .values(status=WebhookStatus.DEAD.value, lease_token=None,
                        lease_expires_at=None, next_attempt_at=None,
                        error=f"the worker processing it stopped during all "
                              f"{policy.max_attempts} attempts (lease expired)")
                .execution_options(synchronize_session=False))
            logger.error("webhook events %s dead-lettered: their workers kept stopping", spent)
        values = _lease_values(worker_id, moment, policy.lease)
        claims = _take(session, [i for i, a in expired if a < policy.max_attempts], {
            **values, "error": "the worker processing the previous attempt stopped before "
                               "it finished (lease expired)"})
        if len(claims) < limit:
            due = list(session.scalars(
                select(WebhookEvent.id)
                .where(WebhookEvent.status.in_(WAITING), WebhookEvent.next_attempt_at <= moment)
                .order_by(WebhookEvent.next_attempt_at, WebhookEvent.id)
                .limit(limit - len(claims))
                .with_for_update(skip_locked=True)
            ))
            claims += _take(session, due, values)
    return claims


def claim_event(
    factory: sessionmaker[Session], *, event_id: str, worker_id: str,
    policy: RetryPolicy, now: datetime | None = None,
) -> Claim | None:
    """Claim one stored event now, whatever its ``next_attempt_at`` (a replay); None when it
    is held by a live lease, finished or unknown."""
    moment = now or utcnow()
    with factory.begin() as session:
        held = session.execute(
            select(WebhookEvent.id, WebhookEvent.status, WebhookEvent.lease_expires_at)
            .where(WebhookEvent.stripe_event_id == event_id).with_for_update()
        ).first()
        if held is None:
            return None
        row_id, status, expires = held
        waiting = status in WAITING or status == WebhookStatus.DEAD.value
        if not waiting and not (status == WebhookStatus.PROCESSING.value and expires is not None
                                and expires < moment):
            return None
        claims = _take(session, [row_id], _lease_values(worker_id, moment, policy.lease))
    return claims[0] if claims else None


def renew_leases(
    factory: sessionmaker[Session], *, tokens: list[str], lease: timedelta,
    now: datetime | None = None,
) -> int:
    """Extend the leases this worker still holds (its heartbeat); returns how many."""
    if not tokens:
        return 0
    moment = now or utcnow()
    with factory.begin() as session:
        result = session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.lease_token.in_(tokens),
                   WebhookEvent.status == WebhookStatus.PROCESSING.value)
            .values(lease_expires_at=moment + lease)
            .execution_options(synchronize_session=False))
    return rowcount(result)


def _settle(
    factory: sessionmaker[Session], claim: Claim, values: dict[str, Any],
) -> bool:
    """Write an attempt's outcome if this claim still holds the event; False if it lost it."""
    with factory.begin() as session:
        result = session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.stripe_event_id == claim.event_id,
                   WebhookEvent.lease_token == claim.token,
                   WebhookEvent.status == WebhookStatus.PROCESSING.value)
            .values(lease_token=None, lease_expires_at=None, **values)
            .execution_options(synchronize_session=False))
    held = bool(rowcount(result))
    if not held:
        logger.warning("webhook %s: attempt %d lost its lease before it finished; the outcome "
                       "of the attempt that holds it now counts", claim.event_id, claim.attempt)
    return held


def release(factory: sessionmaker[Session], *, claims: list[Claim],
            now: datetime | None = None) -> int:
    """Give back claims that were never started (a worker stopping): due again at once, and
    the attempt they were charged is refunded."""
    moment = now or utcnow()
    given_back = 0
    for claim in claims:
        back = WebhookStatus.RECEIVED if claim.attempt <= 1 else WebhookStatus.FAILED
        if _settle(factory, claim, {
            "status": back.value, "attempts": claim.attempt - 1, "next_attempt_at": moment,
        }):
            given_back += 1
    return given_back


# ---- processing ----------------------------------------------------------------------------------


Handler = Callable[[sessionmaker[Session], StripeGateway, dict[str, Any]], str | None]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt did: the status it left, and whether this claim still held the row."""

    event_id: str
    status: WebhookStatus
    recorded: bool
    note: str | None = None


def process_claim(
    factory: sessionmaker[Session], *, gateway: StripeGateway, claim: Claim,
    policy: RetryPolicy, rng: random.Random | None = None, now: datetime | None = None,
) -> Outcome:
    """Run the handler of one claimed event and record the outcome on the row.

    ``now`` (tests) is the time the outcome is recorded at; by default the clock's.
    """
    handler = HANDLERS.get(claim.type)
    try:
        note = handler(factory, gateway, claim.payload) if handler else (
            "no handler for this type")
    except Exception as exc:  # noqa: BLE001
        # The one broad catch of the product, and on purpose: whatever the handler raised (a
        # Stripe error, a lost database, a bug), the event must not be lost or left stuck. The
        # exception is recorded on the row it came from and the event is retried with backoff,
        # then dead-lettered for a person; a bug is logged with its traceback.
        return _record_failure(factory, claim, exc, policy, rng, now or utcnow())
    status = WebhookStatus.IGNORED if note and note.startswith("ignored") else (
        WebhookStatus.PROCESSED)
    recorded = _settle(factory, claim, {
        "status": status.value, "error": note, "processed_at": now or utcnow(),
    })
    return Outcome(claim.event_id, status, recorded, note)


def _record_failure(
    factory: sessionmaker[Session], claim: Claim, exc: Exception, policy: RetryPolicy,
    rng: random.Random | None, now: datetime,
) -> Outcome:
    error = describe_error(exc)
    if claim.attempt >= policy.max_attempts:
        status, next_at = WebhookStatus.DEAD, None
    else:
        status, next_at = WebhookStatus.FAILED, now + policy.backoff(claim.attempt, rng)
    if isinstance(exc, ConnectOpsError | SQLAlchemyError):
        # Stripe's or the database's trouble, not a bug: the class says it all.
        logger.warning("webhook %s (%s) attempt %d failed: %s", claim.event_id, claim.type,
                       claim.attempt, error)
    else:
        logger.error("webhook %s (%s) attempt %d raised %s", claim.event_id, claim.type,
                     claim.attempt, type(exc).__name__, exc_info=exc)
    if status is WebhookStatus.DEAD:
        logger.error("webhook %s dead-lettered after %d attempts", claim.event_id, claim.attempt)
    recorded = _settle(factory, claim, {
        "status": status.value, "error": error, "next_attempt_at": next_at,
    })
    return Outcome(claim.event_id, status, recorded, error)


def process_event(
    factory: sessionmaker[Session], *, gateway: StripeGateway, event_id: str,
    worker_id: str, policy: RetryPolicy | None = None,
) -> Outcome | None:
    """Claim one stored event now and process it; None when someone else holds it or it is
    already finished."""
    chosen = policy or RetryPolicy()
    claim = claim_event(factory, event_id=event_id, worker_id=worker_id, policy=chosen)
    if claim is None:
        return None
    return process_claim(factory, gateway=gateway, claim=claim, policy=chosen)


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
    factory: sessionmaker[Session], gateway: StripeGateway, event: dict[str, Any]
) -> str | None:
    account_id = _account_id(event)
    if not account_id:
        return "ignored: event names no account"
    with factory() as session:
        if not _is_ours(session, account_id):
            return f"ignored: {account_id} is not connected to any freelancer"
    fetched_at = utcnow()
    account = gateway.retrieve_account(account_id).data
    with factory.begin() as session:
        upsert_account(session, account=account, fetched_at=fetched_at)
        if account.get("details_submitted"):
            succeed_pending_for_account(session, stripe_account_id=account_id)
    return None


def _deauthorized(
    factory: sessionmaker[Session], gateway: StripeGateway, event: dict[str, Any]
) -> str | None:
    account_id = _account_id(event)
    if not account_id:
        return "ignored: event names no account"
    created = _created(event)
    with factory() as session:
        freelancer = find_by_account(session, stripe_account_id=account_id)
        connected_at = freelancer.connected_at if freelancer is not None else None
    if freelancer is not None and _predates(created, connected_at):
        # A late event from before the current connection must not undo a reconnect.
        return "ignored: deauthorization predates the current connection"
    if freelancer is not None and _still_connected(gateway, account_id):
        return "ignored: Stripe still grants access to this account (stale event)"
    with factory.begin() as session:
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
    """Ask Stripe: an account we can still read is still connected.

    Only Stripe's refusal of this account (403 ``account_invalid``) or its absence means the
    connection is gone; a refused platform key says nothing about it and fails the event (it
    is retried), instead of detaching every freelancer whose event arrives meanwhile.
    """
    try:
        gateway.retrieve_account(account_id)
    except (StripeAccountAccessError, StripeRequestError):
        return False
    return True


def _transfer_event(
    factory: sessionmaker[Session], gateway: StripeGateway, event: dict[str, Any]
) -> str | None:
    # The payout engine owns the ledger; this module only routes the event to it.
    return apply_transfer_event(factory, gateway=gateway, event=event)


def _recorded_only(
    _factory: sessionmaker[Session], _gateway: StripeGateway, _event: dict[str, Any]
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
    factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    event_id: str, policy: RetryPolicy | None = None,
) -> Outcome | None:
    """Process a failed or dead-lettered event again now, from the dashboard.

    A dead letter gets a fresh set of attempts (a person decided to try again); if this try
    fails too, the worker retries it with backoff as any other failure.
    """
    with factory() as session:
        authorize(operator, Action.REPLAY_WEBHOOK, session=session)
    with factory.begin() as session:
        row = session.scalars(
            select(WebhookEvent).where(WebhookEvent.stripe_event_id == event_id)
        ).one_or_none()
        if row is None:
            raise NotFoundError(f"No stored event {event_id}.")
        if row.status not in (WebhookStatus.FAILED.value, WebhookStatus.DEAD.value):
            raise ConflictError(f"Event {event_id} is {row.status}; only failed or "
                                f"dead-lettered events replay.")
        if row.status == WebhookStatus.DEAD.value:
            row.attempts = 0
        audit.record(session, actor=operator, action="webhook.replay", result="requested",
                     target=event_id, input={"status": row.status})
    return process_event(factory, gateway=gateway, event_id=event_id,
                         worker_id=f"replay:{operator.username}", policy=policy)
