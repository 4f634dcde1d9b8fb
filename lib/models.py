"""The data model: SQLAlchemy 2.0 typed models, one module.

The schema is created only by Alembic migrations (``migrations/``); a test proves the migrated
schema matches these models on SQLite and PostgreSQL.

Conventions:
- Money is ``BigInteger`` minor units plus a lower-case currency code (see ``lib.money``).
- Times are aware UTC (``UTCDateTime``).
- Stripe objects keep their raw JSON beside the few promoted columns the dashboard filters on.
- Uniqueness that guards money or security (idempotency keys, event ids, state hashes) lives in
  the database, so races are settled there on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from lib.db import UTCDateTime, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: JSON on SQLite, JSONB on PostgreSQL.
JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)

    if TYPE_CHECKING:
        # DeclarativeBase types ``__table__`` as any FromClause; every model here is mapped to a
        # plain Table, and Core statements (insert/delete on the table) need it typed as one.
        __table__: ClassVar[Table]


class ConnectionMethod(enum.StrEnum):
    OAUTH = "oauth"
    ACCOUNT_LINK = "account_link"


class AttemptOutcome(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABANDONED = "abandoned"


class PayoutStatus(enum.StrEnum):
    PENDING_APPROVAL = "pending_approval"
    PENDING = "pending"
    SUBMITTED = "submitted"
    PAID = "paid"
    FAILED = "failed"
    UNKNOWN = "unknown"
    REJECTED = "rejected"
    REVERSED = "reversed"


class ReversalStatus(enum.StrEnum):
    """A reversal's lifecycle: the payout's, ending in ``succeeded`` instead of ``paid``."""

    PENDING_APPROVAL = "pending_approval"
    PENDING = "pending"
    SUBMITTED = "submitted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"
    REJECTED = "rejected"


class DecisionOutcome(enum.StrEnum):
    PAID = "paid"
    NOT_PAID = "not_paid"


class DecisionStatus(enum.StrEnum):
    OPEN = "open"
    CONFIRMED = "confirmed"
    WITHDRAWN = "withdrawn"


class PayoutType(enum.StrEnum):
    MANUAL = "MANUAL"
    BULK = "BULK"


class WebhookStatus(enum.StrEnum):
    """Where a stored event is in its life (``lib.webhooks`` moves it, ``lib.worker`` drives it).

    received → processing → processed | ignored (terminal), or → failed (retried at
    ``next_attempt_at``) → … → dead (gave up after the maximum attempts; a person replays it).
    """

    RECEIVED = "received"
    PROCESSING = "processing"
    PROCESSED = "processed"
    FAILED = "failed"
    IGNORED = "ignored"
    DEAD = "dead"


class JobStatus(enum.StrEnum):
    OK = "ok"
    FAILED = "failed"


def _enum_check(column: str, values: type[enum.StrEnum]) -> CheckConstraint:
    allowed = ", ".join(f"'{v.value}'" for v in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=f"{column}_valid")


class Freelancer(Base):
    """A freelancer of the marketplace and the Stripe account we pay them through."""

    __tablename__ = "freelancers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    country: Mapped[str | None] = mapped_column(String(2))
    #: The currently connected account; NULL when not connected. Unique: one account, one freelancer.
    stripe_account_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    connection_method: Mapped[str | None] = mapped_column(String(20))
    connected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disconnected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The account a connect flow made this freelancer's payout destination, until the freelancer
    #: (or an admin, with a reason) confirms it: payouts are held while it is set (0008).
    unconfirmed_account_id: Mapped[str | None] = mapped_column(String(255))
    destination_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    destination_confirmed_by: Mapped[str | None] = mapped_column(String(200))
    #: Payment-settings links and sessions carry it; raising it revokes every one issued (0008).
    page_access_generation: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    account: Mapped[ConnectedAccount | None] = relationship(
        primaryjoin="foreign(Freelancer.stripe_account_id) == ConnectedAccount.stripe_id",
        viewonly=True,
        lazy="raise",
    )

    __table_args__ = (
        Index("ix_freelancers_connected_at", "connected_at"),
        #: The Accounts page pages through freelancers by name.
        Index("ix_freelancers_name", "name"),
        #: The Accounts page's country choices are read from it, one seek per country (0006).
        Index("ix_freelancers_country", "country"),
        #: The Accounts page lists the destinations awaiting confirmation (0008).
        Index("ix_freelancers_unconfirmed_account_id", "unconfirmed_account_id"),
    )


class ConnectedAccount(Base):
    """Local mirror of a Stripe connected account (raw object + promoted columns)."""

    __tablename__ = "connected_accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stripe_id: Mapped[str] = mapped_column(String(255), unique=True)
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    type: Mapped[str | None] = mapped_column(String(20))
    country: Mapped[str | None] = mapped_column(String(2))
    email: Mapped[str | None] = mapped_column(String(320))
    default_currency: Mapped[str | None] = mapped_column(String(3))
    charges_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    payouts_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    details_submitted: Mapped[bool] = mapped_column(Boolean, default=False)
    transfers_capability: Mapped[str | None] = mapped_column(String(20))
    requirements: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    future_requirements: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    disabled_reason: Mapped[str | None] = mapped_column(String(100))
    current_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    currently_due_count: Mapped[int] = mapped_column(Integer, default=0)
    past_due_count: Mapped[int] = mapped_column(Integer, default=0)
    eventually_due_count: Mapped[int] = mapped_column(Integer, default=0)
    pending_verification_count: Mapped[int] = mapped_column(Integer, default=0)
    #: Derived from the fields above when the row is written (lib.account_status); promoted
    #: because the dashboard filters 100,000 rows by it.
    status: Mapped[str] = mapped_column(String(20), default="PENDING")
    stripe_created: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Set when Stripe tells us the platform lost access (deauthorized / revoked).
    deauthorized_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    raw: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_connected_accounts_status", "status"),
        Index("ix_connected_accounts_current_deadline", "current_deadline"),
        Index("ix_connected_accounts_country", "country"),
    )


class RequirementCode(Base):
    """One code a freelancer's current account is asked for, in one of its requirement lists.

    Derived from ``ConnectedAccount.requirements`` by ``lib.requirement_index`` in the transaction
    that writes the account (or attaches / detaches it), so the Requirements page counts codes
    with a GROUP BY on an index instead of expanding 100,000 accounts' JSON. Only accounts that
    are some freelancer's current account have rows (the page lists nothing else).
    """

    __tablename__ = "requirement_codes"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("connected_accounts.id", ondelete="CASCADE"), primary_key=True)
    #: The requirements list the code came from: past_due, currently_due, eventually_due,
    #: pending_verification.
    bucket: Mapped[str] = mapped_column(String(30), primary_key=True)
    code: Mapped[str] = mapped_column(Text, primary_key=True)
    #: A copy of the account's ``current_deadline``: the page's "within N days" filter.
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(
            "bucket IN ('past_due', 'currently_due', 'eventually_due', 'pending_verification')",
            name="bucket_valid"),
        #: Covers the counts, in GROUP BY order, with and without the deadline filter (a
        #: deadline-first index would leave SQLite's planner choosing between two orders).
        Index("ix_requirement_codes_bucket_code", "bucket", "code", "deadline", "account_id"),
    )


class OAuthState(Base):
    """An OAuth ``state`` token: only its SHA-256 is stored; consumed at most once."""

    __tablename__ = "oauth_states"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    freelancer_id: Mapped[int] = mapped_column(ForeignKey("freelancers.id", ondelete="CASCADE"))
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("connection_attempts.id"))
    issued_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_oauth_states_freelancer_id", "freelancer_id"),)


class ConnectionAttempt(Base):
    """One try at connecting a freelancer: an issued OAuth URL or onboarding link."""

    __tablename__ = "connection_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    freelancer_id: Mapped[int] = mapped_column(ForeignKey("freelancers.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(String(20))
    issued_by: Mapped[str] = mapped_column(String(200))
    stripe_account_id: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    link_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    returned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When the onboarding link's refresh / return URL was spent: each works once (0008).
    refresh_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    return_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(20), default=AttemptOutcome.PENDING.value)
    failure_reason: Mapped[str | None] = mapped_column(String(50))

    __table_args__ = (
        _enum_check("method", ConnectionMethod),
        _enum_check("outcome", AttemptOutcome),
        #: Covers every column the metrics and the Overview read of the attempts in a date range
        #: (migration 0005): a range of 200,000 attempts is read from the index alone instead of
        #: one table lookup per attempt.
        Index("ix_connection_attempts_started_at", "started_at", "outcome", "method",
              "failure_reason", "freelancer_id", "returned_at", "finished_at"),
        Index("ix_connection_attempts_freelancer_id", "freelancer_id"),
        #: Counts of one outcome over a date range are a range count on this index, and the
        #: failure reasons and times to connect of a range are read from it alone (0005).
        Index("ix_connection_attempts_outcome", "outcome", "started_at", "method",
              "failure_reason", "finished_at"),
    )


class Payout(Base):
    """The payouts ledger: written before Stripe is called, so nothing can pay twice."""

    __tablename__ = "payouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    freelancer_id: Mapped[int] = mapped_column(ForeignKey("freelancers.id"))
    #: The destination at request time; a later reconnect must not redirect an old payout.
    stripe_account_id: Mapped[str | None] = mapped_column(String(255))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    description: Mapped[str] = mapped_column(String(500), default="")
    payout_type: Mapped[str] = mapped_column(String(10), default=PayoutType.MANUAL.value)
    status: Mapped[str] = mapped_column(String(20), default=PayoutStatus.PENDING.value)
    #: Derived from this row's id; sent to Stripe on every attempt of this payout.
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    #: Carried by the form/API request, so a double submit finds this row instead of a new one.
    client_request_token: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_transfer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_request_id: Mapped[str | None] = mapped_column(String(255))
    requested_by: Mapped[str] = mapped_column(String(200))
    approved_by: Mapped[str | None] = mapped_column(String(200))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rejected_by: Mapped[str | None] = mapped_column(String(200))
    rejection_reason: Mapped[str | None] = mapped_column(String(500))
    error_code: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)
    amount_reversed_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    bulk_fingerprint: Mapped[str | None] = mapped_column(String(64))
    bulk_row: Mapped[int | None] = mapped_column(Integer)
    #: A bulk row's identity by content (freelancer, amount, currency, description, reference):
    #: re-saving a sheet (line endings, BOM, column order) cannot make its rows new payouts.
    bulk_row_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    #: The client's own reference (an invoice number from a bulk file's ``reference`` column).
    reference: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("amount_reversed_minor >= 0", name="reversed_not_negative"),
        _enum_check("status", PayoutStatus),
        _enum_check("payout_type", PayoutType),
        UniqueConstraint("bulk_fingerprint", "bulk_row", name="uq_payouts_bulk_row"),
        #: Both cover the ledger's totals per currency and status (0005): a month of payouts is
        #: summed from the index; status first serves "paid this month" and the status filters.
        Index("ix_payouts_status", "status", "created_at", "currency", "amount_minor"),
        Index("ix_payouts_created_at", "created_at", "currency", "status", "amount_minor"),
        #: "Has this freelancer been paid?" is one index seek (the metrics funnel, 0005).
        Index("ix_payouts_freelancer_id", "freelancer_id", "status"),
    )


class PayoutReversal(Base):
    """A (partial) reversal of a paid transfer, recorded before Stripe is called.

    Its lifecycle mirrors a payout's (``lib.payouts.reversal``): written with its amount
    reserved on the payout, approved by a second person at or above the threshold, claimed
    (``submitted``) before the call, finished only by the claimer, retried with its own key
    only within Stripe's key window.
    """

    __tablename__ = "payout_reversals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payout_id: Mapped[int] = mapped_column(ForeignKey("payouts.id"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20), default=ReversalStatus.PENDING.value)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    #: Carried by the API's Idempotency-Key or the form, so a double submit finds this row.
    client_request_token: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_reversal_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_request_id: Mapped[str | None] = mapped_column(String(255))
    requested_by: Mapped[str] = mapped_column(String(200))
    approved_by: Mapped[str | None] = mapped_column(String(200))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rejected_by: Mapped[str | None] = mapped_column(String(200))
    rejection_reason: Mapped[str | None] = mapped_column(String(500))
    error_code: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: First claim for sending: Stripe's key window is counted from here.
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        _enum_check("status", ReversalStatus),
        Index("ix_payout_reversals_payout_id", "payout_id"),
        Index("ix_payout_reversals_status", "status"),
    )


class SettlementDecision(Base):
    """A person's decision on a payout or reversal no retry may settle, made by two people.

    Rows past Stripe's idempotency window, or whose key Stripe answers with a saved 500, cannot
    be settled by retrying: one operator proposes "paid by tr_…" or "not paid" with a reason,
    a second confirms it, and only then the ledger changes (``lib.payouts.decisions``).
    """

    __tablename__ = "settlement_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: ``payout`` or ``reversal``.
    subject: Mapped[str] = mapped_column(String(20))
    subject_id: Mapped[int] = mapped_column(Integer)
    payout_id: Mapped[int] = mapped_column(ForeignKey("payouts.id"))
    outcome: Mapped[str] = mapped_column(String(20))
    #: The transfer (tr_…) or reversal (trr_…) Stripe made, for a "paid" decision.
    stripe_object_id: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20), default=DecisionStatus.OPEN.value)
    proposed_by: Mapped[str] = mapped_column(String(200))
    proposed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint("subject IN ('payout', 'reversal')", name="subject_valid"),
        _enum_check("outcome", DecisionOutcome),
        _enum_check("status", DecisionStatus),
        #: At most one open proposal per payout or reversal (the database settles the race).
        Index("ix_settlement_decisions_open", "subject", "subject_id", unique=True,
              sqlite_where=text("status = 'open'"), postgresql_where=text("status = 'open'")),
        Index("ix_settlement_decisions_payout_id", "payout_id"),
    )


class WebhookEvent(Base):
    """A received Stripe event, stored by id before it is processed (duplicates are no-ops)."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stripe_event_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(100))
    endpoint: Mapped[str] = mapped_column(String(20))
    account: Mapped[str | None] = mapped_column(String(255))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    stripe_created: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When the current (or last) claim started.
    processing_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20), default=WebhookStatus.RECEIVED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    #: A received or failed event is claimed once this time has come (0007).
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The claim's lease: a worker that died gives the event up when it expires (0007).
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: One random token per claim: only its holder may finish the attempt (0007).
    lease_token: Mapped[str | None] = mapped_column(String(36))
    #: The worker holding (or last holding) the event, for the dashboard (0007).
    leased_by: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        _enum_check("status", WebhookStatus),
        #: Covers the per-type counts and latest id (0005): no lookup of 200,000 payload rows.
        Index("ix_webhook_events_type", "type", "status", "id"),
        Index("ix_webhook_events_status", "status"),
        Index("ix_webhook_events_received_at", "received_at"),
        #: The worker's claim: due events of a status, oldest due first (0007).
        Index("ix_webhook_events_due", "status", "next_attempt_at"),
        #: The dashboard's staleness check reads the newest processing time by one seek (0007).
        Index("ix_webhook_events_processed_at", "processed_at"),
        #: The oldest event waiting, and failures newest first, by one seek each (0014).
        Index("ix_webhook_events_status_received_at", "status", "received_at"),
    )


