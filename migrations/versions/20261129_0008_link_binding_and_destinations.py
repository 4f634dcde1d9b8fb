"""onboarding URLs work once; new payout destinations await confirmation; page links revocable
(issue 19)

- ``connection_attempts.refresh_used_at`` / ``return_used_at``: an onboarding link's refresh and
  return URLs are each spent once, by a conditional UPDATE, so an old URL replayed from a
  browser's history or an email scanner's log cannot act again.
- ``freelancers.unconfirmed_account_id`` (indexed: the Accounts page lists them),
  ``destination_confirmed_at`` / ``destination_confirmed_by``: the account a connect flow made a
  freelancer's payout destination is held by preflight until confirmed. Existing connections are
  left confirmed (NULL): they were made, and paid, before the hold existed.
- ``freelancers.page_access_generation``: carried by every payment-settings link and session;
  raising it revokes them all.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import lib.db

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_UTC = lib.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("connection_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refresh_used_at", _UTC, nullable=True))
        batch_op.add_column(sa.Column("return_used_at", _UTC, nullable=True))
    with op.batch_alter_table("freelancers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unconfirmed_account_id", sa.String(length=255),
                                      nullable=True))
        batch_op.add_column(sa.Column("destination_confirmed_at", _UTC, nullable=True))
        batch_op.add_column(sa.Column("destination_confirmed_by", sa.String(length=200),
                                      nullable=True))
        batch_op.add_column(sa.Column("page_access_generation", sa.Integer(), nullable=False,
                                      server_default="0"))
        batch_op.create_index("ix_freelancers_unconfirmed_account_id",
                              ["unconfirmed_account_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("freelancers", schema=None) as batch_op:
        batch_op.drop_index("ix_freelancers_unconfirmed_account_id")
        batch_op.drop_column("page_access_generation")
        batch_op.drop_column("destination_confirmed_by")
        batch_op.drop_column("destination_confirmed_at")
        batch_op.drop_column("unconfirmed_account_id")
    with op.batch_alter_table("connection_attempts", schema=None) as batch_op:
        batch_op.drop_column("return_used_at")
        batch_op.drop_column("refresh_used_at")
