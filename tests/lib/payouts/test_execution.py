"""Execution against the emulator through the real SDK: outcomes, faults, races, retries."""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any

import pytest
import stripe
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lib.accounts import upsert_account
from lib.db import make_engine, make_session_factory
from lib.errors import ConflictError, PermissionDeniedError
from lib.models import AuditLog, Payout, PayoutStatus
from lib.payouts.approval import approve_payout, reject_payout
from lib.payouts.execution import PreflightFailedError, execute_payout, retry_unsettled
from lib.payouts.ledger import request_payout
from lib.stripe_gateway import StripeGateway
from tests.conftest import requires_postgresql
from tests.factories import make_settings
from tests.lib.payouts.conftest import StripeWorld
from tests.lib.payouts.helpers import ADMIN, FINANCE, MANAGER, payout_count


def _request(world: StripeWorld, freelancer_id: int, amount: str = "25.00",
             token: str | None = "tok", currency: str = "usd") -> int:
    with world.session_factory.begin() as session:
        return request_payout(
            session, operator=ADMIN, freelancer_id=freelancer_id, amount=amount,
            currency=currency, description="Invoice 42", client_request_token=token,
            settings=world.settings,
        ).id


def _row(session_factory: sessionmaker[Session], payout_id: int) -> Payout:
    with session_factory() as session:
        row = session.get(Payout, payout_id)
        assert row is not None
        return row


def test_pending_payout_is_paid_with_its_key_metadata_and_group(world):
    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer()
    payout_id = _request(world, freelancer.id)
    payout = execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                            operator=ADMIN)
    assert payout.status == PayoutStatus.PAID
    assert payout.stripe_transfer_id and payout.stripe_request_id
    (transfer,) = world.transfers()
    assert transfer["id"] == payout.stripe_transfer_id
    assert transfer["amount"] == 2500 and transfer["currency"] == "usd"
    assert transfer["destination"] == freelancer.stripe_account_id
    assert transfer["metadata"] == {"payout_id": str(payout_id),
                                    "freelancer_id": str(freelancer.id), "requested_by": "alice",
                                    "ledger_key": payout.idempotency_key}
    assert transfer["transfer_group"] == f"payout-{payout_id}"
    assert transfer["description"] == "Invoice 42"
    assert world.available() == 100_000 - 2500
    # Executing a paid row again is a no-op.
    again = execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                           operator=ADMIN)
    assert again.status == PayoutStatus.PAID and len(world.transfers()) == 1
    with world.session_factory() as session:
        actions = [e.action for e in session.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert actions == ["payout.request", "payout.submit", "payout.paid"]


def test_balance_insufficient_fails_with_reason_and_balance_unchanged(world):
    world.emu.set_balance(1_000, "usd")
    freelancer = world.freelancer()
    payout_id = _request(world, freelancer.id)
    payout = execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                            operator=ADMIN, recheck_balance=False)
    assert payout.status == PayoutStatus.FAILED
    assert payout.error_code == "balance_insufficient" and payout.error_message
    assert world.available() == 1_000 and world.transfers() == []
    # Terminal: Stripe would replay the stored error for this key; a new request is needed.
    world.emu.set_balance(100_000, "usd")
    again = execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                           operator=ADMIN)
    assert again.status == PayoutStatus.FAILED and world.transfers() == []


def test_preflight_stops_the_first_attempt_and_leaves_the_row_pending(world):
    world.emu.set_balance(1_000, "usd")
    freelancer = world.freelancer()
    payout_id = _request(world, freelancer.id)
    with pytest.raises(PreflightFailedError, match="available balance") as info:
        execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                       operator=ADMIN)
    assert [c.name for c in info.value.result.failures] == ["balance_available"]
    row = _row(world.session_factory, payout_id)
    assert row.status == PayoutStatus.PENDING and row.error_code == "preflight_failed"
    world.emu.set_balance(100_000, "usd")
    assert execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                          operator=ADMIN).status == PayoutStatus.PAID


def test_preflight_refuses_an_account_that_lost_transfers(world):
    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer()
    payout_id = _request(world, freelancer.id)
    assert freelancer.stripe_account_id
    world.emu.set_account(freelancer.stripe_account_id, capabilities={"transfers": "inactive"})
    with world.session_factory.begin() as session:
        upsert_account(session, account=world.gateway.retrieve_account(
            freelancer.stripe_account_id).data)
    with pytest.raises(PreflightFailedError, match="transfers capability is inactive"):
        execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                       operator=ADMIN)
    assert world.transfers() == []


def test_approval_gates_execution(world):
    world.emu.set_balance(10_000_000, "usd")
    freelancer = world.freelancer()
    payout_id = _request(world, freelancer.id, amount="1500.00")
    with pytest.raises(ConflictError, match="approval"):
        execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                       operator=ADMIN)
    with world.session_factory.begin() as session:
        approve_payout(session, operator=FINANCE, payout_id=payout_id)
    payout = execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                            operator=FINANCE)
    assert payout.status == PayoutStatus.PAID and len(world.transfers()) == 1