class ScheduledJob(Base):
    """One recurring job of the worker (sync, purge, reconciliation…): when it runs next, who
    holds it now and how its last run went. The row is the lock that makes it run once per
    interval across every worker (``lib.jobs``)."""

    __tablename__ = "scheduled_jobs"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    interval_seconds: Mapped[int] = mapped_column(Integer)
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_token: Mapped[str | None] = mapped_column(String(36))
    leased_by: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[str | None] = mapped_column(String(20))
    last_result: Mapped[str | None] = mapped_column(Text)
    runs: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        CheckConstraint("last_status IS NULL OR last_status IN ('ok', 'failed')",
                        name="last_status_valid"),
    )


class WorkerHeartbeat(Base):
    """A worker process: it writes ``last_seen_at`` every few seconds while it runs."""

    __tablename__ = "worker_heartbeats"

    worker_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    events_processed: Mapped[int] = mapped_column(Integer, default=0)
    events_failed: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_worker_heartbeats_last_seen_at", "last_seen_at"),)


class ReconciliationRun(Base):
    """A stored reconciliation report (the worker's daily run), shown on the dashboard."""

    __tablename__ = "reconciliation_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    triggered_by: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    mismatches: Mapped[int] = mapped_column(Integer, default=0)
    resolved: Mapped[int] = mapped_column(Integer, default=0)
    summary: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        _enum_check("status", JobStatus),
        Index("ix_reconciliation_runs_started_at", "started_at"),
    )


