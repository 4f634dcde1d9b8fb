"""The outbox: every outgoing message (outreach email, alert, digest) is a row first.

**Written with the decision.** Whoever decides to send (an operator's outreach batch, an alert
rule opening an episode) calls :func:`enqueue` in the same transaction as the decision's own
rows: both commit or neither does, so a crash can neither send a message nobody recorded nor
record a send that never goes out. ``dedupe_key`` is unique: rerunning a decision (a double
click, a page rerun, a retried job, two workers evaluating the same rule) finds the message
already written and writes nothing.

**Delivered by the worker.** ``python -m lib.worker`` claims due messages under a lease (as it
claims webhook events: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, an IMMEDIATE transaction on
SQLite), renders what must be made at the last moment (an outreach email's single-use link:
the database never holds a usable link), hands the message to SMTP or the chat webhook, and
records the outcome under the claim's token. A failure is recorded on the row with its error
and retried with exponential backoff and jitter; a permanent refusal (an SMTP 5xx) or the last
attempt makes it ``dead``, shown on the Outbox page where an admin retries it.

**Delivered once.** One claim holds a message at a time, and a sent message is never claimed
again. The one window nothing can close is a worker dying after the server accepted the
message and before ``sent`` is committed: after the lease the message is sent again rather
than lost, with the same ``Message-ID`` (derived from the row), which mail systems use to drop
the duplicate. The worker also paces its sending (``OUTBOX_RATE_PER_MINUTE``): a batch of 200
emails leaves at a rate SMTP providers accept.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from lib import audit, messaging
from lib.db import utcnow
from lib.dml import rowcount
from lib.errors import ConflictError, NotFoundError, ValidationError
from lib.messaging import DeliveryError, Email
from lib.models import MessageChannel, MessageKind, MessageStatus, OutboxMessage
from lib.paging import check_page
from lib.records import as_row
from lib.roles import Action, Operator, authorize
from lib.settings import Settings
from lib.webhooks import describe_error

logger = logging.getLogger(__name__)

#: Statuses the worker claims once ``next_attempt_at`` has come.
WAITING = (MessageStatus.PENDING.value, MessageStatus.FAILED.value)
MAX_SUBJECT = 300
MAX_PAGE = 200


# ---- writing ----------------------------------------------------------------------------------


def enqueue(
    session: Session, *, dedupe_key: str, kind: MessageKind, channel: MessageChannel,
    recipient: str, subject: str, body_text: str, body_html: str | None = None,
    payload: dict[str, Any] | None = None, created_by: str, now: datetime | None = None,
) -> tuple[int, bool]:
    """Write a message in the caller's transaction; ``(id, False)`` if the key exists already."""
    if not dedupe_key or len(dedupe_key) > 255:
        raise ValidationError("A message needs a dedupe key of at most 255 characters.")
    if not recipient:
        raise ValidationError("A message needs a recipient.")
    moment = now or utcnow()
    table = OutboxMessage.__table__
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    inserted = session.execute(
        insert(table).values(
            dedupe_key=dedupe_key, kind=kind.value, channel=channel.value,
            recipient=recipient[:320], subject=" ".join(subject.split())[:MAX_SUBJECT],
            body_text=body_text, body_html=body_html, payload=payload or {},
            status=MessageStatus.PENDING.value, attempts=0, next_attempt_at=moment,
            created_by=created_by[:200], created_at=moment,
        ).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(table.c.id)
    ).first()
    if inserted is not None:
        return int(inserted[0]), True
    existing = session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == dedupe_key))
    assert existing is not None
    return int(existing), False


