"""What the dashboard shows about the background worker: its heartbeats, the scheduled jobs'
last and next runs, and the webhook queue.

A worker is alive while its heartbeat is fresh: written every ``WORKER_HEARTBEAT_SECONDS``,
so one missing for :func:`stale_after` means the process is gone (or wedged) even if it never
said goodbye (a SIGKILL, a lost machine). No live worker means stored webhooks wait and jobs
do not run: every admin page says so (``dashboard/worker_health.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lib.db import utcnow
from lib.jobs import Job
from lib.models import ScheduledJob, WebhookEvent, WebhookStatus, WorkerHeartbeat
from lib.records import as_row
from lib.roles import Action, Operator, authorize
from lib.settings import Settings
from lib.summaries.store import read

#: Workers listed on the page: the most recently seen.
MAX_WORKERS = 20


def stale_after(settings: Settings) -> timedelta:
    """How long without a heartbeat before a worker counts as stopped."""
    return timedelta(seconds=max(30.0, 6 * settings.worker_heartbeat_seconds))


@dataclass(frozen=True, slots=True)
class WorkerRow:
    worker_id: str
    hostname: str
    pid: int
    state: str
    started_at: datetime
    last_seen_at: datetime
    stopped_at: datetime | None
    events_processed: int
    events_failed: int

    def to_dict(self) -> dict[str, Any]:
        return as_row(self)


@dataclass(frozen=True, slots=True)
class WorkerHealth:
    """Is any worker alive, and when was one last seen."""

    alive: bool
    last_seen_at: datetime | None
    message: str


def _state(beat: WorkerHeartbeat, now: datetime, stale: timedelta) -> str:
    if beat.stopped_at is not None:
        return "stopped"
    return "running" if beat.last_seen_at >= now - stale else "silent (presumed dead)"


def worker_health(session: Session, *, operator: Operator, stale: timedelta,
                  now: datetime | None = None) -> WorkerHealth:
    """Whether a worker has a fresh heartbeat (one indexed MAX())."""
    authorize(operator, Action.VIEW_WEBHOOKS, session=session)
    moment = now or utcnow()
    last = session.scalar(select(func.max(WorkerHeartbeat.last_seen_at))
                          .where(WorkerHeartbeat.stopped_at.is_(None)))
    if last is not None and last >= moment - stale:
        return WorkerHealth(True, last, "The background worker is running.")
    if last is None:
        seen = session.scalar(select(func.max(WorkerHeartbeat.last_seen_at)))
        when = "No background worker has ever run" if seen is None else (
            f"The background worker stopped at {seen:%Y-%m-%d %H:%M} UTC")
    else:
        when = f"No background worker has reported since {last:%Y-%m-%d %H:%M} UTC"
    return WorkerHealth(False, last, f"{when}: Stripe's webhooks are stored but not processed "
                                     "and the scheduled jobs do not run. Start one with "
                                     "`python -m lib.worker`.")


def workers(session: Session, *, operator: Operator, stale: timedelta,
            now: datetime | None = None) -> list[WorkerRow]:
    """The most recently seen workers, live ones first."""
    authorize(operator, Action.VIEW_WEBHOOKS, session=session)
    moment = now or utcnow()
    beats = session.scalars(select(WorkerHeartbeat)
                            .order_by(WorkerHeartbeat.last_seen_at.desc()).limit(MAX_WORKERS))
    rows = [WorkerRow(b.worker_id, b.hostname, b.pid, _state(b, moment, stale), b.started_at,
                      b.last_seen_at, b.stopped_at, b.events_processed, b.events_failed)
            for b in beats]
    return sorted(rows, key=lambda r: r.state != "running")


@dataclass(frozen=True, slots=True)
class JobRow:
    name: str
    description: str
    every: str
    last_started_at: datetime | None
    last_finished_at: datetime | None
    last_status: str | None
    last_result: str | None
    next_run_at: datetime | None
    running_on: str | None

    def to_dict(self) -> dict[str, Any]:
        return as_row(self)


def _every(interval: timedelta) -> str:
    seconds = int(interval.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0 and seconds >= size:
            count = seconds // size
            return f"every {count} {unit}{'s' if count != 1 else ''}"
    return f"every {seconds} s"


def job_statuses(session: Session, *, operator: Operator, jobs: list[Job],
                 now: datetime | None = None) -> list[JobRow]:
    """Every job the workers run: last run, its result, next run, and who runs it now."""
    authorize(operator, Action.VIEW_WEBHOOKS, session=session)
    moment = now or utcnow()
    stored = {row.name: row for row in session.scalars(select(ScheduledJob))}
    rows = []
    for job in jobs:
        row = stored.get(job.name)
        running = (row.leased_by if row is not None and row.lease_token
                   and row.lease_expires_at and row.lease_expires_at > moment else None)
        rows.append(JobRow(
            name=job.name, description=job.description, every=_every(job.interval),
            last_started_at=row.last_started_at if row else None,
            last_finished_at=row.last_finished_at if row else None,
            last_status=row.last_status if row else None,
            last_result=row.last_result if row else "never run yet",
            next_run_at=row.next_run_at if row else None, running_on=running))
    return rows


@dataclass(frozen=True, slots=True)
class QueueSummary:
    """Stored events by where they are: waiting, being processed, retrying, dead-lettered."""

    waiting: int
    processing: int
    retrying: int
    dead: int
    oldest_waiting_at: datetime | None


def queue_summary(session: Session, *, operator: Operator) -> QueueSummary:
    """Counts of the unfinished events (index range counts) and the oldest one waiting."""
    authorize(operator, Action.VIEW_WEBHOOKS, session=session)
    unfinished = (WebhookStatus.RECEIVED, WebhookStatus.PROCESSING, WebhookStatus.FAILED,
                  WebhookStatus.DEAD)
    # From the events summary (issue 22): at a million accounts the log holds millions of rows.
    counts: dict[str, int] = {}
    for row in read(session, "events", group=("k2",),
                    where={"k2": tuple(s.value for s in unfinished)}):
        counts[row.k2] = counts.get(row.k2, 0) + row.n
    # One seek of the (status, received_at) index.
    oldest = session.scalar(select(WebhookEvent.received_at).where(
        WebhookEvent.status == WebhookStatus.RECEIVED.value)
        .order_by(WebhookEvent.received_at).limit(1))
    return QueueSummary(
        waiting=int(counts.get(WebhookStatus.RECEIVED.value, 0)),
        processing=int(counts.get(WebhookStatus.PROCESSING.value, 0)),
        retrying=int(counts.get(WebhookStatus.FAILED.value, 0)),
        dead=int(counts.get(WebhookStatus.DEAD.value, 0)), oldest_waiting_at=oldest)