class MessageChannel(enum.StrEnum):
    EMAIL = "email"
    #: A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat, …).
    CHAT = "chat"


class MessageKind(enum.StrEnum):
    OUTREACH = "outreach"
    ALERT = "alert"
    DIGEST = "digest"


class MessageStatus(enum.StrEnum):
    """Where an outgoing message is (``lib.outbox`` moves it, the worker drives it).

    pending → sending → sent (terminal), or → failed (retried at ``next_attempt_at``) → … →
    dead (gave up after the maximum attempts; a person retries it from the Outbox page).
    """

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    DEAD = "dead"


class OutboxMessage(Base):
    """One outgoing email or chat message, written in the transaction that decided to send it
    and delivered by the worker (``lib.outbox``): never lost, delivered once (0012)."""

    __tablename__ = "outbox_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: What makes a message this message (``outreach:BATCH:FREELANCER``, ``alert:…``): a rerun
    #: of the decision finds it instead of writing a second one.
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(10))
    #: An email address, or ``chat`` for the configured chat webhook (its URL is a secret).
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    #: The chat JSON, or what delivery needs to finish the message (never a secret).
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(20), default=MessageStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_token: Mapped[str | None] = mapped_column(String(36))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    leased_by: Mapped[str | None] = mapped_column(String(200))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        _enum_check("status", MessageStatus),
        _enum_check("channel", MessageChannel),
        _enum_check("kind", MessageKind),
        #: The worker's claim: due messages of a status, oldest due first.
        Index("ix_outbox_messages_due", "status", "next_attempt_at"),
        Index("ix_outbox_messages_created_at", "created_at"),
    )