# ---- retries ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxPolicy:
    """How often and how long a failing message is retried before it is dead."""

    max_attempts: int = 8
    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)
    lease: timedelta = timedelta(minutes=2)

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboxPolicy:
        return cls(max_attempts=settings.outbox_max_attempts,
                   base=timedelta(seconds=settings.outbox_retry_base_seconds),
                   cap=timedelta(seconds=settings.outbox_retry_max_seconds),
                   lease=timedelta(seconds=settings.worker_lease_seconds))

    def backoff(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        """base × 2^(attempt-1), capped, times 1.0–1.5 (workers that failed together spread)."""
        doubling: int = 2 ** min(max(attempt, 1) - 1, 30)  # int ** int is typed Any (could be < 1)
        exponential = self.base * doubling
        spread = rng.uniform(1.0, 1.5) if rng is not None else random.uniform(1.0, 1.5)
        return min(exponential, self.cap) * spread


# ---- claims -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageClaim:
    """One delivery attempt of one message, held under ``token``."""

    id: int
    dedupe_key: str
    kind: str
    channel: str
    recipient: str
    subject: str
    body_text: str
    body_html: str | None
    payload: dict[str, Any]
    attempt: int
    token: str


_CLAIM_COLUMNS = (OutboxMessage.id, OutboxMessage.dedupe_key, OutboxMessage.kind,
                  OutboxMessage.channel, OutboxMessage.recipient, OutboxMessage.subject,
                  OutboxMessage.body_text, OutboxMessage.body_html, OutboxMessage.payload,
                  OutboxMessage.attempts, OutboxMessage.lease_token)


def _take(session: Session, ids: list[int], worker_id: str, moment: datetime,
          lease: timedelta, note: str | None = None) -> list[MessageClaim]:
    if not ids:
        return []
    values: dict[str, Any] = {
        "status": MessageStatus.SENDING.value, "lease_token": str(uuid.uuid4()),
        "lease_expires_at": moment + lease, "leased_by": worker_id[:200],
        "attempts": OutboxMessage.attempts + 1, "next_attempt_at": None}
    if note is not None:
        values["last_error"] = note
    # The row is _CLAIM_COLUMNS, typed as the model's columns (a star-argument loses them).
    rows: Sequence[Row[int, str, str, str, str, str, str, str | None, dict[str, Any] | None, int,
                       str | None]] = session.execute(
        update(OutboxMessage).where(OutboxMessage.id.in_(ids)).values(**values)
        .returning(*_CLAIM_COLUMNS).execution_options(synchronize_session=False)).all()
    return [MessageClaim(int(i), str(k), str(kind), str(c), str(r), str(s), str(t), h,
                         dict(p or {}), int(a), str(token))
            for i, k, kind, c, r, s, t, h, p, a, token in rows]


def claim_due(
    factory: sessionmaker[Session], *, worker_id: str, policy: OutboxPolicy,
    limit: int = 1, now: datetime | None = None,
) -> list[MessageClaim]:
    """Claim up to ``limit`` due messages: expired leases first, then the longest waiting."""
    moment = now or utcnow()
    with factory.begin() as session:
        # A lease that expired: its worker died mid-send. That attempt is spent; the message
        # is sent again (same Message-ID) unless it used every attempt that way.
        expired = list(session.execute(
            select(OutboxMessage.id, OutboxMessage.attempts)
            .where(OutboxMessage.status == MessageStatus.SENDING.value,
                   OutboxMessage.lease_expires_at < moment)
            .order_by(OutboxMessage.lease_expires_at).limit(limit)
            .with_for_update(skip_locked=True)).all())
        spent = [i for i, attempts in expired if attempts >= policy.max_attempts]
        if spent:
            session.execute(
                update(OutboxMessage).where(OutboxMessage.id.in_(spent))
                .values(status=MessageStatus.DEAD.value, lease_token=None,
                        lease_expires_at=None, next_attempt_at=None,
                        last_error=f"the worker sending it stopped during all "
                                   f"{policy.max_attempts} attempts (lease expired)")
                .execution_options(synchronize_session=False))
            logger.error("outbox messages %s dead: their workers kept stopping", spent)
        claims = _take(session, [i for i, a in expired if a < policy.max_attempts], worker_id,
                       moment, policy.lease,
                       note="the worker sending the previous attempt stopped before it "
                            "finished (lease expired)")
        if len(claims) < limit:
            due = list(session.scalars(
                select(OutboxMessage.id)
                .where(OutboxMessage.status.in_(WAITING),
                       OutboxMessage.next_attempt_at <= moment)
                .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
                .limit(limit - len(claims)).with_for_update(skip_locked=True)))
            claims += _take(session, due, worker_id, moment, policy.lease)
    return claims


def claim_message(
    factory: sessionmaker[Session], *, message_id: int, worker_id: str,
    policy: OutboxPolicy, now: datetime | None = None,
) -> MessageClaim | None:
    """Claim one message now if it waits (the watchdog's own alert); None otherwise."""
    moment = now or utcnow()
    with factory.begin() as session:
        due = session.scalar(
            select(OutboxMessage.id)
            .where(OutboxMessage.id == message_id, OutboxMessage.status.in_(WAITING))
            .with_for_update(skip_locked=True))
        claims = _take(session, [due], worker_id, moment, policy.lease) if due else []
    return claims[0] if claims else None


def renew_leases(factory: sessionmaker[Session], *, tokens: list[str],
                 lease: timedelta, now: datetime | None = None) -> None:
    """Extend the leases of the messages this worker is sending (its heartbeat)."""
    if not tokens:
        return
    moment = now or utcnow()
    with factory.begin() as session:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.lease_token.in_(tokens),
                   OutboxMessage.status == MessageStatus.SENDING.value)
            .values(lease_expires_at=moment + lease)
            .execution_options(synchronize_session=False))


