"""summaries: the finer time-to-connect buckets behind the weekly median (issue 22); every
summary trigger reinstalled from ``lib.summaries`` and every summary recounted

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 23:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    from lib.summaries import maintenance

    maintenance.reinstall(op.get_bind())


def downgrade() -> None:
    """Nothing to undo: the triggers are generated from the code in place, and 0014's readers
    never read the finer buckets."""
