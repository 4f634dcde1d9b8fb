"""bank_payouts, requirement_changes, bulk_previews: what finance looks at (issue 21)

- ``bank_payouts``: connected accounts' own payouts to their bank, from the Connect webhooks'
  ``payout.*`` events (until now only stored as events), for the Failed bank payouts page.
- ``requirement_changes``: what Stripe started or stopped asking each freelancer's account for,
  kept from account updates, for the freelancer's timeline and the requirement ageing report.
- ``bulk_previews``: the bulk payout file each operator is previewing, counted as committed
  money on the Funding page.
- ``ix_audit_log_target``: the timeline's audit entries by target.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-04 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import lib.db

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "bank_payouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stripe_payout_id", sa.String(length=255), nullable=False),
        sa.Column("stripe_account_id", sa.String(length=255), nullable=False),
        sa.Column("freelancer_id", sa.Integer(), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("failure_code", sa.String(length=100), nullable=True),
        sa.Column("failure_message", sa.Text(), nullable=True),
        sa.Column("arrival_date", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("stripe_created", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("event_created", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("settled_at", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("raw", JSONType, nullable=False),
        sa.Column("updated_at", lib.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'in_transit', 'paid', 'failed', 'canceled')",
            name=op.f("ck_bank_payouts_status_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["freelancer_id"], ["freelancers.id"],
            name=op.f("fk_bank_payouts_freelancer_id_freelancers"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_payouts")),
        sa.UniqueConstraint("stripe_payout_id", name=op.f("uq_bank_payouts_stripe_payout_id")),
    )
    with op.batch_alter_table("bank_payouts", schema=None) as batch_op:
        batch_op.create_index("ix_bank_payouts_status", ["status", "settled_at"], unique=False)
        batch_op.create_index("ix_bank_payouts_freelancer_id",
                              ["freelancer_id", "stripe_created"], unique=False)
        batch_op.create_index("ix_bank_payouts_stripe_account_id", ["stripe_account_id"],
                              unique=False)

    op.create_table(
        "requirement_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("freelancer_id", sa.Integer(), nullable=False),
        sa.Column("observed_at", lib.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=True),
        sa.Column("deadline", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("previous_deadline", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("added", JSONType, nullable=False),
        sa.Column("removed", JSONType, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["connected_accounts.id"],
            name=op.f("fk_requirement_changes_account_id_connected_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["freelancer_id"], ["freelancers.id"],
            name=op.f("fk_requirement_changes_freelancer_id_freelancers"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_requirement_changes")),
    )
    with op.batch_alter_table("requirement_changes", schema=None) as batch_op:
        batch_op.create_index("ix_requirement_changes_freelancer_id",
                              ["freelancer_id", "observed_at"], unique=False)
        batch_op.create_index("ix_requirement_changes_account_id",
                              ["account_id", "observed_at"], unique=False)

    op.create_table(
        "bulk_previews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operator", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("previewed_at", lib.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("totals", JSONType, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_previews")),
        sa.UniqueConstraint("operator", name=op.f("uq_bulk_previews_operator")),
    )
    # A freelancer's timeline reads the audit entries about them, their payouts and accounts.
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_target", ["target", "occurred_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_target")
    op.drop_table("bulk_previews")
    with op.batch_alter_table("requirement_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_requirement_changes_account_id")
        batch_op.drop_index("ix_requirement_changes_freelancer_id")
    op.drop_table("requirement_changes")
    with op.batch_alter_table("bank_payouts", schema=None) as batch_op:
        batch_op.drop_index("ix_bank_payouts_stripe_account_id")
        batch_op.drop_index("ix_bank_payouts_freelancer_id")
        batch_op.drop_index("ix_bank_payouts_status")
    op.drop_table("bank_payouts")
