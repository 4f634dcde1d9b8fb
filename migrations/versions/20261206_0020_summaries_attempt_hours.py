"""summaries: connection attempts per start hour × outcome (``attempt_hours``), so the
Overview's success rates count at most half an hour of attempts at each window end (issue 22);
only the new kind's triggers are created and only it is counted

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 09:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    from lib.summaries import maintenance

    maintenance.add_kind(op.get_bind(), "attempt_hours")


def downgrade() -> None:
    from lib.summaries.ddl import drop_trigger_set

    connection = op.get_bind()
    drop_trigger_set(connection, "summary_attempt_hours_connection_attempts",
                     "connection_attempts")
    for table in ("summary_counts", "summary_deltas"):
        connection.exec_driver_sql(f"DELETE FROM {table} WHERE kind = 'attempt_hours'")