def test_managers_cannot_execute_and_the_refusal_is_audited(world):
    freelancer = world.freelancer()
    payout_id = _request(world, freelancer.id)
    with pytest.raises(PermissionDeniedError):
        execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                       operator=MANAGER)
    with world.session_factory() as session:
        assert session.scalars(select(AuditLog.result).where(
            AuditLog.action == "payout.execute")).one() == "refused:permission_denied"


FAULTS = [
    # A 500 before Stripe started executing (nothing saved under the key). A 500 Stripe saved
    # under the key is replayed to every retry and never settles by retrying: see
    # test_saved_server_error.py.
    pytest.param({"kind": "http_500", "saved": False}, id="500"),
    pytest.param({"kind": "rate_limit"}, id="429"),
    pytest.param({"kind": "lock_timeout"}, id="lock_timeout"),
    pytest.param({"kind": "commit_then_drop"}, id="commit_then_drop"),
    pytest.param({"kind": "delay", "seconds": 3.0}, id="delay_before"),
    pytest.param({"kind": "delay", "seconds": 3.0, "phase": "after"}, id="delay_after"),
]


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_leaves_unknown_then_a_retry_pays_exactly_once(world, fault):
    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer()
    payout_id = _request(world, freelancer.id)
    world.emu.inject_fault(path="/v1/transfers", method="POST", **fault)
    first = execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                           operator=ADMIN)
    assert first.status == PayoutStatus.UNKNOWN, first.error_code
    assert first.error_code
    if fault["kind"] == "delay":
        world.emu.wait_idle()  # the held request finishes at the emulator before the retry
    second = execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                            operator=ADMIN)
    assert second.status == PayoutStatus.PAID
    transfers = world.transfers()
    assert len(transfers) == 1 and transfers[0]["id"] == second.stripe_transfer_id
    assert world.available() == 100_000 - 2500


@pytest.mark.parametrize(
    "fault", [f for f in FAULTS if f.id in {"500", "lock_timeout", "commit_then_drop"}]
)
def test_sdk_retries_with_the_same_key_absorb_faults(world, fault):
    """The SDK retries these itself (a plain 429 is not retried by it: Stripe says don't)."""
    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer()
    payout_id = _request(world, freelancer.id)
    world.emu.inject_fault(path="/v1/transfers", method="POST", **fault)
    gateway = world.gateway_with(stripe_max_network_retries=2, stripe_timeout_seconds=2)
    payout = execute_payout(world.session_factory, gateway=gateway, payout_id=payout_id,
                            operator=ADMIN)
    assert payout.status == PayoutStatus.PAID
    assert len(world.transfers()) == 1


def test_stale_submitted_row_is_retried_with_the_same_key(world):
    from datetime import timedelta

    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer()
    payout_id = _request(world, freelancer.id)
    # The process "died" after Stripe executed: commit_then_drop, then the row is forced back to
    # submitted, as if the result was never recorded.
    world.emu.inject_fault("commit_then_drop", path="/v1/transfers", method="POST")
    execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                   operator=ADMIN)
    with world.session_factory.begin() as session:
        session.get(Payout, payout_id).status = PayoutStatus.SUBMITTED
    fresh = execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                           operator=ADMIN)
    assert fresh.status == PayoutStatus.SUBMITTED  # another executor may still be on it
    stale = execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                           operator=ADMIN, stale_after=timedelta(0))
    assert stale.status == PayoutStatus.PAID and len(world.transfers()) == 1


def _wrong_key_gateway(world: StripeWorld) -> StripeGateway:
    """A gateway whose key Stripe refuses with 401 (rotated, revoked or mistyped)."""
    client = stripe.StripeClient("sk_test_", base_addresses={"api": world.emu.base_url},
                                 max_network_retries=0)
    return StripeGateway(world.settings, client=client)


def test_an_auth_error_on_a_retry_never_resets_a_submitted_row(world):
    """Issue 17, defect 1: the first attempt paid but its answer was lost; the retry hits a 401."""
    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer()
    payout_id = _request(world, freelancer.id)
    world.emu.inject_fault("commit_then_drop", path="/v1/transfers", method="POST")
    first = execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                           operator=ADMIN)
    assert first.status == PayoutStatus.UNKNOWN and len(world.transfers()) == 1

    second = execute_payout(world.session_factory, gateway=_wrong_key_gateway(world),
                            payout_id=payout_id, operator=ADMIN)
    assert second.status == PayoutStatus.UNKNOWN, "a submitted row went back to pending"
    assert second.error_code == "stripe_authentication_error"
    # Not rejectable: the ledger would say "rejected" while Stripe paid.
    with world.session_factory.begin() as session, pytest.raises(ConflictError,
                                                                 match="no longer be rejected"):
        reject_payout(session, operator=FINANCE, payout_id=payout_id, reason="looks stuck")
    # Once the key is fixed, a retry with the same idempotency key settles it from Stripe's record.
    third = execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                           operator=ADMIN)
    assert third.status == PayoutStatus.PAID
    assert [t["id"] for t in world.transfers()] == [third.stripe_transfer_id]


