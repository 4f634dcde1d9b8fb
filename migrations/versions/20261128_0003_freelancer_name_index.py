"""index freelancers by name: the Accounts page lists them by name, 50 at a time

Without it every page of 100,000 freelancers sorts the whole table to find its 50 rows.

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-28 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("freelancers", schema=None) as batch_op:
        batch_op.create_index("ix_freelancers_name", ["name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("freelancers", schema=None) as batch_op:
        batch_op.drop_index("ix_freelancers_name")