class OutreachBatch(Base):
    """One confirmed "send requirements emails" action: the rows it covers are its contacts."""

    __tablename__ = "outreach_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: Made with the preview and carried by the confirmation: a rerun finds this batch.
    token: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: How many freelancers the confirmed preview named.
    requested: Mapped[int] = mapped_column(Integer, default=0)


class OutreachContact(Base):
    """One freelancer emailed in one batch: who sent it, when, to whom, what for, which link."""

    __tablename__ = "outreach_contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("outreach_batches.id"))
    freelancer_id: Mapped[int] = mapped_column(ForeignKey("freelancers.id", ondelete="CASCADE"))
    #: The address written to (the freelancer's at the time of sending).
    email: Mapped[str] = mapped_column(String(320))
    stripe_account_id: Mapped[str | None] = mapped_column(String(255))
    #: ``[{"code", "label", "past_due"}]``: what Stripe asked for when it was sent.
    requirements: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("outbox_messages.id"))
    #: The single-use payment-settings link of the email actually sent: its id (carried in the
    #: link, spent once), when it was made, when it expires, when it was opened.
    link_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    link_issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    link_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    link_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Which delivery attempt made the link (each attempt makes a fresh one).
    link_attempt: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        UniqueConstraint("batch_id", "freelancer_id", name="uq_outreach_contacts_batch_freelancer"),
        #: "Last contacted", "times contacted" and "not contacted in N days" per freelancer.
        Index("ix_outreach_contacts_freelancer_id", "freelancer_id", "created_at"),
    )


