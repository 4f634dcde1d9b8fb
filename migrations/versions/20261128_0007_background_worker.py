"""background worker: webhook retry state, scheduled jobs, worker heartbeats, stored reconciliations

Issue 18 moved webhook processing out of Stripe's request into ``python -m lib.worker``:

- webhook_events gains ``next_attempt_at`` (a received or failed event is due then), a lease
  (``lease_expires_at``, ``lease_token``, ``leased_by``) and the ``dead`` status (gave up after
  the maximum attempts); ``(status, next_attempt_at)`` is indexed for the claim and
  ``processed_at`` for the dashboard's staleness check (the worker, not the intake, now changes
  what the pages show). Rows waiting
  for processing are due at once; a ``processing`` row gets the two-minute lease the intake
  gave it before.
- scheduled_jobs: one row per recurring job, the lock that runs it once per interval across
  all workers, with its last run's result.
- worker_heartbeats: each worker's last sign of life.
- reconciliation_runs: the daily reconciliation's stored reports.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import lib.db

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_STATUSES_BEFORE = "'received', 'processing', 'processed', 'failed', 'ignored'"
_STATUSES_AFTER = _STATUSES_BEFORE + ", 'dead'"


def upgrade() -> None:
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_attempt_at", lib.db.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column("lease_expires_at", lib.db.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column("lease_token", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("leased_by", sa.String(length=200), nullable=True))
        batch_op.drop_constraint(op.f("ck_webhook_events_status_valid"), type_="check")
        batch_op.create_check_constraint("status_valid", f"status IN ({_STATUSES_AFTER})")
        batch_op.create_index("ix_webhook_events_due", ["status", "next_attempt_at"],
                              unique=False)
        batch_op.create_index("ix_webhook_events_processed_at", ["processed_at"], unique=False)
    events = sa.table("webhook_events", sa.column("status", sa.String),
                      sa.column("received_at", lib.db.UTCDateTime(timezone=True)),
                      sa.column("next_attempt_at", lib.db.UTCDateTime(timezone=True)),
                      sa.column("processing_started_at", lib.db.UTCDateTime(timezone=True)),
                      sa.column("lease_expires_at", lib.db.UTCDateTime(timezone=True)))
    op.execute(events.update().where(events.c.status.in_(["received", "failed"]))
               .values(next_attempt_at=events.c.received_at))
    # The intake's old lease was two minutes from the claim; after that the worker takes over.
    op.execute(events.update().where(events.c.status == "processing")
               .values(lease_expires_at=events.c.processing_started_at))

    op.create_table(
        "scheduled_jobs",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("interval_seconds", sa.Integer(), nullable=False),
        sa.Column("next_run_at", lib.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lease_token", sa.String(length=36), nullable=True),
        sa.Column("leased_by", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_started_at", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_finished_at", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.String(length=20), nullable=True),
        sa.Column("last_result", sa.Text(), nullable=True),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.CheckConstraint("last_status IS NULL OR last_status IN ('ok', 'failed')",
                           name=op.f("ck_scheduled_jobs_last_status_valid")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_scheduled_jobs")),
    )
    op.create_table(
        "worker_heartbeats",
        sa.Column("worker_id", sa.String(length=200), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", lib.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", lib.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("events_processed", sa.Integer(), nullable=False),
        sa.Column("events_failed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_worker_heartbeats")),
    )
    op.create_index("ix_worker_heartbeats_last_seen_at", "worker_heartbeats", ["last_seen_at"],
                    unique=False)
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", lib.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("period_start", lib.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("period_end", lib.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("triggered_by", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("mismatches", sa.Integer(), nullable=False),
        sa.Column("resolved", sa.Integer(), nullable=False),
        sa.Column("summary", _JSON, nullable=False),
        sa.Column("items", _JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('ok', 'failed')",
                           name=op.f("ck_reconciliation_runs_status_valid")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_runs")),
    )
    op.create_index("ix_reconciliation_runs_started_at", "reconciliation_runs", ["started_at"],
                    unique=False)


def downgrade() -> None:
    op.drop_index("ix_reconciliation_runs_started_at", table_name="reconciliation_runs")
    op.drop_table("reconciliation_runs")
    op.drop_index("ix_worker_heartbeats_last_seen_at", table_name="worker_heartbeats")
    op.drop_table("worker_heartbeats")
    op.drop_table("scheduled_jobs")
    events = sa.table("webhook_events", sa.column("status", sa.String))
    # A dead letter was a failure the old code would let Stripe retry.
    op.execute(events.update().where(events.c.status == "dead").values(status="failed"))
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_events_processed_at")
        batch_op.drop_index("ix_webhook_events_due")
        batch_op.drop_constraint(op.f("ck_webhook_events_status_valid"), type_="check")
        batch_op.create_check_constraint("status_valid", f"status IN ({_STATUSES_BEFORE})")
        batch_op.drop_column("leased_by")
        batch_op.drop_column("lease_token")
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("next_attempt_at")
