"""The Webhooks and sync page: events per type, failures, replay, sync with progress."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from lib.db import utcnow
from lib.errors import PermissionDeniedError
from lib.models import ConnectedAccount, WebhookEvent, WebhookStatus
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


def store(world, event_id: str, type_: str, status: WebhookStatus, error: str | None = None,
          account: str = "acct_unknown123") -> None:
    with world.session_factory.begin() as session:
        session.add(WebhookEvent(
            stripe_event_id=event_id, type=type_, endpoint="connect", account=account,
            received_at=utcnow(), status=status.value, attempts=1, error=error,
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
    types, failed = at.dataframe[0].value, at.dataframe[1].value
    assert set(types["Type"]) == {"transfer.created", "account.updated"}
    assert "Last received" in types.columns
    assert list(failed["Error"]) == ["stripe_unavailable: Stripe did not answer"]
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
    assert len(at.dataframe[1].value) == 50 and "Page 1 of 2 · 55 rows" in texts(at)
    with QueryCounter() as counter:
        at.number_input(key="webhooks_failed_page").set_value(2).run()
    assert not at.exception, at.exception
    assert len(at.dataframe[1].value) == 5
    failures = [s for s in counter.statements if "webhook_events.status =" in s]
    assert len(failures) == 2, counter.statements   # the count and the page, once each
