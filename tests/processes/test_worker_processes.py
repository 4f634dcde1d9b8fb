"""``python -m lib.worker`` as real processes (issue 18): a SIGKILL mid-event, a SIGTERM
mid-event, and two workers on one PostgreSQL database under 2,000 events delivered with
duplicates and out of order.

The events come from the emulator (Stripe's stand-in) through a real ``python -m server``
companion, whose intake only stores them; the workers process them. ``account.updated``
re-reads the account from Stripe, so the emulator's ``delay`` fault on that read holds a
worker in the middle of an event for as long as the test needs.
"""

from __future__ import annotations

import signal
import subprocess

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from emulator.testing import EmulatorHandle
from lib.models import ConnectedAccount, Freelancer, WebhookEvent, WorkerHeartbeat
from scripts.processes import wait_until
from tests.conftest import requires_postgresql
from tests.processes.conftest import (
    Processes,
    gateway_for,
    payable_freelancer,
    wire_webhooks,
)

pytestmark = pytest.mark.slow

FAST = {"WORKER_POLL_SECONDS": "0.05", "WORKER_HEARTBEAT_SECONDS": "0.5"}
CODES = ["individual.id_number", "individual.verification.document", "external_account",
         "business_profile.url", "tos_acceptance.date"]


def _account_of(session_factory: sessionmaker[Session], freelancer_id: int) -> str:
    with session_factory() as session:
        freelancer = session.get(Freelancer, freelancer_id)
    assert freelancer is not None
    account = freelancer.stripe_account_id
    assert account
    return account


