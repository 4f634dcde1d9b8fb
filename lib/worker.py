"""``python -m lib.worker``: processes stored webhook events and runs the scheduled jobs.

Run one or more beside the companion (``make demo`` starts one). Everything a worker holds is
in the database, so any number can run on one PostgreSQL database: events are claimed with
``FOR UPDATE SKIP LOCKED`` (``lib.webhooks.claim_due``) and each scheduled job runs once per
interval across all of them (``lib.jobs``). On SQLite run one (the file's write lock would
serialise several anyway).

Four threads:
- the main one claims due events in small batches and processes them one at a time, with
  retries and dead-lettering as ``lib.webhooks`` describes;
- a job thread runs the scheduled jobs that are due (a long sync never delays events);
- an outbox thread delivers the outgoing messages (outreach emails, alerts) one at a time,
  paced to ``OUTBOX_RATE_PER_MINUTE``, with retries as ``lib.outbox`` describes;
- a heartbeat thread writes ``worker_heartbeats.last_seen_at`` every
  ``WORKER_HEARTBEAT_SECONDS`` and renews the leases of what the worker holds, so only a dead
  worker's leases expire. The dashboard warns admins when no worker has a fresh heartbeat.

SIGTERM or SIGINT stops it gracefully: the event or job in progress finishes, claimed events
not yet started are given back at once, and the heartbeat is marked stopped. A SIGKILL loses
nothing either: the leases expire and another worker (or this one restarted) takes over.

    python -m lib.worker              # run until stopped
    python -m lib.worker --once       # process what is due now, run due jobs, exit (cron)
    python -m lib.worker --no-jobs    # events only (e.g. more workers for a busy endpoint)
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from types import FrameType

from sqlalchemy import delete, or_, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from lib import jobs as scheduled
from lib import outbox
from lib.cli import CommandContext, run_command
from lib.db import utcnow
from lib.dml import rowcount
from lib.errors import ConnectOpsError
from lib.models import JobStatus, MessageStatus, WebhookStatus, WorkerHeartbeat
from lib.settings import Settings
from lib.stripe_gateway import StripeGateway
from lib.webhooks import (
    Claim,
    RetryPolicy,
    claim_due,
    describe_error,
    process_claim,
    release,
    renew_leases,
)

logger = logging.getLogger(__name__)

#: Events claimed per round trip; the ones not started when the worker stops are given back.
CLAIM_BATCH = 10
#: Heartbeats of workers gone this long are deleted.
FORGET_WORKERS_AFTER = timedelta(days=7)
#: After the database failed, wait this long (doubling, capped) before trying again.
OUTAGE_BACKOFF = (0.5, 30.0)


def new_worker_id() -> str:
    """``host:pid:random``: unique across restarts and machines."""
    return f"{socket.gethostname()[:150]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class _Held:
    """What this worker holds right now (the heartbeat renews these leases). Events by id: one
    claim's token covers its whole batch."""

    events: dict[str, Claim] = field(default_factory=dict)
    jobs: set[str] = field(default_factory=set)
    messages: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Worker:
    """One worker process's loops. ``run()`` blocks until :meth:`stop` is called."""

    def __init__(
        self, factory: sessionmaker[Session], *, gateway: StripeGateway,
        settings: Settings, jobs: list[scheduled.Job] | None = None, events: bool = True,
        worker_id: str | None = None, rng: random.Random | None = None,
        outbox_delivery: bool = True, transports: outbox.Transports | None = None,
    ) -> None:
        self.session_factory = factory
        self.gateway = gateway
        self.settings = settings
        self.jobs = scheduled.default_jobs(settings) if jobs is None else jobs
        self.handle_events = events
        self.worker_id = worker_id or new_worker_id()
        self.policy = RetryPolicy.from_settings(settings)
        self.lease = timedelta(seconds=settings.worker_lease_seconds)
        self.rng = rng or random.Random()
        self.handle_outbox = outbox_delivery
        self.transports = transports
        self.outbox_policy = outbox.OutboxPolicy.from_settings(settings)
        self.throttle = outbox.Throttle(settings.outbox_rate_per_minute)
        self.messages_sent = 0
        self.stopping = threading.Event()
        self.processed = 0
        self.failed = 0
        self._held = _Held()
        self._counts_lock = threading.Lock()

    # ---- one pass (also what tests and ``--once`` drive) ------------------------------------

    def process_due_events(self) -> int:
        """Claim one batch of due events and process it; returns how many were attempted."""
        claims = claim_due(self.session_factory, worker_id=self.worker_id, policy=self.policy,
                           limit=CLAIM_BATCH)
        with self._held.lock:
            self._held.events.update((c.event_id, c) for c in claims)
        attempted = 0
        try:
            for claim in claims:
                if self.stopping.is_set():
                    break
                outcome = process_claim(self.session_factory, gateway=self.gateway,
                                        claim=claim, policy=self.policy, rng=self.rng)
                attempted += 1
                with self._counts_lock:
                    if outcome.status in (WebhookStatus.FAILED, WebhookStatus.DEAD):
                        self.failed += 1
                    else:
                        self.processed += 1
                with self._held.lock:
                    self._held.events.pop(claim.event_id, None)
        finally:
            with self._held.lock:
                unstarted = list(self._held.events.values())
                self._held.events.clear()
            if unstarted:
                given = release(self.session_factory, claims=unstarted)
                logger.info("stopping: gave back %d claimed event(s) not started", given)
        return attempted

    def run_due_jobs(self) -> int:
        """Run every scheduled job that is due and not held elsewhere; returns how many ran."""
        ran = 0
        context = scheduled.JobContext(self.session_factory, self.gateway, self.settings)
        for job in self.jobs:
            if self.stopping.is_set():
                break
            started = utcnow()
            token = scheduled.claim_job(self.session_factory, job=job, worker_id=self.worker_id,
                                        lease=self.lease, now=started)
            if token is None:
                continue
            with self._held.lock:
                self._held.jobs.add(token)
            try:
                result = job.run(context)
                status = JobStatus.OK
                logger.info("job %s: %s", job.name, result)
            except Exception as exc:
                # As for events: whatever a job raised is recorded on its row (the dashboard
                # shows it) and the job is tried again soon; the worker goes on with the rest.
                status, result = JobStatus.FAILED, describe_error(exc)
                logger.error("job %s failed: %s", job.name, result,
                             exc_info=None if isinstance(exc, ConnectOpsError) else exc)
            finally:
                with self._held.lock:
                    self._held.jobs.discard(token)
            scheduled.finish_job(self.session_factory, job=job, token=token, started=started,
                                 status=status, result=result)
            ran += 1
        return ran

    def deliver_due_messages(self) -> int:
        """Deliver one due outgoing message, paced by the throttle; returns 1, or 0 if none."""
        wait = self.throttle.wait_time()
        if wait and self.stopping.wait(wait):
            return 0
        claims = outbox.claim_due(self.session_factory, worker_id=self.worker_id,
                                  policy=self.outbox_policy, limit=1)
        if not claims:
            return 0
        claim = claims[0]
        with self._held.lock:
            self._held.messages.add(claim.token)
        try:
            delivery = outbox.deliver(self.session_factory, settings=self.settings, claim=claim,
                                      policy=self.outbox_policy, transports=self.transports,
                                      rng=self.rng)
        finally:
            with self._held.lock:
                self._held.messages.discard(claim.token)
        self.throttle.sent()
        if delivery.status is MessageStatus.SENT:
            with self._counts_lock:
                self.messages_sent += 1
        return 1

    def drain_outbox(self) -> int:
        """Deliver messages until none is due (tests, ``--once``); returns how many attempts."""
        total = 0
        while not self.stopping.is_set() and self.deliver_due_messages():
            total += 1
        return total

    def drain(self) -> int:
        """Process events until none is due (tests, ``--once``); returns how many."""
        total = 0
        while not self.stopping.is_set():
            done = self.process_due_events()
            if not done:
                return total
            total += done
        return total

    # ---- heartbeat --------------------------------------------------------------------------

    def beat(self) -> None:
        """Write this worker's heartbeat and renew the leases of what it holds."""
        now = utcnow()
        with self._counts_lock:
            processed, failed = self.processed, self.failed
        with self.session_factory.begin() as session:
            found = rowcount(session.execute(
                update(WorkerHeartbeat).where(WorkerHeartbeat.worker_id == self.worker_id)
                .values(last_seen_at=now, events_processed=processed, events_failed=failed)
                .execution_options(synchronize_session=False)))
            if not found:
                session.add(WorkerHeartbeat(
                    worker_id=self.worker_id, hostname=socket.gethostname()[:255],
                    pid=os.getpid(), started_at=now, last_seen_at=now,
                    events_processed=processed, events_failed=failed))
        with self._held.lock:
            event_tokens = sorted({c.token for c in self._held.events.values()})
            job_tokens = list(self._held.jobs)
            message_tokens = sorted(self._held.messages)
        renew_leases(self.session_factory, tokens=event_tokens, lease=self.lease, now=now)
        scheduled.renew_job_leases(self.session_factory, tokens=job_tokens, lease=self.lease,
                                   now=now)
        outbox.renew_leases(self.session_factory, tokens=message_tokens, lease=self.lease,
                            now=now)

    def _mark_stopped(self) -> None:
        now = utcnow()
        with self.session_factory.begin() as session:
            session.execute(
                update(WorkerHeartbeat).where(WorkerHeartbeat.worker_id == self.worker_id)
                .values(last_seen_at=now, stopped_at=now, events_processed=self.processed,
                        events_failed=self.failed)
                .execution_options(synchronize_session=False))
            gone = now - FORGET_WORKERS_AFTER
            session.execute(
                delete(WorkerHeartbeat)
                .where(WorkerHeartbeat.last_seen_at < gone,
                       or_(WorkerHeartbeat.stopped_at.is_not(None),
                           WorkerHeartbeat.last_seen_at < gone))
                .execution_options(synchronize_session=False))

    def _heartbeat_loop(self, done: threading.Event) -> None:
        while not done.wait(self.settings.worker_heartbeat_seconds):
            try:
                self.beat()
            except SQLAlchemyError as exc:
                logger.warning("heartbeat not written: database unreachable (%s)",
                               type(exc).__name__)

    def _loop(self, step: str, work: Callable[[], int]) -> None:
        """Call ``work`` until stopped; idle (or after a database outage) wait a little."""
        backoff = OUTAGE_BACKOFF[0]
        while not self.stopping.is_set():
            try:
                did = work()
                backoff = OUTAGE_BACKOFF[0]
            except SQLAlchemyError as exc:
                # A lost database is the one failure outside a handler: nothing is held that
                # the leases do not cover, so wait and try again.
                logger.warning("%s: database unreachable (%s); retrying in %.1f s", step,
                               type(exc).__name__, backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, OUTAGE_BACKOFF[1])
                continue
            if not did:
                self.stopping.wait(self.settings.worker_poll_seconds)

    # ---- lifecycle --------------------------------------------------------------------------

    def run(self) -> None:
        """Run until :meth:`stop`: events here, jobs and heartbeat in their own threads."""
        logger.info("worker %s started (events: %s, jobs: %s)", self.worker_id,
                    "yes" if self.handle_events else "no",
                    ", ".join(job.name for job in self.jobs) or "none")
        beats_done = threading.Event()
        try:
            self.beat()
        except SQLAlchemyError as exc:
            logger.warning("first heartbeat not written: database unreachable (%s)",
                           type(exc).__name__)
        heart = threading.Thread(target=self._heartbeat_loop, args=(beats_done,),
                                 name="worker-heartbeat", daemon=True)
        heart.start()
        job_thread = None
        if self.jobs:
            job_thread = threading.Thread(target=self._loop, args=("jobs", self.run_due_jobs),
                                          name="worker-jobs", daemon=True)
            job_thread.start()
        outbox_thread = None
        if self.handle_outbox:
            outbox_thread = threading.Thread(
                target=self._loop, args=("outbox", self.deliver_due_messages),
                name="worker-outbox", daemon=True)
            outbox_thread.start()
        try:
            if self.handle_events:
                self._loop("events", self.process_due_events)
            else:
                self.stopping.wait()
        finally:
            self.stopping.set()
            if job_thread is not None:
                job_thread.join()
            if outbox_thread is not None:
                outbox_thread.join()
            beats_done.set()
            heart.join()
            try:
                self._mark_stopped()
            except SQLAlchemyError as exc:
                logger.warning("could not mark the worker stopped (%s)", type(exc).__name__)
            logger.info("worker %s stopped: %d event(s) processed, %d failed attempt(s)",
                        self.worker_id, self.processed, self.failed)

    def stop(self) -> None:
        """Ask the loops to finish what they are doing and return."""
        self.stopping.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--once", action="store_true",
                        help="process what is due now, run the due jobs, then exit")
    parser.add_argument("--no-jobs", action="store_true", help="process events only")
    parser.add_argument("--no-events", action="store_true", help="run scheduled jobs only")
    parser.add_argument("--no-outbox", action="store_true",
                        help="do not deliver outgoing messages (emails, chat)")
    args = parser.parse_args(argv)
    return run_command("connect-ops worker", lambda cli: _run(cli, args),
                       require=("STRIPE_SECRET_KEY",))


def _run(cli: CommandContext, args: argparse.Namespace) -> int:
    worker = Worker(cli.factory, gateway=cli.gateway, settings=cli.settings,
                    jobs=[] if args.no_jobs else None, events=not args.no_events,
                    outbox_delivery=not args.no_outbox)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("worker: %s received, finishing what it holds", signal.Signals(signum).name)
        worker.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if args.once:
        if worker.handle_events:
            worker.drain()
        worker.run_due_jobs()
        if worker.handle_outbox:
            worker.drain_outbox()
    else:
        worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
