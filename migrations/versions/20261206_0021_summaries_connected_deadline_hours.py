"""summaries: freelancers connected and requirement deadlines per hour (``connected_hours``,
``deadline_hours``), so the Overview's other windows count at most half an hour of rows at each
end too (issue 22); only the new kinds' triggers are created and only they are counted

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TRIGGERS = (("summary_connected_hours_freelancers", "freelancers"),
             ("summary_deadline_hours_connected_accounts", "connected_accounts"),
             ("summary_deadline_hours_freelancers", "freelancers"))


def upgrade() -> None:
    from lib.summaries import maintenance

    for kind in ("connected_hours", "deadline_hours"):
        maintenance.add_kind(op.get_bind(), kind)


def downgrade() -> None:
    from lib.summaries.ddl import drop_trigger_set

    connection = op.get_bind()
    for name, table in _TRIGGERS:
        drop_trigger_set(connection, name, table)
    for table in ("summary_counts", "summary_deltas"):
        connection.exec_driver_sql(
            f"DELETE FROM {table} WHERE kind IN ('connected_hours', 'deadline_hours')")
