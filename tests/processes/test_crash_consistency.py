"""SIGKILL the companion in the middle of a payout; a new process and the documented recovery
bring the ledger to exactly what Stripe did (SQLite and PostgreSQL).

Two crash points, made real with the emulator's faults (no hook in production code):

(a) the row is claimed (``submitted``, committed) and the process is blocked inside
    ``Transfer.create`` (``delay`` before execution) when it dies;
(b) Stripe has executed the transfer but is still holding the response (``delay`` after
    execution) when the process dies: the ledger never hears of the success.

Recovery as the README and ``lib.payouts.execution`` document it: a restarted companion leaves a
``submitted`` row alone (another executor may still be on it); once it is stale (10 minutes) the
sweeper ``python -m lib.payouts retry`` resends it with the same idempotency key, or
``python -m lib.payouts reconcile`` finds the transfer, or Stripe's redelivered
``transfer.created`` webhook, processed by ``python -m lib.worker``, settles it. The tests age the row's ``updated_at`` by eleven minutes
instead of waiting for them.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from emulator.testing import EmulatorHandle
from lib.models import AuditLog, Payout
from lib.payouts.execution import STALE_SUBMITTED_AFTER
from scripts.processes import wait_until
from tests.processes.conftest import (
    Companion,
    Processes,
    admin_headers,
    only_row,
    only_transfer,
    payable_freelancer,
    payout_body,
    payout_rows,
    transfers,
    wire_webhooks,
)

logger = logging.getLogger(__name__)
pytestmark = pytest.mark.slow

PAYOUTS = "/api/v1/admin/payouts"
KEY = "invoice-crash-1"


def _post_in_background(companion: Companion, freelancer_id: int) -> tuple[threading.Thread,
                                                                          list[Any]]:
    """Send the payout request from another thread; the answer (or the error) lands in a list."""
    outcome: list[Any] = []

    def send() -> None:
        try:
            with httpx.Client(base_url=companion.url, timeout=30) as http:
                outcome.append(http.post(PAYOUTS, json=payout_body(freelancer_id),
                                         headers=admin_headers(KEY)))
        except httpx.HTTPError as exc:  # the process died under the request
            outcome.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    return thread, outcome


def _kill_mid_request(companion: Companion, thread: threading.Thread, outcome: list[Any]) -> None:
    companion.kill()
    thread.join(timeout=30)
    assert companion.process.returncode == -9
    [error] = outcome
    assert isinstance(error, httpx.TransportError), f"the client got an answer: {error}"


def _age(session_factory: sessionmaker[Session], payout_id: int) -> None:
    """Let more than ``STALE_SUBMITTED_AFTER`` pass for this row (its executor is long dead)."""
    with session_factory.begin() as session:
        row = session.get(Payout, payout_id)
        assert row is not None
        session.execute(update(Payout).where(Payout.id == payout_id).values(
            updated_at=row.updated_at - STALE_SUBMITTED_AFTER - timedelta(minutes=1)))


def _replay_is_left_alone(companion: Companion, freelancer_id: int, *, transfers_now: int,
                          emulator: EmulatorHandle) -> None:
    """The restarted service answers the retried request without sending it again."""
    with httpx.Client(base_url=companion.url, timeout=30) as http:
        answer = http.post(PAYOUTS, json=payout_body(freelancer_id), headers=admin_headers(KEY))
    assert answer.status_code == 202, answer.text
    assert answer.json()["data"]["status"] == "submitted"
    assert len(transfers(emulator)) == transfers_now


def _assert_paid_once(companion: Companion, emulator: EmulatorHandle,
                      session_factory: sessionmaker[Session], freelancer_id: int) -> str:
    transfer = only_transfer(emulator)
    row = only_row(session_factory)
    assert row.status == "paid"
    assert row.stripe_transfer_id == transfer["id"]
    assert transfer["metadata"]["ledger_key"] == row.idempotency_key
    assert transfer["amount"] == row.amount_minor == 2500
    with httpx.Client(base_url=companion.url, timeout=30) as http:
        answer = http.post(PAYOUTS, json=payout_body(freelancer_id), headers=admin_headers(KEY))
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["stripeTransferId"] == transfer["id"]
    assert len(transfers(emulator)) == 1
    return str(transfer["id"])


def _retry_sweeper(processes: Processes, database_url: str, emulator: EmulatorHandle,
                   payout_id: int) -> None:
    result = processes.payouts_cli("retry", "--operator", "admin", database_url=database_url,
                                   emulator_url=emulator.base_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["payout_id,status", f"{payout_id},paid"]


def test_killed_while_blocked_in_the_stripe_call_pays_exactly_once_after_restart(
    processes: Processes, quiet_emulator: EmulatorHandle, database_url: str,
    session_factory: sessionmaker[Session],
) -> None:
    emulator = quiet_emulator
    freelancer_id = payable_freelancer(emulator, session_factory)
    first = processes.companion(database_url=database_url, emulator_url=emulator.base_url)
    # Held long enough to see the call arrive and kill the caller, even on a busy machine.
    emulator.inject_fault("delay", path="/v1/transfers", method="POST", seconds=3.0)
    thread, outcome = _post_in_background(first, freelancer_id)
    wait_until(lambda: [r.status for r in payout_rows(session_factory)] == ["submitted"],
               what="the payout row claimed")
    # The claim is committed before the call: kill only once the call is at Stripe (the
    # emulator counts it in flight), so the process dies blocked inside Transfer.create.
    wait_until(lambda: emulator.state()["in_flight"], what="the transfer call held at Stripe")
    _kill_mid_request(first, thread, outcome)
    row = only_row(session_factory)
    assert row.status == "submitted" and row.stripe_transfer_id is None

    # Whatever Stripe does with a request whose caller vanished, let it finish doing it: the
    # emulator says when it is no longer serving the held call.
    emulator.wait_idle()
    executed = len(transfers(emulator))
    assert executed in (0, 1)
    logger.info("the killed process's transfer call was %s by Stripe",
                "executed" if executed else "not executed")
    second = processes.companion(database_url=database_url, emulator_url=emulator.base_url)
    _replay_is_left_alone(second, freelancer_id, transfers_now=executed, emulator=emulator)

    _age(session_factory, row.id)
    _retry_sweeper(processes, database_url, emulator, row.id)
    _assert_paid_once(second, emulator, session_factory, freelancer_id)
    with session_factory() as session:
        actions = list(session.scalars(select(AuditLog.action).where(
            AuditLog.target == f"payout:{row.id}").order_by(AuditLog.id)))
    # Paid by the sweeper's resend of the same key, not by the killed process.
    assert actions.count("payout.paid_on_retry") == 1 and "payout.paid" not in actions


@pytest.mark.parametrize("recovery", ["retry", "reconcile", "webhook"])
def test_killed_after_stripe_paid_settles_with_that_transfer_never_a_second(
    recovery: str, processes: Processes, quiet_emulator: EmulatorHandle, database_url: str,
    session_factory: sessionmaker[Session],
) -> None:
    emulator = quiet_emulator
    freelancer_id = payable_freelancer(emulator, session_factory)
    first = processes.companion(database_url=database_url, emulator_url=emulator.base_url)
    # Stripe executes the transfer, then sits on the answer long enough for the crash.
    emulator.inject_fault("delay", path="/v1/transfers", method="POST", seconds=4, phase="after")
    thread, outcome = _post_in_background(first, freelancer_id)
    wait_until(lambda: len(transfers(emulator)) == 1, what="Stripe executed the transfer")
    _kill_mid_request(first, thread, outcome)
    row = only_row(session_factory)
    assert row.status == "submitted" and row.stripe_transfer_id is None
    paid_at_stripe = only_transfer(emulator)

    second = processes.companion(database_url=database_url, emulator_url=emulator.base_url)
    _replay_is_left_alone(second, freelancer_id, transfers_now=1, emulator=emulator)

    if recovery == "retry":
        _age(session_factory, row.id)
        _retry_sweeper(processes, database_url, emulator, row.id)
    elif recovery == "reconcile":
        _age(session_factory, row.id)
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        result = processes.payouts_cli("reconcile", "--since", today, "--operator", "finance",
                                       database_url=database_url, emulator_url=emulator.base_url)
        assert result.returncode == 0, result.stderr  # nothing left that a person must decide
        assert "resolved_paid" in result.stdout and "'resolved_paid': 1" in result.stderr
    else:
        # Stripe delivers transfer.created at least once; the restarted service settles the row
        # at once (no staleness needed: the transfer itself proves the outcome).
        wire_webhooks(emulator, second.url)
        processes.background_worker("--no-jobs", database_url=database_url,
                                    emulator_url=emulator.base_url,
                                    WORKER_POLL_SECONDS="0.05")
        event_id = _transfer_created_event(emulator, paid_at_stripe["id"])
        emulator.resend_event(event_id)
        assert emulator.flush_webhooks(timeout=30)
        wait_until(lambda: payout_rows(session_factory)[0].status == "paid",
                   what="the row settled by the webhook")

    assert _assert_paid_once(second, emulator, session_factory, freelancer_id) == (
        paid_at_stripe["id"])


def _transfer_created_event(emulator: EmulatorHandle, transfer_id: str) -> str:
    events = emulator.state(full=True)["state"]["events"]
    found = [e["id"] for e in (events.values() if isinstance(events, dict) else events)
             if e["type"] == "transfer.created" and e["data"]["object"]["id"] == transfer_id]
    assert len(found) == 1
    return str(found[0])