class AlertRule(Base):
    """A condition the worker checks, its settings and where its alerts go (``lib.alerts``)."""

    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    #: Comma-separated addresses; empty: no email.
    email_recipients: Mapped[str] = mapped_column(Text, default="")
    chat: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Collect this rule's alerts into one periodic digest instead of one message each.
    digest: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Alert(Base):
    """One episode of a rule's condition: opened when it starts to hold, cleared when it stops.

    ``open_key`` is set while the episode is open and unique: the database allows one open
    episode per rule and condition, whichever process evaluates it (0012).
    """

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"))
    #: Which instance of the condition (an account, a failure reason, ``all``).
    condition_key: Mapped[str] = mapped_column(String(255))
    open_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    severity: Mapped[str] = mapped_column(String(10))
    summary: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When its message(s) were written to the outbox (at once, or with the next digest).
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint("severity IN ('error', 'warning')", name="severity_valid"),
        Index("ix_alerts_opened_at", "opened_at"),
        Index("ix_alerts_rule_id", "rule_id", "opened_at"),
        #: The digest job's "opened, not yet notified".
        Index("ix_alerts_notified_at", "notified_at"),
    )


class AuditLog(Base):
    """Append-only record of who did what. Updates and deletes are refused (ORM and database)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    actor_role: Mapped[str | None] = mapped_column(String(50))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str | None] = mapped_column(String(255))
    input: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    result: Mapped[str] = mapped_column(String(50))
    detail: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    stripe_request_id: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (
        Index("ix_audit_log_occurred_at", "occurred_at"),
        Index("ix_audit_log_actor", "actor"),
        Index("ix_audit_log_action", "action"),
        #: The Result filter's choices are read from it (0005).
        Index("ix_audit_log_result", "result"),
        #: A freelancer's timeline reads the entries about them, their payouts and accounts
        #: (0010).
        Index("ix_audit_log_target", "target", "occurred_at"),
    )


class BankPayoutStatus(enum.StrEnum):
    """Stripe's ``payout.status`` values."""

    PENDING = "pending"
    IN_TRANSIT = "in_transit"
    PAID = "paid"
    FAILED = "failed"
    CANCELED = "canceled"


