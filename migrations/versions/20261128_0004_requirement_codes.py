"""requirement_codes: one row per (account, requirements list, code), backfilled from the mirror

The Requirements page counted codes by expanding every account's JSON lists on each load (about
two seconds at 100,000 accounts); it now aggregates this table (see ``lib.requirement_index``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

import lib.db

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "requirement_codes",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.String(length=30), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("deadline", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "bucket IN ('past_due', 'currently_due', 'eventually_due', 'pending_verification')",
            name=op.f("ck_requirement_codes_bucket_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["connected_accounts.id"],
            name=op.f("fk_requirement_codes_account_id_connected_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "bucket", "code", name=op.f("pk_requirement_codes")),
    )
    with op.batch_alter_table("requirement_codes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_requirement_codes_bucket_code",
            ["bucket", "code", "deadline", "account_id"],
            unique=False,
        )
    _backfill()


def _backfill() -> None:
    # The same rebuild the synthetic-data generator uses, inside this migration's transaction.
    from lib.requirement_index import rebuild

    with Session(bind=op.get_bind()) as session:
        # The summary tables come later (0013), which counts these rows itself.
        rebuild(session=session, summaries=False)


def downgrade() -> None:
    with op.batch_alter_table("requirement_codes", schema=None) as batch_op:
        batch_op.drop_index("ix_requirement_codes_bucket_code")
    op.drop_table("requirement_codes")
