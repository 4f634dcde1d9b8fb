"""index freelancers by country: the Accounts page's country choices (issue 7)

The choices are the countries of the mirrored accounts and the countries freelancers declared.
``connected_accounts.country`` was indexed; ``freelancers.country`` was not, so listing the
choices read all 100,000 freelancers on every run of the page. With the index both sides are
listed by a loose index scan: one seek per country, whatever the number of freelancers.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("freelancers", schema=None) as batch_op:
        batch_op.create_index("ix_freelancers_country", ["country"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("freelancers", schema=None) as batch_op:
        batch_op.drop_index("ix_freelancers_country")
