"""funnel_freelancers: each freelancer's newest attempt, came-back and succeeded days with their
verified and paid flags, kept by triggers, and the funnel's per-day summaries over them
(issue 22); backfilled from the existing rows

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 03:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    from lib.summaries import funnel, maintenance

    op.create_table(
        "funnel_freelancers",
        sa.Column("freelancer_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("issued_day", sa.String(10), nullable=False),
        sa.Column("returned_day", sa.String(10), nullable=False),
        sa.Column("connected_day", sa.String(10), nullable=False),
        sa.Column("verified", sa.Integer(), nullable=False),
        sa.Column("paid", sa.Integer(), nullable=False),
    )
    connection = op.get_bind()
    maintenance.drop_triggers(connection)
    # Filled before any trigger is back: one INSERT … SELECT, not a trigger per freelancer.
    funnel.reconcile(connection)
    maintenance.install_triggers(connection)
    maintenance.rebuild(connection)


def downgrade() -> None:
    from lib.summaries import funnel

    connection = op.get_bind()
    funnel.drop_triggers(connection)
    for kind in ("funnel_issued", "funnel_returned", "funnel_connected"):
        for table in ("summary_counts", "summary_deltas"):
            connection.exec_driver_sql(f"DELETE FROM {table} WHERE kind = '{kind}'")
        if connection.dialect.name == "postgresql":
            # Dropping the table drops its triggers; their functions stay unless dropped.
            connection.exec_driver_sql(
                f"DROP FUNCTION IF EXISTS summary_{kind}_funnel_freelancers() CASCADE")
    op.drop_table("funnel_freelancers")
