"""summaries: what succeeded reversals took back, per their payout's day × currency × status
(the Payouts page's "reversed" and "net" columns, issue 22); every summary trigger reinstalled
from ``lib.summaries`` and every summary recounted

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 03:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    from lib.summaries import maintenance

    maintenance.reinstall(op.get_bind())


def downgrade() -> None:
    from lib.summaries.ddl import drop_trigger_set

    connection = op.get_bind()
    for name, table in (("summary_reversed_payout_reversals", "payout_reversals"),
                        ("summary_reversed_payouts", "payouts")):
        drop_trigger_set(connection, name, table)
    for table in ("summary_counts", "summary_deltas"):
        connection.exec_driver_sql(f"DELETE FROM {table} WHERE kind = 'reversed'")