class BankPayout(Base):
    """A connected account's own payout from its Stripe balance to its bank (issue 21).

    Not money the platform moves: Stripe pays the freelancer's balance out to their bank and
    tells us through the Connect webhooks (``payout.created|paid|failed|…``). Kept so finance
    can see who is not receiving their money and why (``failure_code``). Written by
    ``lib.bank_payouts`` from the event's payout object; a later status never goes back to an
    earlier one (see that module).
    """

    __tablename__ = "bank_payouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stripe_payout_id: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_account_id: Mapped[str] = mapped_column(String(255))
    #: The freelancer the account belonged to when the event was processed.
    freelancer_id: Mapped[int | None] = mapped_column(
        ForeignKey("freelancers.id", ondelete="SET NULL"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20))
    failure_code: Mapped[str | None] = mapped_column(String(100))
    failure_message: Mapped[str | None] = mapped_column(Text)
    arrival_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stripe_created: Mapped[datetime | None] = mapped_column(UTCDateTime)
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    #: ``created`` of the newest event applied: an older event never overwrites a newer one.
    event_created: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When the payout reached ``paid`` or ``failed`` here (the event's time).
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    raw: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        _enum_check("status", BankPayoutStatus),
        #: The Failed bank payouts page: failed ones, newest first.
        Index("ix_bank_payouts_status", "status", "settled_at"),
        #: A freelancer's timeline.
        Index("ix_bank_payouts_freelancer_id", "freelancer_id", "stripe_created"),
        Index("ix_bank_payouts_stripe_account_id", "stripe_account_id"),
    )