def _events(session_factory: sessionmaker[Session]) -> list[WebhookEvent]:
    with session_factory() as session:
        return list(session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


def _one_account_event(session_factory: sessionmaker[Session]) -> WebhookEvent:
    [row] = [e for e in _events(session_factory) if e.type == "account.updated"]
    return row


def _hold_a_worker_on_an_account_event(
    processes: Processes, emulator: EmulatorHandle, database_url: str,
    session_factory: sessionmaker[Session], *, hold: float, **worker_env: str,
) -> tuple[subprocess.Popen[bytes], str]:
    """A worker in the middle of an ``account.updated``: its re-read of the account is held."""
    account_id = _account_of(session_factory, payable_freelancer(emulator, session_factory))
    companion = processes.companion(database_url=database_url, emulator_url=emulator.base_url)
    wire_webhooks(emulator, companion.url)
    worker = processes.background_worker("--no-jobs", database_url=database_url,
                                         emulator_url=emulator.base_url, name="held",
                                         **FAST, **worker_env)
    emulator.inject_fault("delay", path=f"/v1/accounts/{account_id}", method="GET",
                          seconds=hold)
    emulator.set_account(account_id, requirements={"currently_due": ["individual.id_number"],
                                                   "eventually_due": ["individual.id_number"]})
    assert emulator.flush_webhooks(timeout=30)
    wait_until(lambda: _one_account_event(session_factory).status == "processing", timeout=60,
               what="the worker holding the event")
    assert f":{worker.pid}:" in (_one_account_event(session_factory).leased_by or "")
    return worker, account_id


def _mirror_due(session_factory: sessionmaker[Session], account_id: str) -> list[str]:
    with session_factory() as session:
        row = session.scalars(select(ConnectedAccount).where(
            ConnectedAccount.stripe_id == account_id)).one()
    return list((row.requirements or {}).get("currently_due") or [])


def test_a_worker_killed_mid_event_leaves_it_to_another_after_the_lease(
    processes: Processes, quiet_emulator: EmulatorHandle, database_url: str,
    session_factory: sessionmaker[Session],
) -> None:
    doomed, account_id = _hold_a_worker_on_an_account_event(
        processes, quiet_emulator, database_url, session_factory, hold=6,
        WORKER_LEASE_SECONDS="3")
    doomed.send_signal(signal.SIGKILL)
    assert doomed.wait(timeout=10) == -9
    held = _one_account_event(session_factory)
    assert held.status == "processing" and held.attempts == 1  # left as it was: no clean-up
    lease_end = held.lease_expires_at
    assert lease_end is not None

    survivor = processes.background_worker("--no-jobs", database_url=database_url,
                                           emulator_url=quiet_emulator.base_url,
                                           name="survivor", WORKER_LEASE_SECONDS="3", **FAST)
    wait_until(lambda: _one_account_event(session_factory).status == "processed", timeout=60,
               what="the event processed by the second worker")
    done = _one_account_event(session_factory)
    assert f":{survivor.pid}:" in (done.leased_by or "")
    assert done.attempts == 2 and done.error is None
    assert done.processing_started_at is not None and done.processing_started_at >= lease_end
    assert _mirror_due(session_factory, account_id) == ["individual.id_number"]
    quiet_emulator.wait_idle()  # the killed worker's held request ends before the next test


def test_sigterm_lets_the_worker_finish_the_event_in_hand(
    processes: Processes, quiet_emulator: EmulatorHandle, database_url: str,
    session_factory: sessionmaker[Session],
) -> None:
    worker, account_id = _hold_a_worker_on_an_account_event(
        processes, quiet_emulator, database_url, session_factory, hold=2)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    done = _one_account_event(session_factory)
    assert (done.status, done.attempts, done.lease_token) == ("processed", 1, None)
    assert _mirror_due(session_factory, account_id) == ["individual.id_number"]
    with session_factory() as session:
        [beat] = session.scalars(select(WorkerHeartbeat)).all()
    assert beat.pid == worker.pid and beat.stopped_at is not None
    assert beat.events_processed == 1


@requires_postgresql()
@pytest.mark.timeout(900)
def test_two_workers_process_2000_events_exactly_once_and_the_mirror_matches_stripe(
    processes: Processes, quiet_emulator: EmulatorHandle, database_url: str,
    session_factory: sessionmaker[Session],
) -> None:
    emulator = quiet_emulator
    accounts = [_account_of(session_factory, payable_freelancer(
        emulator, session_factory, email=f"paula{n}@example.com")) for n in range(20)]
    before = set(emulator.state(full=True)["state"]["events"])  # not delivered: not wired yet
    companion = processes.companion(database_url=database_url, emulator_url=emulator.base_url)
    wire_webhooks(emulator, companion.url, webhook_max_attempts=10, webhook_retry_delay=0.2)
    workers = [processes.background_worker("--no-jobs", database_url=database_url,
                                           emulator_url=emulator.base_url,
                                           name=f"pair-{n}", **FAST) for n in range(2)]
    for n in range(2000):
        if n % 200 == 0:
            emulator.inject_fault("duplicate", count=60)
        elif n % 200 == 100:
            emulator.inject_fault("out_of_order", count=25)
        # Each account's next state differs from its last one: every call is an event.
        due = CODES[:(n // len(accounts)) % len(CODES) + 1]
        emulator.set_account(accounts[n % len(accounts)],
                             requirements={"currently_due": due, "eventually_due": due})
    # The control client waits 30 s per call: ask again until every delivery is done.
    wait_until(lambda: emulator.flush_webhooks(timeout=20), timeout=300,
               what="the emulator delivered every event")

    def settled() -> bool:
        with session_factory() as session:
            return not session.scalar(select(func.count()).select_from(WebhookEvent).where(
                WebhookEvent.status.not_in(["processed", "ignored"])))

    wait_until(settled, timeout=300, what="every stored event processed")
    assert all(process.poll() is None for process in workers)

    # The delivery log keeps the last 2,000 attempts: enough to see duplicates and reordering.
    delivered = [d["event_id"] for d in emulator.deliveries() if d["ok"]]
    created = [e["id"] for e in emulator.state(full=True)["state"]["events"].values()
               if e["type"] == "account.updated" and e["id"] not in before]
    first_seen = list(dict.fromkeys(delivered))
    assert len(created) == 2000
    assert len(delivered) > len(first_seen)  # duplicates were delivered
    assert first_seen != [e for e in created if e in set(first_seen)]  # and out of order
    rows = _events(session_factory)
    assert sorted(r.stripe_event_id for r in rows) == sorted(created)  # each stored once
    assert {r.status for r in rows} == {"processed"}
    assert {r.attempts for r in rows} == {1}  # one claim each: never processed twice
    assert len({r.leased_by for r in rows}) == 2  # both workers took part

    gateway = gateway_for(emulator)
    with session_factory() as session:
        mirror = {a.stripe_id: a for a in session.scalars(select(ConnectedAccount))}
    for account_id in accounts:
        stripe_account = gateway.retrieve_account(account_id).data
        row = mirror[account_id]
        for key in ("currently_due", "eventually_due", "past_due"):
            assert (row.requirements or {}).get(key) == stripe_account["requirements"][key], (
                account_id, key)
        assert row.payouts_enabled == stripe_account["payouts_enabled"]
