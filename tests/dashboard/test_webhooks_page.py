"""The Webhooks and sync page: the worker and its jobs, events per type, failures and dead
letters, replay, sync with progress; and the admins' warning when no worker runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from lib.db import utcnow
from lib.errors import PermissionDeniedError
from lib.models import ConnectedAccount, ScheduledJob, WebhookEvent, WebhookStatus, WorkerHeartbeat
from lib.sync import sync_all_accounts
from lib.webhooks import replay_event
from tests.dashboard import emulator_env
from tests.dashboard.emulator_env import (
    OPERATORS,
    errors,
    open_page,
    run_page_script,
    texts,
)

stripe_env, world = emulator_env.stripe_env, emulator_env.world  # fixtures
#: The page's tables in order (no worker has a heartbeat in these tests).
JOBS, TYPES, FAILED = 0, 1, 2
NO_WORKER = "No background worker has ever run"


def store(world, event_id: str, type_: str, status: WebhookStatus, error: str | None = None,
          account: str = "acct_unknown123", attempts: int = 1) -> None:
    with world.session_factory.begin() as session:
        session.add(WebhookEvent(
            stripe_event_id=event_id, type=type_, endpoint="connect", account=account,
            received_at=utcnow(), status=status.value, attempts=attempts, error=error,
            next_attempt_at=utcnow() + timedelta(minutes=5) if status == WebhookStatus.FAILED
            else None,
            payload={"id": event_id, "type": type_, "account": account, "livemode": False,
                     "created": 1_780_000_000, "data": {"object": {"id": account,
                                                                   "object": "account"}}},
        ))


def test_empty_database(app, stripe_env) -> None:
    at = open_page(app, "webhooks.py", "admin")
    assert not at.exception, at.exception
    assert "No webhook events received yet." in texts(at)
    assert "No failed events." in texts(at)


def test_events_failures_and_replay(app, world) -> None:
    store(world, "evt_ok", "transfer.created", WebhookStatus.PROCESSED)
    store(world, "evt_bad", "account.updated", WebhookStatus.FAILED,
          error="stripe_unavailable: Stripe did not answer")
    at = open_page(app, "webhooks.py", "admin")
    assert not at.exception, at.exception
    types, failed = at.dataframe[TYPES].value, at.dataframe[FAILED].value
    assert set(types["Type"]) == {"transfer.created", "account.updated"}
    assert "Last received" in types.columns
    assert list(failed["Error"]) == ["stripe_unavailable: Stripe did not answer"]
    assert list(failed["State"]) == ["retrying"]
    at = at.button(key="webhooks_replay").click().run()
    assert not at.exception, at.exception
    assert "Event evt_bad replayed: ignored." in texts(at)
    assert "No failed events." in texts(at)


def test_sync_all_accounts_with_progress(app, world) -> None:
    world.freelancer(name="Sam Sync")
    at = open_page(app, "webhooks.py", "admin")
    at = at.button(key="webhooks_sync").click().run()
    assert not at.exception, at.exception
    assert at.get("progress")
    assert "Synced" in texts(at)
    with world.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(ConnectedAccount)) >= 1


@pytest.mark.parametrize("role", ["finance", "manager"])
def test_other_roles_are_refused(app, stripe_env, role: str) -> None:
    at = app(as_user=role).run()
    with pytest.raises(ValueError):
        at.switch_page("../pages/webhooks.py")
    at = run_page_script("webhooks.py", role)
    assert not at.exception
    assert errors(at) == [f"{role} ({role}) may not view webhooks."]


@pytest.mark.parametrize("role", ["finance", "manager"])
def test_lib_refuses_replay_and_sync(world, role: str) -> None:
    store(world, "evt_bad", "account.updated", WebhookStatus.FAILED, error="x")
    with pytest.raises(PermissionDeniedError):
        replay_event(world.session_factory, gateway=world.gateway, operator=OPERATORS[role],
                     event_id="evt_bad")
    with pytest.raises(PermissionDeniedError):
        sync_all_accounts(world.session_factory, gateway=world.gateway,
                          operator=OPERATORS[role])


def test_failures_are_counted_and_paged_once_per_run(app, world) -> None:
    """Issue 7: one count and one page of the failures per run, with the pager under them."""
    from tests.factories_dashboard import QueryCounter

    for n in range(55):
        store(world, f"evt_bad{n}", "account.updated", WebhookStatus.FAILED, error="boom")
    at = open_page(app, "webhooks.py", "admin")
    assert not at.exception, at.exception
    assert len(at.dataframe[FAILED].value) == 50 and "Page 1 of 2 · 55 rows" in texts(at)
    with QueryCounter() as counter:
        at.number_input(key="webhooks_failed_page").set_value(2).run()
    assert not at.exception, at.exception
    assert len(at.dataframe[FAILED].value) == 5
    # The page of failures: each status's newest rows merged, in one statement (issue 22).
    failures = [s for s in counter.statements if "webhook_events.received_at DESC" in s
                and "webhook_events.status = " in s]
    assert len(failures) == 1, counter.statements   # the page, once
    # Issue 22: the count is read from the events summary, not by counting the log.
    assert not any("count(" in s.lower() and "FROM webhook_events" in s
                   and "webhook_events.status" in s for s in counter.statements)
    assert "Page 2 of 2 · 55 rows" in texts(at)


def test_no_worker_is_an_error_here_and_a_warning_on_every_admin_page(app, stripe_env) -> None:
    at = open_page(app, "webhooks.py", "admin")
    assert not at.exception, at.exception
    assert any(NO_WORKER in e.value for e in at.error)
    for page in ("accounts.py", "payouts.py", "audit_log.py"):
        at = open_page(app, page, "admin")
        assert not at.exception, at.exception
        assert any(NO_WORKER in w.value for w in at.warning), page
    at = open_page(app, "accounts.py", "finance")  # not an admin: not their business
    assert not any(NO_WORKER in w.value for w in at.warning)


def test_a_live_worker_its_jobs_and_a_dead_letter(app, world) -> None:
    now = utcnow()
    with world.session_factory.begin() as session:
        session.add(WorkerHeartbeat(worker_id="host:42:abcd", hostname="host", pid=42,
                                    started_at=now, last_seen_at=now, events_processed=7,
                                    events_failed=1))
        session.add(ScheduledJob(name="reconciliation", interval_seconds=86_400,
                                 next_run_at=now + timedelta(days=1), last_started_at=now,
                                 last_finished_at=now, last_status="ok",
                                 last_result="report #1: 0 transfer(s)", runs=1, failures=0))
    store(world, "evt_dead", "account.updated", WebhookStatus.DEAD,
          error="RuntimeError: boom", attempts=10)
    at = open_page(app, "webhooks.py", "admin")
    assert not at.exception, at.exception
    assert not any(NO_WORKER in w.value for w in at.warning)
    assert any("Running: last heartbeat" in s.value for s in at.success)
    worker_table, jobs, failed = (at.dataframe[n].value for n in (0, 1, 3))
    assert list(worker_table.columns) == ["Worker", "State", "Last seen", "Started",
                                          "Events processed", "Events failed", "Stopped"]
    assert list(worker_table["State"]) == ["running"]
    assert list(worker_table["Events processed"]) == [7]
    assert list(worker_table["Stopped"]) == [""]  # not "None"
    by_name = jobs.set_index("Job")
    assert set(by_name.index) == {"sync_accounts", "purge_oauth_states",
                                  "abandon_connection_attempts", "reconciliation",
                                  "alert_checks", "alert_digest",  # issue 20's jobs
                                  "summaries_compact", "summaries_check"}  # issue 22's
    assert by_name.loc["reconciliation", "Last result"] == "report #1: 0 transfer(s)"
    assert by_name.loc["sync_accounts", "Last result"] == "never run yet"
    assert list(failed["State"]) == ["dead letter"]
    assert list(failed["Error"]) == ["RuntimeError: boom"]
    assert [m.value for m in at.metric][-1] == "1"  # dead letters
    at = at.button(key="webhooks_replay").click().run()
    assert not at.exception, at.exception
    assert "Event evt_dead replayed: ignored." in texts(at)
    with world.session_factory() as session:
        row = session.scalars(select(WebhookEvent).where(
            WebhookEvent.stripe_event_id == "evt_dead")).one()
    assert (row.status, row.attempts) == ("ignored", 1)
