"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 03:31:16.743076
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import lib.db

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("occurred_at", lib.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("actor_role", sa.String(length=50), nullable=True),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=True),
        sa.Column(
            "input",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("result", sa.String(length=50), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("stripe_request_id", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_action", ["action"], unique=False)
        batch_op.create_index("ix_audit_log_actor", ["actor"], unique=False)
        batch_op.create_index("ix_audit_log_occurred_at", ["occurred_at"], unique=False)

    op.create_table(
        "connected_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stripe_id", sa.String(length=255), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("default_currency", sa.String(length=3), nullable=True),
        sa.Column("charges_enabled", sa.Boolean(), nullable=False),
        sa.Column("payouts_enabled", sa.Boolean(), nullable=False),
        sa.Column("details_submitted", sa.Boolean(), nullable=False),
        sa.Column("transfers_capability", sa.String(length=20), nullable=True),
        sa.Column(
            "requirements",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "future_requirements",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("disabled_reason", sa.String(length=100), nullable=True),
        sa.Column("current_deadline", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("currently_due_count", sa.Integer(), nullable=False),
        sa.Column("past_due_count", sa.Integer(), nullable=False),
        sa.Column("eventually_due_count", sa.Integer(), nullable=False),
        sa.Column("pending_verification_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("stripe_created", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("deauthorized_at", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "raw",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("synced_at", lib.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connected_accounts")),
        sa.UniqueConstraint("stripe_id", name=op.f("uq_connected_accounts_stripe_id")),
    )
    with op.batch_alter_table("connected_accounts", schema=None) as batch_op:
        batch_op.create_index("ix_connected_accounts_country", ["country"], unique=False)
        batch_op.create_index(
            "ix_connected_accounts_current_deadline", ["current_deadline"], unique=False
        )
        batch_op.create_index("ix_connected_accounts_status", ["status"], unique=False)

    op.create_table(
        "freelancers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("stripe_account_id", sa.String(length=255), nullable=True),
        sa.Column("connection_method", sa.String(length=20), nullable=True),
        sa.Column("connected_at", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("disconnected_at", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", lib.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_freelancers")),
        sa.UniqueConstraint("email", name=op.f("uq_freelancers_email")),
        sa.UniqueConstraint("stripe_account_id", name=op.f("uq_freelancers_stripe_account_id")),
    )
    with op.batch_alter_table("freelancers", schema=None) as batch_op:
        batch_op.create_index("ix_freelancers_connected_at", ["connected_at"], unique=False)

    op.create_table(
        "webhook_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stripe_event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("endpoint", sa.String(length=20), nullable=False),
        sa.Column("account", sa.String(length=255), nullable=True),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("stripe_created", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("received_at", lib.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("processed_at", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("processing_started_at", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('received', 'processing', 'processed', 'failed', 'ignored')",
            name=op.f("ck_webhook_events_status_valid"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_events")),
        sa.UniqueConstraint("stripe_event_id", name=op.f("uq_webhook_events_stripe_event_id")),
    )
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_events_received_at", ["received_at"], unique=False)
        batch_op.create_index("ix_webhook_events_status", ["status"], unique=False)
        batch_op.create_index("ix_webhook_events_type", ["type"], unique=False)

    op.create_table(
        "connection_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("freelancer_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=20), nullable=False),
        sa.Column("issued_by", sa.String(length=200), nullable=False),
        sa.Column("stripe_account_id", sa.String(length=255), nullable=True),
        sa.Column("started_at", lib.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("link_expires_at", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("returned_at", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("failure_reason", sa.String(length=50), nullable=True),
        sa.CheckConstraint(
            "method IN ('oauth', 'account_link')", name=op.f("ck_connection_attempts_method_valid")
        ),
        sa.CheckConstraint(
            "outcome IN ('pending', 'succeeded', 'failed', 'abandoned')",
            name=op.f("ck_connection_attempts_outcome_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["freelancer_id"],
            ["freelancers.id"],
            name=op.f("fk_connection_attempts_freelancer_id_freelancers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connection_attempts")),
    )
    with op.batch_alter_table("connection_attempts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_connection_attempts_freelancer_id", ["freelancer_id"], unique=False
        )
        batch_op.create_index("ix_connection_attempts_outcome", ["outcome"], unique=False)
        batch_op.create_index("ix_connection_attempts_started_at", ["started_at"], unique=False)

    op.create_table(
        "payouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("freelancer_id", sa.Integer(), nullable=False),
        sa.Column("stripe_account_id", sa.String(length=255), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("payout_type", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("client_request_token", sa.String(length=255), nullable=True),
        sa.Column("stripe_transfer_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_request_id", sa.String(length=255), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("approved_by", sa.String(length=200), nullable=True),
        sa.Column("approved_at", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("rejected_by", sa.String(length=200), nullable=True),
        sa.Column("rejection_reason", sa.String(length=500), nullable=True),
        sa.Column("error_code", sa.String(length=100), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("amount_reversed_minor", sa.BigInteger(), nullable=False),
        sa.Column("bulk_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("bulk_row", sa.Integer(), nullable=True),
        sa.Column("created_at", lib.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", lib.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "payout_type IN ('MANUAL', 'BULK')", name=op.f("ck_payouts_payout_type_valid")
        ),
        sa.CheckConstraint(
            "status IN ('pending_approval', 'pending', 'submitted', 'paid', 'failed', 'unknown', 'rejected', 'reversed')",
            name=op.f("ck_payouts_status_valid"),
        ),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_payouts_amount_positive")),
        sa.CheckConstraint(
            "amount_reversed_minor >= 0", name=op.f("ck_payouts_reversed_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["freelancer_id"], ["freelancers.id"], name=op.f("fk_payouts_freelancer_id_freelancers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payouts")),
        sa.UniqueConstraint("bulk_fingerprint", "bulk_row", name="uq_payouts_bulk_row"),
        sa.UniqueConstraint("client_request_token", name=op.f("uq_payouts_client_request_token")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_payouts_idempotency_key")),
        sa.UniqueConstraint("stripe_transfer_id", name=op.f("uq_payouts_stripe_transfer_id")),
    )
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.create_index("ix_payouts_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_payouts_freelancer_id", ["freelancer_id"], unique=False)
        batch_op.create_index("ix_payouts_status", ["status"], unique=False)

    op.create_table(
        "oauth_states",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("freelancer_id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=True),
        sa.Column("issued_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", lib.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", lib.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("consumed_at", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["connection_attempts.id"],
            name=op.f("fk_oauth_states_attempt_id_connection_attempts"),
        ),
        sa.ForeignKeyConstraint(
            ["freelancer_id"],
            ["freelancers.id"],
            name=op.f("fk_oauth_states_freelancer_id_freelancers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_states")),
        sa.UniqueConstraint("state_hash", name=op.f("uq_oauth_states_state_hash")),
    )
    with op.batch_alter_table("oauth_states", schema=None) as batch_op:
        batch_op.create_index("ix_oauth_states_freelancer_id", ["freelancer_id"], unique=False)

    op.create_table(
        "payout_reversals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("payout_id", sa.Integer(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("stripe_reversal_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_request_id", sa.String(length=255), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("error_code", sa.String(length=100), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", lib.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_payout_reversals_amount_positive")),
        sa.ForeignKeyConstraint(
            ["payout_id"], ["payouts.id"], name=op.f("fk_payout_reversals_payout_id_payouts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout_reversals")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_payout_reversals_idempotency_key")),
        sa.UniqueConstraint(
            "stripe_reversal_id", name=op.f("uq_payout_reversals_stripe_reversal_id")
        ),
    )
    with op.batch_alter_table("payout_reversals", schema=None) as batch_op:
        batch_op.create_index("ix_payout_reversals_payout_id", ["payout_id"], unique=False)

    _create_audit_log_guards()


def downgrade() -> None:
    _drop_audit_log_guards()
    with op.batch_alter_table("payout_reversals", schema=None) as batch_op:
        batch_op.drop_index("ix_payout_reversals_payout_id")

    op.drop_table("payout_reversals")
    with op.batch_alter_table("oauth_states", schema=None) as batch_op:
        batch_op.drop_index("ix_oauth_states_freelancer_id")

    op.drop_table("oauth_states")
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.drop_index("ix_payouts_status")
        batch_op.drop_index("ix_payouts_freelancer_id")
        batch_op.drop_index("ix_payouts_created_at")

    op.drop_table("payouts")
    with op.batch_alter_table("connection_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_connection_attempts_started_at")
        batch_op.drop_index("ix_connection_attempts_outcome")
        batch_op.drop_index("ix_connection_attempts_freelancer_id")

    op.drop_table("connection_attempts")
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_events_type")
        batch_op.drop_index("ix_webhook_events_status")
        batch_op.drop_index("ix_webhook_events_received_at")

    op.drop_table("webhook_events")
    with op.batch_alter_table("freelancers", schema=None) as batch_op:
        batch_op.drop_index("ix_freelancers_connected_at")

    op.drop_table("freelancers")
    with op.batch_alter_table("connected_accounts", schema=None) as batch_op:
        batch_op.drop_index("ix_connected_accounts_status")
        batch_op.drop_index("ix_connected_accounts_current_deadline")
        batch_op.drop_index("ix_connected_accounts_country")

    op.drop_table("connected_accounts")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_occurred_at")
        batch_op.drop_index("ix_audit_log_actor")
        batch_op.drop_index("ix_audit_log_action")

    op.drop_table("audit_log")


# The audit log is append-only: the database itself refuses UPDATE and DELETE, so no code path
# (a bug, a console session through the ORM) can rewrite history.
_PG_GUARD = """
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
"""


def _create_audit_log_guards() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_GUARD)
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
        )


def _drop_audit_log_guards() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
        return
    for verb in ("update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS audit_log_no_{verb}")
