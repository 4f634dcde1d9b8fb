"""The worker's scheduled jobs: each runs once per interval across every worker.

A job is a row of ``scheduled_jobs``. To run it a worker claims the row with one conditional
UPDATE (``… WHERE next_run_at <= now AND (no lease OR the lease expired)``): on PostgreSQL the
row lock makes a second claimant re-check the condition after the first commits and find it
false; on SQLite the write lock serialises them. So whichever worker comes first runs the job
and the others skip it until ``next_run_at``. The claim is a lease like an event's: renewed
while the job runs, taken over if its worker dies. The outcome (ok with a one-line result, or
failed with the error) and the next run time are written when it finishes; a failed run is
tried again after ``RETRY_FAILED_AFTER`` rather than a whole interval later.

The jobs: the account sync (every ``SYNC_INTERVAL_SECONDS``), purging spent and expired OAuth
states, marking abandoned connection attempts, and the daily reconciliation (its report is
stored, ``lib.reconciliation_runs``). Other issues add theirs with :func:`register_job` (the
ops alert checks plug in there): the worker runs every registered job.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from lib.connection_attempts import abandon_stale_attempts
from lib.db import utcnow
from lib.dml import rowcount
from lib.models import JobStatus, ScheduledJob
from lib.oauth_states import purge_states
from lib.reconciliation_runs import run_scheduled_reconciliation
from lib.roles import Operator, Role
from lib.settings import Settings
from lib.stripe_gateway import StripeGateway
from lib.sync import sync_all_accounts

logger = logging.getLogger(__name__)

#: Who the scheduled jobs act as (audit entries name it).
WORKER_OPERATOR = Operator(username="system:worker", roles=frozenset({Role.ADMIN}))
#: A failed run is tried again this soon (or after its interval, if that is shorter).
RETRY_FAILED_AFTER = timedelta(minutes=10)
MAX_RESULT_CHARS = 2000


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a job may use: the database, Stripe and the settings."""

    session_factory: sessionmaker[Session]
    gateway: StripeGateway
    settings: Settings


@dataclass(frozen=True, slots=True)
class Job:
    """A recurring job: its name (the row's key), how often, and what it does.

    ``run`` returns a one-line result for the dashboard; it raises when the run failed.
    """

    name: str
    interval: timedelta
    run: Callable[[JobContext], str]
    description: str = ""


def _sync_accounts(ctx: JobContext) -> str:
    report = sync_all_accounts(ctx.session_factory, gateway=ctx.gateway,
                               operator=WORKER_OPERATOR)
    return (f"synced {report.synced} account(s) in {report.pages} page(s), "
            f"{report.skipped_stale} already newer, {report.seconds:.1f} s")


def _purge_oauth_states(ctx: JobContext) -> str:
    with ctx.session_factory.begin() as session:
        purged = purge_states(session)
    return f"purged {purged} spent or expired OAuth state(s)"


def _abandon_attempts(ctx: JobContext) -> str:
    with ctx.session_factory.begin() as session:
        abandoned = abandon_stale_attempts(session)
    return f"marked {abandoned} connection attempt(s) abandoned"


def _reconcile(ctx: JobContext) -> str:
    stored = run_scheduled_reconciliation(ctx.session_factory, gateway=ctx.gateway,
                                          operator=WORKER_OPERATOR)
    return (f"report #{stored.id}: {stored.summary.get('transfers_seen', 0)} transfer(s), "
            f"{stored.mismatches} mismatch(es), {stored.resolved} unknown(s) settled")


_REGISTERED: list[Callable[[Settings], Job]] = []


def register_job(build: Callable[[Settings], Job]) -> None:
    """Add a job every worker runs (built from the settings when the worker starts)."""
    _REGISTERED.append(build)