def _still_held(factory: sessionmaker[Session], claim: MessageClaim, now: datetime,
                lease: timedelta) -> bool:
    """True (and the lease renewed) while this claim's lease is live."""
    with factory.begin() as session:
        result = session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == claim.id, OutboxMessage.lease_token == claim.token,
                   OutboxMessage.status == MessageStatus.SENDING.value,
                   OutboxMessage.lease_expires_at >= now)
            .values(lease_expires_at=now + lease)
            .execution_options(synchronize_session=False))
    return bool(rowcount(result))


def _settle(factory: sessionmaker[Session], claim: MessageClaim,
            values: dict[str, Any]) -> bool:
    """Write the attempt's outcome if this claim still holds the message."""
    with factory.begin() as session:
        result = session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == claim.id, OutboxMessage.lease_token == claim.token,
                   OutboxMessage.status == MessageStatus.SENDING.value)
            .values(lease_token=None, lease_expires_at=None, **values)
            .execution_options(synchronize_session=False))
    held = bool(rowcount(result))
    if not held:
        logger.warning("outbox message %s: attempt %d lost its lease before it finished",
                       claim.id, claim.attempt)
    return held


# ---- delivering ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transports:
    """How messages leave (tests swap in fakes that fail on purpose)."""

    email: Callable[[Settings, Email], None] = messaging.send_email
    chat: Callable[[Settings, dict[str, Any]], None] = messaging.post_chat


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one attempt did."""

    message_id: int
    status: MessageStatus
    recorded: bool
    error: str | None = None


def _email_of(factory: sessionmaker[Session], settings: Settings, claim: MessageClaim,
              now: datetime) -> Email:
    message_id = messaging.message_id_for(claim.dedupe_key, settings.smtp_sender)
    if claim.kind == MessageKind.OUTREACH.value:
        # Imported here: lib.outreach writes to the outbox, the outbox finishes its emails.
        from lib.outreach import finish_outreach_email

        return finish_outreach_email(factory, settings=settings, claim=claim,
                                     message_id=message_id, now=now)
    return Email(to=claim.recipient, subject=claim.subject, text=claim.body_text,
                 html=claim.body_html, message_id=message_id)


def deliver(
    factory: sessionmaker[Session], *, settings: Settings, claim: MessageClaim,
    policy: OutboxPolicy, transports: Transports | None = None,
    rng: random.Random | None = None, now: datetime | None = None,
) -> Delivery:
    """Send a claimed message and record the outcome under its claim.

    The claim is checked (and its lease extended) just before the message is handed over: a
    worker that stalled past its lease finds the message taken over and sends nothing, instead
    of sending it a second time beside the worker that took it.
    """
    ways = transports or Transports()
    moment = now or utcnow()
    if not _still_held(factory, claim, moment, policy.lease):
        logger.warning("outbox message %s: attempt %d lost its lease before sending; not sent",
                       claim.id, claim.attempt)
        return Delivery(claim.id, MessageStatus.SENDING, False, "lease lost before sending")
    permanent = False
    try:
        if claim.channel == MessageChannel.CHAT.value:
            ways.chat(settings, claim.payload)
        else:
            ways.email(settings, _email_of(factory, settings, claim, moment))
    except DeliveryError as exc:
        error, permanent = describe_error(exc), exc.permanent
    except Exception as exc:
        # As for webhook events: whatever rendering or sending raised (a bug included) is
        # recorded on the row for a person to see, and the message is retried; the worker
        # goes on with the next one. Nothing here may lose or strand a message.
        error = describe_error(exc)
        logger.exception("outbox message %s: unexpected error while sending", claim.id)
    else:
        recorded = _settle(factory, claim, {
            "status": MessageStatus.SENT.value, "sent_at": utcnow(), "last_error": None})
        logger.info("outbox message %s (%s, %s) sent on attempt %d", claim.id, claim.kind,
                    claim.channel, claim.attempt)
        return Delivery(claim.id, MessageStatus.SENT, recorded)
    values: dict[str, datetime | None]
    if permanent or claim.attempt >= policy.max_attempts:
        status, values = MessageStatus.DEAD, {"next_attempt_at": None}
    else:
        status = MessageStatus.FAILED
        values = {"next_attempt_at": moment + policy.backoff(claim.attempt, rng)}
    recorded = _settle(factory, claim, {"status": status.value, "last_error": error,
                                                **values})
    logger.warning("outbox message %s attempt %d failed (%s): %s", claim.id, claim.attempt,
                   status.value, error)
    return Delivery(claim.id, status, recorded, error)


class Throttle:
    """At most ``per_minute`` sends, evenly spaced: the worker waits between messages."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 60.0 / max(per_minute, 1)
        self.clock = clock
        self.next_at = 0.0

    def wait_time(self) -> float:
        """How long to wait before the next send (0 when it may go now)."""
        return max(0.0, self.next_at - self.clock())

    def sent(self) -> None:
        self.next_at = max(self.clock(), self.next_at) + self.interval


