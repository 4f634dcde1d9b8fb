"""covering indexes for the dashboard's aggregates at 100,000 accounts (issue 7)

Measured with ``python -m bench.pages`` on a generated database (100,000 freelancers, 1,000,000
connection attempts, 200,000 payouts): the Overview, Connection metrics, Payouts, Webhooks and
Audit log pages spent their time looking up one wide table row per attempt, payout or event
in a date range. These indexes hold every column those aggregates read, so the range is read
from the index alone (SQLite "COVERING INDEX", PostgreSQL index-only scans):

- connection_attempts (started_at, outcome, method, failure_reason, freelancer_id, returned_at,
  finished_at) replaces (started_at); (outcome, started_at, method, failure_reason, finished_at)
  replaces (outcome), so a count of one outcome over a range is a range count and the failure
  reasons and times to connect are read from the index;
- payouts (status, created_at, currency, amount_minor) and (created_at, currency, status,
  amount_minor) replace (status) and (created_at); (freelancer_id, status) replaces
  (freelancer_id): "was this freelancer paid" is one seek;
- webhook_events (type, status, id) replaces (type);
- audit_log (result) is new: the Result filter's choices.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (table, index, columns before, columns after); an empty "before" is a new index.
CHANGES: tuple[tuple[str, str, list[str], list[str]], ...] = (
    ("connection_attempts", "ix_connection_attempts_started_at", ["started_at"],
     ["started_at", "outcome", "method", "failure_reason", "freelancer_id", "returned_at",
      "finished_at"]),
    ("connection_attempts", "ix_connection_attempts_outcome", ["outcome"],
     ["outcome", "started_at", "method", "failure_reason", "finished_at"]),
    ("payouts", "ix_payouts_status", ["status"],
     ["status", "created_at", "currency", "amount_minor"]),
    ("payouts", "ix_payouts_created_at", ["created_at"],
     ["created_at", "currency", "status", "amount_minor"]),
    ("payouts", "ix_payouts_freelancer_id", ["freelancer_id"], ["freelancer_id", "status"]),
    ("webhook_events", "ix_webhook_events_type", ["type"], ["type", "status", "id"]),
    ("audit_log", "ix_audit_log_result", [], ["result"]),
)


def upgrade() -> None:
    for table, name, before, after in CHANGES:
        if before:
            op.drop_index(name, table_name=table)
        op.create_index(name, table, after, unique=False)


def downgrade() -> None:
    for table, name, before, _after in reversed(CHANGES):
        op.drop_index(name, table_name=table)
        if before:
            op.create_index(name, table, before, unique=False)
