"""summaries: every account with anything due counted once per deadline day under the
``requirements`` kind's ('', '') key, so the Requirements due page's totals are read, not
counted (issue 22); the kind recounted from the requirement index

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 06:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    from lib.requirement_index import rebuild_summary

    rebuild_summary(op.get_bind())


def downgrade() -> None:
    for table in ("summary_counts", "summary_deltas"):
        op.get_bind().exec_driver_sql(
            f"DELETE FROM {table} WHERE kind = 'requirements' AND k1 = '' AND k2 = ''")
