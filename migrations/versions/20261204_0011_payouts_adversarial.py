"""payouts under adversarial faults (issue 17): reversal lifecycle, bulk row keys, decisions

- ``payout_reversals`` gets the payout's lifecycle: a status check, the first claim
  (``submitted_at``, from which Stripe's key window is counted), ``updated_at`` for stale
  claims, two-person approval columns and the client's request token (a retried API call finds
  its row).
- ``payouts.bulk_row_key`` identifies a bulk row by its content, so a re-saved sheet cannot make
  its rows new payouts; ``payouts.reference`` keeps a file's reference column. Existing bulk
  rows are backfilled with the key their content gives (the first row of each content only:
  older duplicates stay keyless, they are history).
- ``settlement_decisions``: two people's decision on a row that no retry may settle.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 19:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import lib.db

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REVERSAL_STATUSES = ("pending_approval", "pending", "submitted", "succeeded", "failed",
                      "unknown", "rejected")


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    with op.batch_alter_table("payout_reversals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_request_token", sa.String(length=255),
                                      nullable=True))
        batch_op.add_column(sa.Column("approved_by", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("approved_at", lib.db.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column("rejected_by", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("rejection_reason", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("submitted_at", lib.db.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column("updated_at", lib.db.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_payout_reversals_client_request_token"), ["client_request_token"])
        batch_op.create_check_constraint(
            batch_op.f("ck_payout_reversals_status_valid"), _in("status", _REVERSAL_STATUSES))
        batch_op.create_index("ix_payout_reversals_status", ["status"], unique=False)
    # Rows written before: their first claim and last change are what is known of them.
    op.execute("UPDATE payout_reversals SET updated_at = COALESCE(completed_at, created_at), "
               "submitted_at = created_at WHERE status <> 'pending'")
    op.execute("UPDATE payout_reversals SET updated_at = created_at WHERE updated_at IS NULL")
    with op.batch_alter_table("payout_reversals", schema=None) as batch_op:
        batch_op.alter_column("updated_at", existing_type=lib.db.UTCDateTime(timezone=True),
                              nullable=False)

    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bulk_row_key", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("reference", sa.String(length=100), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_payouts_bulk_row_key"),
                                          ["bulk_row_key"])
    _backfill_bulk_row_keys()

    op.create_table(
        "settlement_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=20), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("payout_id", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("stripe_object_id", sa.String(length=255), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("proposed_by", sa.String(length=200), nullable=False),
        sa.Column("proposed_at", lib.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_at", lib.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("subject IN ('payout', 'reversal')",
                           name=op.f("ck_settlement_decisions_subject_valid")),
        sa.CheckConstraint("outcome IN ('paid', 'not_paid')",
                           name=op.f("ck_settlement_decisions_outcome_valid")),
        sa.CheckConstraint("status IN ('open', 'confirmed', 'withdrawn')",
                           name=op.f("ck_settlement_decisions_status_valid")),
        sa.ForeignKeyConstraint(["payout_id"], ["payouts.id"],
                                name=op.f("fk_settlement_decisions_payout_id_payouts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_decisions")),
    )
    with op.batch_alter_table("settlement_decisions", schema=None) as batch_op:
        batch_op.create_index("ix_settlement_decisions_open", ["subject", "subject_id"],
                              unique=True, sqlite_where=sa.text("status = 'open'"),
                              postgresql_where=sa.text("status = 'open'"))
        batch_op.create_index("ix_settlement_decisions_payout_id", ["payout_id"], unique=False)


def _backfill_bulk_row_keys() -> None:
    # The key function of the code that writes new rows, so old and new rows of one content
    # meet on the unique column.
    from lib.payouts.bulk_keys import bulk_row_key

    bind = op.get_bind()
    rows = bind.execute(sa.text(
        "SELECT id, freelancer_id, amount_minor, currency, description FROM payouts "
        "WHERE bulk_fingerprint IS NOT NULL ORDER BY id")).all()
    seen: set[str] = set()
    for payout_id, freelancer_id, amount_minor, currency, description in rows:
        key = bulk_row_key(freelancer_id=freelancer_id, amount_minor=amount_minor,
                           currency=currency, description=description or "", reference=None)
        if key in seen:
            continue
        seen.add(key)
        bind.execute(sa.text("UPDATE payouts SET bulk_row_key = :key WHERE id = :id"),
                     {"key": key, "id": payout_id})


def downgrade() -> None:
    with op.batch_alter_table("settlement_decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_settlement_decisions_payout_id")
        batch_op.drop_index("ix_settlement_decisions_open")
    op.drop_table("settlement_decisions")
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_payouts_bulk_row_key"), type_="unique")
        batch_op.drop_column("reference")
        batch_op.drop_column("bulk_row_key")
    with op.batch_alter_table("payout_reversals", schema=None) as batch_op:
        batch_op.drop_index("ix_payout_reversals_status")
        batch_op.drop_constraint(batch_op.f("ck_payout_reversals_status_valid"), type_="check")
        batch_op.drop_constraint(batch_op.f("uq_payout_reversals_client_request_token"),
                                 type_="unique")
        for column in ("updated_at", "submitted_at", "rejection_reason", "rejected_by",
                       "approved_at", "approved_by", "client_request_token"):
            batch_op.drop_column(column)
