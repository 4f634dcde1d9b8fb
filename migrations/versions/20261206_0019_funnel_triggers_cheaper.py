"""funnel_freelancers' PostgreSQL triggers do less per write: a flag's value is computed once
(the UPDATE evaluated it twice) and an UPDATE that keeps a row's owner skips the old side's
query altogether (issue 22: an account upsert's cost). What they keep is unchanged, so nothing
is recounted; on SQLite the triggers are recreated as they were.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 07:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    from lib.summaries import funnel

    funnel.reinstall_triggers(op.get_bind())


def downgrade() -> None:
    # The triggers keep the same rows either way: going down leaves the cheaper ones in place.
    pass
