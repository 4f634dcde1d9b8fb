"""index webhook events by (status, received_at): the oldest waiting event and the failures
newest first by one seek each, at millions of events (issue 22)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 23:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_webhook_events_status_received_at", "webhook_events",
                    ["status", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_events_status_received_at", table_name="webhook_events")
