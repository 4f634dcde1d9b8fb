"""outreach to freelancers, alert rules and episodes, the outbox of outgoing messages (issue 20)

- outbox_messages: every outgoing email or chat message, written in the transaction that
  decided to send it; ``dedupe_key`` is unique, so a rerun of the decision writes nothing twice.
  The worker claims due ones under a lease (``status, next_attempt_at`` indexed), like events.
- outreach_batches / outreach_contacts: one confirmed send, and one row per freelancer in it
  (unique per batch: one email per freelancer per batch whatever reruns happen), with the
  single-use link the email carried (``link_id`` unique, spent once).
- alert_rules / alerts: the rules and their episodes; ``alerts.open_key`` is unique while an
  episode is open, so a condition holding has one open episode whoever evaluates it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import lib.db

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_UTC = lib.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "outbox_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=True),
        sa.Column("payload", _JSON, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _UTC, nullable=True),
        sa.Column("lease_token", sa.String(length=36), nullable=True),
        sa.Column("lease_expires_at", _UTC, nullable=True),
        sa.Column("leased_by", sa.String(length=200), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("sent_at", _UTC, nullable=True),
        sa.CheckConstraint("status IN ('pending', 'sending', 'sent', 'failed', 'dead')",
                           name=op.f("ck_outbox_messages_status_valid")),
        sa.CheckConstraint("channel IN ('email', 'chat')",
                           name=op.f("ck_outbox_messages_channel_valid")),
        sa.CheckConstraint("kind IN ('outreach', 'alert', 'digest')",
                           name=op.f("ck_outbox_messages_kind_valid")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_messages")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_outbox_messages_dedupe_key")),
    )
    op.create_index("ix_outbox_messages_due", "outbox_messages", ["status", "next_attempt_at"],
                    unique=False)
    op.create_index("ix_outbox_messages_created_at", "outbox_messages", ["created_at"],
                    unique=False)

    op.create_table(
        "outreach_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("requested", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outreach_batches")),
        sa.UniqueConstraint("token", name=op.f("uq_outreach_batches_token")),
    )
    op.create_table(
        "outreach_contacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("freelancer_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("stripe_account_id", sa.String(length=255), nullable=True),
        sa.Column("requirements", _JSON, nullable=False),
        sa.Column("deadline", _UTC, nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("link_id", sa.String(length=36), nullable=True),
        sa.Column("link_issued_at", _UTC, nullable=True),
        sa.Column("link_expires_at", _UTC, nullable=True),
        sa.Column("link_opened_at", _UTC, nullable=True),
        sa.Column("link_attempt", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["outreach_batches.id"],
                                name=op.f("fk_outreach_contacts_batch_id_outreach_batches")),
        sa.ForeignKeyConstraint(["freelancer_id"], ["freelancers.id"],
                                name=op.f("fk_outreach_contacts_freelancer_id_freelancers"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["message_id"], ["outbox_messages.id"],
                                name=op.f("fk_outreach_contacts_message_id_outbox_messages")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outreach_contacts")),
        sa.UniqueConstraint("batch_id", "freelancer_id",
                            name="uq_outreach_contacts_batch_freelancer"),
        sa.UniqueConstraint("link_id", name=op.f("uq_outreach_contacts_link_id")),
    )
    op.create_index("ix_outreach_contacts_freelancer_id", "outreach_contacts",
                    ["freelancer_id", "created_at"], unique=False)

    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("params", _JSON, nullable=False),
        sa.Column("email_recipients", sa.Text(), nullable=False),
        sa.Column("chat", sa.Boolean(), nullable=False),
        sa.Column("digest", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=True),
        sa.Column("updated_at", _UTC, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_rules")),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("condition_key", sa.String(length=255), nullable=False),
        sa.Column("open_key", sa.String(length=300), nullable=True),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("details", _JSON, nullable=False),
        sa.Column("opened_at", _UTC, nullable=False),
        sa.Column("last_seen_at", _UTC, nullable=False),
        sa.Column("cleared_at", _UTC, nullable=True),
        sa.Column("notified_at", _UTC, nullable=True),
        sa.CheckConstraint("severity IN ('error', 'warning')",
                           name=op.f("ck_alerts_severity_valid")),
        sa.ForeignKeyConstraint(["rule_id"], ["alert_rules.id"],
                                name=op.f("fk_alerts_rule_id_alert_rules"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("open_key", name=op.f("uq_alerts_open_key")),
    )
    op.create_index("ix_alerts_opened_at", "alerts", ["opened_at"], unique=False)
    op.create_index("ix_alerts_rule_id", "alerts", ["rule_id", "opened_at"], unique=False)
    op.create_index("ix_alerts_notified_at", "alerts", ["notified_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_alerts_notified_at", table_name="alerts")
    op.drop_index("ix_alerts_rule_id", table_name="alerts")
    op.drop_index("ix_alerts_opened_at", table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("alert_rules")
    op.drop_index("ix_outreach_contacts_freelancer_id", table_name="outreach_contacts")
    op.drop_table("outreach_contacts")
    op.drop_table("outreach_batches")
    op.drop_index("ix_outbox_messages_created_at", table_name="outbox_messages")
    op.drop_index("ix_outbox_messages_due", table_name="outbox_messages")
    op.drop_table("outbox_messages")
