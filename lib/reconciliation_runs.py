"""The daily reconciliation the worker runs, and its stored reports.

The run is ``lib.payouts.reconciliation.reconcile`` called as it is, over the last
``LOOKBACK`` (two days, so a day's late transfers are seen twice), in one transaction with the
settlements it makes — as ``python -m lib.payouts reconcile`` and the Reconciliation page do.
Its report is stored in the same transaction, so a stored report always matches what was
settled; a failed run is stored too, with its error, and raised to the job that ran it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lib.db import utcnow
from lib.errors import ConnectOpsError
from lib.models import JobStatus, ReconciliationRun
from lib.payouts.reconciliation import MISMATCH_KINDS, RESOLVED_PAID, RESOLVED_REVERSAL, reconcile
from lib.roles import Action, Operator, authorize
from lib.stripe_gateway import StripeGateway

LOOKBACK = timedelta(days=2)


@dataclass(frozen=True, slots=True)
class StoredReport:
    """One stored run, as the dashboard shows it."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    period_start: datetime
    period_end: datetime
    triggered_by: str
    status: str
    mismatches: int
    resolved: int
    summary: dict[str, Any]
    items: list[dict[str, Any]]
    error: str | None


def run_scheduled_reconciliation(
    factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    now: datetime | None = None, lookback: timedelta = LOOKBACK,
) -> StoredReport:
    """Reconcile ``[now - lookback, now)`` and store the report (or the failure)."""
    started = now or utcnow()
    since = started - lookback
    try:
        # Reconciliation reads Stripe with no transaction open and commits its own settlements;
        # only the report is written here, in one short transaction.
        report = reconcile(factory, gateway=gateway, operator=operator, since=since)
        rows = report.rows()
        with factory.begin() as session:
            run = ReconciliationRun(
                started_at=started, finished_at=utcnow(), period_start=since,
                period_end=report.until, triggered_by=operator.username,
                status=JobStatus.OK.value,
                mismatches=sum(1 for r in rows if r["kind"] in MISMATCH_KINDS),
                resolved=sum(1 for r in rows if r["kind"] in (RESOLVED_PAID, RESOLVED_REVERSAL)),
                summary=report.summary(), items=rows)
            session.add(run)
            session.flush()
            return _stored(run)
    except ConnectOpsError as exc:
        with factory.begin() as session:
            session.add(ReconciliationRun(
                started_at=started, finished_at=utcnow(), period_start=since,
                period_end=started, triggered_by=operator.username,
                status=JobStatus.FAILED.value, summary={}, items=[],
                error=f"{exc.code}: {exc.message}"))
        raise


def latest_reports(session: Session, *, operator: Operator, limit: int = 10
                   ) -> list[StoredReport]:
    """The most recent stored runs, newest first."""
    authorize(operator, Action.RECONCILE, session=session)
    runs = session.scalars(select(ReconciliationRun)
                           .order_by(ReconciliationRun.started_at.desc(),
                                     ReconciliationRun.id.desc())
                           .limit(limit))
    return [_stored(run) for run in runs]


def _stored(run: ReconciliationRun) -> StoredReport:
    return StoredReport(
        id=run.id, started_at=run.started_at, finished_at=run.finished_at,
        period_start=run.period_start, period_end=run.period_end,
        triggered_by=run.triggered_by, status=run.status, mismatches=run.mismatches,
        resolved=run.resolved, summary=dict(run.summary or {}), items=list(run.items or []),
        error=run.error)