def default_jobs(settings: Settings) -> list[Job]:
    """The product's jobs, then every registered one by name.

    By name, not by registration: registration follows whichever module happened to be
    imported first, so the order would differ between a worker and a test run.
    """
    # The features that plug jobs in register them when imported (a lazy import: they import
    # this module for Job and register_job).
    import lib.alerts
    import lib.summaries.runs  # noqa: F401

    jobs = [
        Job("sync_accounts", timedelta(seconds=settings.sync_interval_seconds), _sync_accounts,
            "Re-read every connected account from Stripe into the mirror."),
        Job("purge_oauth_states", timedelta(hours=1), _purge_oauth_states,
            "Delete OAuth states spent or expired over a day ago."),
        Job("abandon_connection_attempts", timedelta(hours=1), _abandon_attempts,
            "Mark connection attempts pending for over a day as abandoned."),
        Job("reconciliation", timedelta(days=1), _reconcile,
            "Reconcile the last two days of Stripe transfers with the ledger; store the report."),
    ]
    return jobs + sorted((build(settings) for build in _REGISTERED), key=lambda job: job.name)


# ---- claiming and finishing a run ---------------------------------------------------------------


def _ensure_row(session: Session, job: Job, now: datetime) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(ScheduledJob).values(
        name=job.name, interval_seconds=int(job.interval.total_seconds()), next_run_at=now,
        runs=0, failures=0,
    ).on_conflict_do_nothing(index_elements=["name"]))


def claim_job(
    factory: sessionmaker[Session], *, job: Job, worker_id: str, lease: timedelta,
    now: datetime | None = None,
) -> str | None:
    """Take the job's run if it is due and nobody holds it; returns the lease token or None."""
    moment = now or utcnow()
    token = str(uuid.uuid4())
    with factory.begin() as session:
        _ensure_row(session, job, moment)
        claimed = rowcount(session.execute(
            update(ScheduledJob)
            .where(ScheduledJob.name == job.name, ScheduledJob.next_run_at <= moment,
                   or_(ScheduledJob.lease_token.is_(None),
                       ScheduledJob.lease_expires_at < moment))
            .values(lease_token=token, leased_by=worker_id[:200],
                    lease_expires_at=moment + lease, last_started_at=moment,
                    interval_seconds=int(job.interval.total_seconds()))
            .execution_options(synchronize_session=False)
        ))
    return token if claimed else None


def finish_job(
    factory: sessionmaker[Session], *, job: Job, token: str, started: datetime,
    status: JobStatus, result: str, now: datetime | None = None,
) -> bool:
    """Record a run's outcome and when the job is due next; False if the lease was lost."""
    moment = now or utcnow()
    if status is JobStatus.OK:
        next_run = started + job.interval
    else:
        next_run = moment + min(job.interval, RETRY_FAILED_AFTER)
    with factory.begin() as session:
        done = rowcount(session.execute(
            update(ScheduledJob)
            .where(ScheduledJob.name == job.name, ScheduledJob.lease_token == token)
            .values(lease_token=None, lease_expires_at=None, last_finished_at=moment,
                    last_status=status.value, last_result=result[:MAX_RESULT_CHARS],
                    next_run_at=next_run, runs=ScheduledJob.runs + 1,
                    failures=(ScheduledJob.failures + 1) if status is JobStatus.FAILED else 0)
            .execution_options(synchronize_session=False)
        ))
    return bool(done)


def release_job(factory: sessionmaker[Session], *, job: Job, token: str) -> None:
    """Give a claimed run back unstarted (the worker is stopping): due again at once."""
    with factory.begin() as session:
        session.execute(
            update(ScheduledJob)
            .where(ScheduledJob.name == job.name, ScheduledJob.lease_token == token)
            .values(lease_token=None, lease_expires_at=None)
            .execution_options(synchronize_session=False))


def renew_job_leases(factory: sessionmaker[Session], *, tokens: list[str],
                     lease: timedelta, now: datetime | None = None) -> None:
    """Extend the leases of the runs this worker is in the middle of."""
    if not tokens:
        return
    moment = now or utcnow()
    with factory.begin() as session:
        session.execute(
            update(ScheduledJob).where(ScheduledJob.lease_token.in_(tokens))
            .values(lease_expires_at=moment + lease)
            .execution_options(synchronize_session=False))
