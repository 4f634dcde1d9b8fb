"""The background worker (issue 18): retries, dead letters, leases, graceful stop, scheduled
jobs once per interval across workers, heartbeats. Driven one pass at a time, clock given."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from lib import jobs as scheduled
from lib import webhooks
from lib.db import utcnow
from lib.errors import ConflictError, NotFoundError
from lib.freelancers import create_freelancer
from lib.models import (
    AuditLog,
    JobStatus,
    OAuthState,
    ReconciliationRun,
    ScheduledJob,
    WebhookEvent,
    WebhookStatus,
    WorkerHeartbeat,
)
from lib.oauth_states import issue_state, purge_states
from lib.roles import Operator
from lib.settings import PROJECT_ROOT
from lib.stripe_gateway import StripeGateway
from lib.webhooks import Endpoint, RetryPolicy
from lib.worker import Worker
from scripts.processes import wait_until
from tests.conftest import requires_postgresql
from tests.factories import TEST_SECRET_KEY, make_settings

ADMIN = Operator.from_role_names("alice", ["admin"])
SETTINGS = make_settings(stripe_api_base="http://127.0.0.1:9",
                         stripe_connect_base="http://127.0.0.1:9", webhook_max_attempts=3,
                         worker_poll_seconds=0.01, worker_heartbeat_seconds=0.05)
POLICY = RetryPolicy.from_settings(SETTINGS)
GATEWAY = StripeGateway(SETTINGS)


def _store(session_factory, *ids: str, type_: str = "account.updated") -> None:
    with session_factory.begin() as session:
        for event_id in ids:
            webhooks.store_event(session, event={"id": event_id, "type": type_,
                                                 "livemode": False, "account": "acct_1"},
                                 endpoint=Endpoint.CONNECT, settings=SETTINGS)


def _row(session_factory, event_id: str) -> WebhookEvent:
    with session_factory() as session:
        return session.scalars(select(WebhookEvent).where(
            WebhookEvent.stripe_event_id == event_id)).one()


def _worker(session_factory, **kw) -> Worker:
    return Worker(session_factory, gateway=GATEWAY, settings=SETTINGS,
                  jobs=kw.pop("jobs", []), **kw)


def test_a_failing_event_is_dead_lettered_after_the_last_attempt_and_replayed(
    session_factory, monkeypatch,
) -> None:
    broken = {"yes": True}

    def handler(_f, _g, _event) -> None:
        if broken["yes"]:
            raise RuntimeError("still broken")

    monkeypatch.setitem(webhooks.HANDLERS, "account.updated", handler)
    _store(session_factory, "evt_1")
    now = utcnow()
    for attempt in (1, 2, 3):
        [claim] = webhooks.claim_due(session_factory, worker_id="w", policy=POLICY, now=now)
        assert claim.attempt == attempt
        outcome = webhooks.process_claim(session_factory, gateway=GATEWAY, claim=claim,
                                         policy=POLICY, now=now)
        row = _row(session_factory, "evt_1")
        if attempt < 3:
            assert outcome.status is WebhookStatus.FAILED and row.status == "failed"
            assert row.next_attempt_at is not None
            now = row.next_attempt_at
        else:
            assert outcome.status is WebhookStatus.DEAD
            assert (row.status, row.next_attempt_at, row.error) == (
                "dead", None, "RuntimeError: still broken")
    assert webhooks.claim_due(session_factory, worker_id="w", policy=POLICY,
                              now=now + timedelta(days=30)) == []  # a person decides now

    broken["yes"] = False
    replayed = webhooks.replay_event(session_factory, gateway=GATEWAY, operator=ADMIN,
                                     event_id="evt_1", policy=POLICY)
    assert replayed is not None and replayed.status is WebhookStatus.PROCESSED
    row = _row(session_factory, "evt_1")
    assert (row.status, row.attempts) == ("processed", 1)  # a fresh budget for the replay
    with session_factory() as session:
        assert session.scalars(select(AuditLog.action).where(
            AuditLog.target == "evt_1")).all() == ["webhook.replay"]


def test_only_failed_or_dead_events_replay(session_factory) -> None:
    _store(session_factory, "evt_new")
    with pytest.raises(ConflictError, match="only failed or dead-lettered"):
        webhooks.replay_event(session_factory, gateway=GATEWAY, operator=ADMIN,
                              event_id="evt_new")
    with pytest.raises(NotFoundError):
        webhooks.replay_event(session_factory, gateway=GATEWAY, operator=ADMIN,
                              event_id="evt_nope")


def test_a_dead_workers_event_is_taken_over_after_its_lease(session_factory, monkeypatch
                                                            ) -> None:
    ran: list[str] = []
    monkeypatch.setitem(webhooks.HANDLERS, "account.updated",
                        lambda _f, _g, event: ran.append(event["id"]))
    _store(session_factory, "evt_1")
    now = utcnow()
    [dead_workers] = webhooks.claim_due(session_factory, worker_id="a", policy=POLICY, now=now)
    # Worker a dies holding it: nobody else may take it while the lease runs.
    assert webhooks.claim_due(session_factory, worker_id="b", policy=POLICY,
                              now=now + POLICY.lease - timedelta(seconds=1)) == []
    later = now + POLICY.lease + timedelta(seconds=1)
    [taken] = webhooks.claim_due(session_factory, worker_id="b", policy=POLICY, now=later)
    assert taken.attempt == 2 and taken.token != dead_workers.token
    assert webhooks.process_claim(session_factory, gateway=GATEWAY, claim=taken,
                                  policy=POLICY).recorded
    # Were a came back to life, its late outcome would not count.
    late = webhooks.process_claim(session_factory, gateway=GATEWAY, claim=dead_workers,
                                  policy=POLICY)
    assert late.recorded is False
    row = _row(session_factory, "evt_1")
    assert (row.status, row.leased_by, row.attempts) == ("processed", "b", 2)


def test_an_event_that_kills_every_worker_is_dead_lettered(session_factory) -> None:
    _store(session_factory, "evt_poison")
    now = utcnow()
    for _attempt in range(POLICY.max_attempts):
        assert webhooks.claim_due(session_factory, worker_id="w", policy=POLICY, now=now)
        now += POLICY.lease + timedelta(seconds=1)  # the worker died again
    assert webhooks.claim_due(session_factory, worker_id="w", policy=POLICY, now=now) == []
    row = _row(session_factory, "evt_poison")
    assert row.status == "dead" and "stopped during all 3 attempts" in (row.error or "")


def test_a_stopping_worker_finishes_the_event_in_hand_and_gives_back_the_rest(
    session_factory, monkeypatch,
) -> None:
    worker = _worker(session_factory)

    def handler(_f, _g, _event) -> None:
        worker.stop()  # SIGTERM arrives while this event is being processed

    monkeypatch.setitem(webhooks.HANDLERS, "account.updated", handler)
    _store(session_factory, "evt_1", "evt_2", "evt_3")
    assert worker.process_due_events() == 1
    rows = [_row(session_factory, f"evt_{n}") for n in (1, 2, 3)]
    assert [(r.status, r.attempts, r.lease_token) for r in rows] == [
        ("processed", 1, None), ("received", 0, None), ("received", 0, None)]
    assert all(r.next_attempt_at is not None for r in rows[1:])  # due again at once


def test_the_worker_runs_until_stopped_with_a_heartbeat(session_factory, monkeypatch) -> None:
    monkeypatch.setitem(webhooks.HANDLERS, "account.updated", lambda *_: None)
    worker = _worker(session_factory)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        _store(session_factory, "evt_live")
        wait_until(lambda: _row(session_factory, "evt_live").status == "processed",
                   timeout=20, interval=0.02, what="the running worker processing the event")
        with session_factory() as session:
            beat = session.get(WorkerHeartbeat, worker.worker_id)
        assert beat is not None and beat.stopped_at is None
    finally:
        worker.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()
    with session_factory() as session:
        beat = session.get(WorkerHeartbeat, worker.worker_id)
    assert beat is not None and beat.stopped_at is not None and beat.events_processed == 1


# ---- scheduled jobs ---------------------------------------------------------------------------


def _counting_job(runs: list[str], *, fail: bool = False) -> scheduled.Job:
    def run(_ctx: scheduled.JobContext) -> str:
        runs.append("ran")
        if fail:
            raise ValueError("the job broke")
        return f"run {len(runs)}"

    return scheduled.Job("counting", timedelta(hours=1), run)


def test_a_job_runs_once_per_interval_across_workers(session_factory) -> None:
    runs: list[str] = []
    job = _counting_job(runs)
    first, second = (_worker(session_factory, jobs=[job]) for _ in range(2))
    assert first.run_due_jobs() == 1
    assert second.run_due_jobs() == 0
    assert first.run_due_jobs() == 0
    assert runs == ["ran"]
    with session_factory() as session:
        row = session.get(ScheduledJob, "counting")
    assert row is not None and (row.last_status, row.last_result, row.runs) == ("ok", "run 1", 1)
    assert row.next_run_at - row.last_started_at == timedelta(hours=1)
    # An hour later one of them runs it again.
    token = scheduled.claim_job(session_factory, job=job, worker_id="w", lease=POLICY.lease,
                                now=row.next_run_at)
    assert token is not None
    assert scheduled.claim_job(session_factory, job=job, worker_id="x", lease=POLICY.lease,
                               now=row.next_run_at) is None


def test_a_failed_job_is_recorded_and_tried_again_soon(session_factory) -> None:
    runs: list[str] = []
    worker = _worker(session_factory, jobs=[_counting_job(runs, fail=True)])
    assert worker.run_due_jobs() == 1
    with session_factory() as session:
        row = session.get(ScheduledJob, "counting")
    assert row is not None and row.last_status == JobStatus.FAILED.value
    assert row.last_result == "ValueError: the job broke" and row.failures == 1
    assert row.next_run_at - row.last_finished_at == scheduled.RETRY_FAILED_AFTER


def test_a_dead_workers_job_is_taken_over_after_its_lease(session_factory) -> None:
    job = _counting_job([])
    now = utcnow()
    assert scheduled.claim_job(session_factory, job=job, worker_id="a", lease=POLICY.lease,
                               now=now)
    assert scheduled.claim_job(session_factory, job=job, worker_id="b", lease=POLICY.lease,
                               now=now + timedelta(seconds=5)) is None
    assert scheduled.claim_job(session_factory, job=job, worker_id="b", lease=POLICY.lease,
                               now=now + POLICY.lease + timedelta(seconds=1))


def test_the_product_jobs_run_against_stripe_and_store_the_reconciliation(
    session_factory, emulator,
) -> None:
    settings = make_settings(stripe_api_base=emulator.base_url,
                             stripe_connect_base=emulator.base_url)
    gateway = StripeGateway(settings)
    account = gateway.create_express_account(email="p@example.com", country="US", metadata={},
                                             idempotency_key="jobs-acct")
    long_ago = utcnow() - timedelta(days=3)
    with session_factory.begin() as session:
        freelancer = create_freelancer(session, name="Paula", email="p@example.com")
        issue_state(session, freelancer_id=freelancer.id, issued_by="alice", attempt_id=None,
                    now=long_ago)
    worker = Worker(session_factory, gateway=gateway, settings=settings)
    assert [job.name for job in worker.jobs] == [
        "sync_accounts", "purge_oauth_states", "abandon_connection_attempts", "reconciliation",
        # Then the registered ones (issue 20's, issue 22's), by name whatever the import order.
        "alert_checks", "alert_digest", "summaries_check", "summaries_compact"]
    assert worker.run_due_jobs() == 8
    with session_factory() as session:
        results = {j.name: (j.last_status, j.last_result) for j in
                   session.scalars(select(ScheduledJob))}
        report = session.scalars(select(ReconciliationRun)).one()
        assert session.scalars(select(OAuthState)).all() == []
    assert results["sync_accounts"][0] == "ok" and "synced 1 account(s)" in results[
        "sync_accounts"][1]
    assert results["purge_oauth_states"] == ("ok", "purged 1 spent or expired OAuth state(s)")
    assert results["abandon_connection_attempts"][0] == "ok"
    assert results["reconciliation"] == (
        "ok", f"report #{report.id}: 0 transfer(s), 0 mismatch(es), 0 unknown(s) settled")
    assert report.status == "ok" and report.triggered_by == "system:worker"
    assert results["alert_checks"] == ("ok", "0 rule(s) checked: 0 alert(s) opened, 0 cleared, "
                                             "0 message(s) queued")
    assert results["alert_digest"] == ("ok", "0 digest message(s) queued")
    assert results["summaries_compact"][0] == "ok"
    assert results["summaries_check"][0] == "ok" and results["summaries_check"][1].startswith(
        "summaries equal a recount")
    assert report.period_end - report.period_start >= timedelta(days=2)
    assert account.id  # the synced account is the one Stripe has


def test_purge_keeps_live_and_recently_spent_states(session_factory) -> None:
    now = utcnow()
    with session_factory.begin() as session:
        freelancer = create_freelancer(session, name="Ada", email="ada@example.com")
        for minutes_ago in (0, 60 * 23, 60 * 49):
            issue_state(session, freelancer_id=freelancer.id, issued_by="a", attempt_id=None,
                        now=now - timedelta(minutes=minutes_ago))
    with session_factory.begin() as session:
        assert purge_states(session, now=now) == 1  # expired over a day ago
    with session_factory() as session:
        assert len(session.scalars(select(OAuthState)).all()) == 2


def test_a_registered_job_is_run_by_every_worker(session_factory) -> None:
    """The hook other features (the ops alert checks) plug their jobs into."""
    runs: list[str] = []
    scheduled.register_job(lambda settings: _counting_job(runs))
    try:
        worker = Worker(session_factory, gateway=GATEWAY, settings=SETTINGS)
        counting = [job for job in worker.jobs if job.name == "counting"]
        assert len(counting) == 1
        assert scheduled.claim_job(session_factory, job=counting[0], worker_id="w",
                                   lease=POLICY.lease)  # due on its first start
    finally:
        scheduled._REGISTERED.pop()
    assert "counting" not in [job.name for job in scheduled.default_jobs(SETTINGS)]


@requires_postgresql()
def test_concurrent_claims_on_postgresql_never_share_an_event(session_factory) -> None:
    _store(session_factory, *(f"evt_{n}" for n in range(300)))
    claimed: list[list[str]] = [[] for _ in range(6)]
    start = threading.Barrier(len(claimed))

    def claim_all(slot: int) -> None:
        start.wait()
        while batch := webhooks.claim_due(session_factory, worker_id=f"w{slot}",
                                          policy=POLICY, limit=7):
            claimed[slot] += [c.event_id for c in batch]

    threads = [threading.Thread(target=claim_all, args=(n,)) for n in range(len(claimed))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    every = [event_id for slot in claimed for event_id in slot]
    assert sorted(every) == sorted(f"evt_{n}" for n in range(300))  # each once, none lost
    assert sum(1 for slot in claimed if slot) > 1  # they really ran side by side


def test_the_command_line_processes_what_is_due_and_exits(database_url, session_factory,
                                                          tmp_path) -> None:
    _store(session_factory, "evt_cli", type_="customer.created")  # a type we have no handler for
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update({"DATABASE_URL": database_url, "STRIPE_SECRET_KEY": TEST_SECRET_KEY,
                "STRIPE_API_BASE": "http://127.0.0.1:9", "PYTHONPATH": str(PROJECT_ROOT)})
    done = subprocess.run([sys.executable, "-m", "lib.worker", "--once", "--no-jobs"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    row = _row(session_factory, "evt_cli")
    assert (row.status, row.error) == ("processed", "no handler for this type")
    env.pop("STRIPE_SECRET_KEY")
    refused = subprocess.run([sys.executable, "-m", "lib.worker", "--once"], env=env,
                             capture_output=True, text=True, timeout=120, check=False,
                             cwd=tmp_path)  # no .env there
    assert refused.returncode == 2
    assert refused.stderr.startswith("connect-ops worker: STRIPE_SECRET_KEY is not set")