def test_an_auth_error_on_the_first_attempt_keeps_the_row_out_of_pending(world):
    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer()
    payout_id = _request(world, freelancer.id)
    # (With the balance re-check, preflight stops at the refused key and nothing is submitted.)
    first = execute_payout(world.session_factory, gateway=_wrong_key_gateway(world),
                           payout_id=payout_id, operator=ADMIN, recheck_balance=False)
    assert first.status == PayoutStatus.UNKNOWN and first.submitted_at is not None
    assert world.transfers() == []
    with world.session_factory.begin() as session, pytest.raises(ConflictError,
                                                                 match="no longer be rejected"):
        reject_payout(session, operator=FINANCE, payout_id=payout_id, reason="key broken")
    paid = execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                          operator=ADMIN)
    assert paid.status == PayoutStatus.PAID and len(world.transfers()) == 1


def test_an_unknown_row_past_the_key_window_is_never_sent_again(world):
    """After Stripe may have pruned the key, only reconciliation or a person settles the row."""
    from datetime import timedelta

    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer()
    payout_id = _request(world, freelancer.id)
    execute_payout(world.session_factory, gateway=_wrong_key_gateway(world), payout_id=payout_id,
                   operator=ADMIN, recheck_balance=False)
    with world.session_factory.begin() as session:
        row = session.get(Payout, payout_id)
        assert row is not None and row.submitted_at is not None
        row.submitted_at -= timedelta(hours=25)
        row.created_at -= timedelta(hours=25)
    world.emu.advance_clock(25 * 3600)
    with pytest.raises(ConflictError, match="reconcile"):
        execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                       operator=ADMIN)
    assert retry_unsettled(world.session_factory, gateway=world.gateway, operator=ADMIN) == []
    assert world.transfers() == [] and _row(world.session_factory, payout_id).status == "unknown"


def test_retry_sweeper_settles_unknown_rows(world):
    world.emu.set_balance(100_000, "usd")
    ids = []
    for n in range(3):
        freelancer = world.freelancer(email=f"s{n}@example.com")
        ids.append(_request(world, freelancer.id, token=f"s{n}"))
    world.emu.inject_fault("http_500", path="/v1/transfers", method="POST", count=3,
                           saved=False)
    for payout_id in ids:
        execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                       operator=ADMIN)
    results = retry_unsettled(world.session_factory, gateway=world.gateway, operator=ADMIN)
    assert [p.status for p in results] == ["paid"] * 3
    assert len(world.transfers()) == 3


def test_fifty_threads_submitting_and_executing_one_request(world):
    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer()
    barrier = threading.Barrier(50)
    statuses: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def click() -> None:
        try:
            barrier.wait()
            payout_id = _request(world, freelancer.id, token="one-click")
            payout = execute_payout(world.session_factory, gateway=world.gateway,
                                    payout_id=payout_id, operator=ADMIN)
            with lock:
                statuses.append(payout.status)
        except BaseException as exc:  # noqa: BLE001 - reported below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=click) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert payout_count(world.session_factory) == 1
    assert len(world.transfers()) == 1
    assert set(statuses) <= {"paid", "submitted"} and "paid" in statuses
    with world.session_factory() as session:
        submits = session.scalars(select(AuditLog).where(AuditLog.action == "payout.submit")).all()
    assert len(submits) == 1


#: The start line the racing processes share (set in each pool process by ``_at_the_start``).
_start_line: Any = None
RACERS = 50


def _at_the_start(start_line: Any) -> None:
    global _start_line
    _start_line = start_line


def _process_click(database_url: str, base_url: str, freelancer_id: int) -> str:
    """One separate process: request and execute the same payout (spawned, so nothing shared)."""
    settings = make_settings(stripe_api_base=base_url, stripe_connect_base=base_url,
                             stripe_timeout_seconds=10)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    engine.connect().close()
    # Every process has imported and connected before any of them starts the race.
    _start_line.wait(timeout=900)
    try:
        with factory.begin() as session:
            payout_id = request_payout(
                session, operator=ADMIN, freelancer_id=freelancer_id, amount="25.00",
                currency="usd", description="race", client_request_token="process-race",
                settings=settings,
            ).id
        return execute_payout(factory, gateway=StripeGateway(settings), payout_id=payout_id,
                              operator=ADMIN).status
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.timeout(1200)  # 50 interpreters start on 2 cores: slow when the machine is busy
@requires_postgresql()
def test_fifty_processes_submitting_one_request_on_postgresql(world, database_url):
    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer()
    context = multiprocessing.get_context("spawn")
    # One task per process (each blocks at the start line until all have arrived).
    with context.Pool(processes=RACERS, initializer=_at_the_start,
                      initargs=(context.Barrier(RACERS),)) as pool:
        statuses = pool.starmap(
            _process_click,
            [(database_url, world.emu.base_url, freelancer.id)] * RACERS, chunksize=1,
        )
    assert len(statuses) == 50 and "paid" in statuses
    assert payout_count(world.session_factory) == 1
    assert len(world.transfers()) == 1