class RequirementChange(Base):
    """What Stripe started or stopped asking a freelancer's account for, and when (issue 21).

    Written by ``lib.requirement_index`` in the transaction that changes the account's
    requirement codes or deadline (the upsert of an account update, a sync, a connection), so a
    freelancer's timeline shows requirements over time, not only today's. ``added`` / ``removed``
    map a requirements list (``past_due``, ``currently_due``, …) to codes.
    """

    __tablename__ = "requirement_changes"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("connected_accounts.id", ondelete="CASCADE"))
    freelancer_id: Mapped[int] = mapped_column(ForeignKey("freelancers.id", ondelete="CASCADE"))
    #: When the mirror saw it: the account's fetch time.
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str | None] = mapped_column(String(20))
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    previous_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    added: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    removed: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

    __table_args__ = (
        Index("ix_requirement_changes_freelancer_id", "freelancer_id", "observed_at"),
        Index("ix_requirement_changes_account_id", "account_id", "observed_at"),
    )


class BulkPreviewNote(Base):
    """The bulk payout file an operator is previewing: money about to be committed (issue 21).

    One per operator (the latest preview replaces the earlier one); the Funding page counts it
    until the file is confirmed (its rows are then ledger rows), cleared, or stale.
    """

    __tablename__ = "bulk_previews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    operator: Mapped[str] = mapped_column(String(200), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    previewed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    #: currency -> total of the file's payable rows, minor units.
    totals: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class SummaryCount(Base):
    """A kept-up-to-date count (issue 22): ``(kind, day, k1, k2, k3) -> (n, amount)``.

    Maintained in the transaction of the write it summarises (``lib.summaries``): by triggers
    on SQLite, by folding :class:`SummaryDelta` rows in on PostgreSQL.
    """

    __tablename__ = "summary_counts"

    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    k1: Mapped[str] = mapped_column(String(255), primary_key=True)
    k2: Mapped[str] = mapped_column(String(255), primary_key=True)
    k3: Mapped[str] = mapped_column(String(255), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger, default=0)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)


class SummaryDelta(Base):
    """One signed change to a summary, written by the triggers on PostgreSQL (issue 22).

    Insert-only, so concurrent writers never wait on (or deadlock over) a shared counter row;
    readers add the pending deltas to :class:`SummaryCount`, and the worker folds them in.
    """

    __tablename__ = "summary_deltas"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    day: Mapped[str] = mapped_column(String(10))
    k1: Mapped[str] = mapped_column(String(255))
    k2: Mapped[str] = mapped_column(String(255))
    k3: Mapped[str] = mapped_column(String(255))
    n: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_summary_deltas_kind_day", "kind", "day"),)


class FunnelFreelancer(Base):
    """A freelancer's place in the connection funnel, kept by triggers (issue 22).

    One row per freelancer with at least one connection attempt: the UTC day (``YYYY-MM-DD``) of
    their newest attempt, of their newest attempt that came back ('' when none did) and of their
    newest succeeded one ('' when none), whether their current account is payable and whether
    they have a paid payout (0 or 1). See :mod:`lib.summaries.funnel`. No foreign key: the
    triggers remove the row with the freelancer's last attempt.
    """

    __tablename__ = "funnel_freelancers"

    freelancer_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    issued_day: Mapped[str] = mapped_column(String(10))
    returned_day: Mapped[str] = mapped_column(String(10))
    connected_day: Mapped[str] = mapped_column(String(10))
    verified: Mapped[int] = mapped_column(Integer)
    paid: Mapped[int] = mapped_column(Integer)


class SummaryCheck(Base):
    """One comparison of every summary with a full recount (the worker's daily job, the CLI)."""

    __tablename__ = "summary_checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    mismatches: Mapped[int] = mapped_column(Integer, default=0)
    #: Up to a few hundred differing keys: kind, day, keys, kept and recounted values.
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    repaired: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("ix_summary_checks_checked_at", "checked_at"),)


@event.listens_for(Session, "before_flush")
def _refuse_audit_changes(session: Session, _context: object, _instances: object) -> None:
    """The audit log is append-only; the database triggers enforce it too."""
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, AuditLog) and (obj in session.deleted or session.is_modified(obj)):
            raise PermissionError("the audit log is append-only")


# The requirement index follows every ORM write of accounts and attachments through flush hooks
# registered when it is imported; it imports this module, hence last.
from lib import requirement_index as _requirement_index  # noqa: E402, F401