# ---- the Outbox page --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    created_at: datetime
    kind: str
    channel: str
    recipient: str
    subject: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    sent_at: datetime | None
    last_error: str | None
    created_by: str

    def to_dict(self) -> dict[str, Any]:
        return as_row(self)


@dataclass(frozen=True, slots=True)
class OutboxPage:
    rows: list[OutboxRow]
    total: int
    counts: dict[str, int] = field(default_factory=dict)


def list_messages(
    session: Session, *, operator: Operator, statuses: tuple[str, ...] = (),
    kinds: tuple[str, ...] = (), limit: int = 50, offset: int = 0,
) -> OutboxPage:
    """Messages newest first, with the count per status."""
    authorize(operator, Action.VIEW_OUTBOX, session=session)
    check_page(limit, offset, maximum=MAX_PAGE)
    for value in statuses:
        if value not in MessageStatus._value2member_map_:
            raise ValidationError(f"Unknown message status {value!r}.")
    statement = select(OutboxMessage)
    counted = select(func.count()).select_from(OutboxMessage)
    if statuses:
        statement = statement.where(OutboxMessage.status.in_(statuses))
        counted = counted.where(OutboxMessage.status.in_(statuses))
    if kinds:
        statement = statement.where(OutboxMessage.kind.in_(kinds))
        counted = counted.where(OutboxMessage.kind.in_(kinds))
    total = int(session.scalar(counted) or 0)
    rows = [OutboxRow(m.id, m.created_at, m.kind, m.channel, m.recipient, m.subject, m.status,
                      m.attempts, m.next_attempt_at, m.sent_at, m.last_error, m.created_by)
            for m in session.scalars(statement.order_by(OutboxMessage.id.desc())
                                     .limit(limit).offset(offset))]
    counts = {str(s): int(n) for s, n in session.execute(
        select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status))}
    return OutboxPage(rows, total, counts)


def message_detail(session: Session, *, operator: Operator, message_id: int) -> OutboxMessage:
    """One message as stored (the Outbox page shows its text)."""
    authorize(operator, Action.VIEW_OUTBOX, session=session)
    message = session.get(OutboxMessage, message_id)
    if message is None:
        raise NotFoundError(f"Message {message_id} does not exist.")
    return message


def retry_message(session: Session, *, operator: Operator, message_id: int,
                  now: datetime | None = None) -> None:
    """Send a failed or dead message again, at once and with a fresh set of attempts."""
    authorize(operator, Action.RETRY_MESSAGE, session=session, target=f"message:{message_id}")
    message = session.get(OutboxMessage, message_id)
    if message is None:
        raise NotFoundError(f"Message {message_id} does not exist.")
    retryable = (MessageStatus.FAILED.value, MessageStatus.DEAD.value)
    previous = message.last_error
    if message.status not in retryable:
        raise ConflictError(f"Message {message_id} is {message.status}: only a failed or dead "
                            "message can be retried.")
    done = rowcount(session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.status.in_(retryable))
        .values(status=MessageStatus.PENDING.value, attempts=0,
                next_attempt_at=now or utcnow())
        .execution_options(synchronize_session=False)))
    if not done:
        raise ConflictError(f"Message {message_id} changed meanwhile; reload and try again.")
    session.expire(message)
    audit.record(session, actor=operator, action="outbox.retry", result="queued",
                 target=f"message:{message_id}", input={"previous_error": previous})
