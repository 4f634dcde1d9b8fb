"""Reconciliation finds every planted mismatch and settles unknown rows it can prove."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from lib.db import utcnow
from lib.errors import PermissionDeniedError, ValidationError
from lib.models import AuditLog, Payout, PayoutStatus
from lib.payouts.execution import execute_payout
from lib.payouts.reconciliation import (
    AMOUNT_MISMATCH,
    CURRENCY_MISMATCH,
    DESTINATION_MISMATCH,
    MISSING_LEDGER,
    MISSING_TRANSFER,
    RETRY_SAME_KEY,
    UNEXPECTED_TRANSFER,
    UNKNOWN_EXPIRED,
    reconcile,
)
from scripts.processes import wait_until
from tests.lib.payouts.helpers import ADMIN, FINANCE, MANAGER
from tests.lib.payouts.test_execution import _request


def _paid(world, freelancer, token, amount="25.00"):
    payout_id = _request(world, freelancer.id, token=token, amount=amount)
    return execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                          operator=ADMIN)


def _reconcile(world, operator=FINANCE, **kw):
    return reconcile(world.session_factory, gateway=world.gateway, operator=operator,
                     since=utcnow() - timedelta(hours=1), **kw)


def test_every_planted_mismatch_is_found(world):
    world.emu.set_balance(1_000_000, "usd")
    world.emu.set_balance(1_000_000, "eur")
    alice = world.freelancer(email="a@example.com")
    bob = world.freelancer(email="b@example.com")

    good = _paid(world, alice, "good")
    # 1. A transfer made outside the desk (dashboard, script): no ledger row.
    stray = world.gateway.create_transfer(amount_minor=777, currency="usd",
                                          destination=bob.stripe_account_id,
                                          idempotency_key="stray-1", metadata={"note": "manual"})
    # 2. A ledger row claiming a transfer Stripe does not have.
    ghost_id = _request(world, alice.id, token="ghost")
    # 3. Amount, 4. currency, 5. destination differ from the transfer the row names.
    wrong_amount = _paid(world, alice, "amount")
    wrong_currency = _paid(world, bob, "currency")
    wrong_destination = _paid(world, bob, "destination")
    # 6. A transfer for a row the ledger calls failed.
    failed = _request(world, alice.id, token="failed")
    with world.session_factory.begin() as session:
        ghost = session.get(Payout, ghost_id)
        ghost.stripe_transfer_id, ghost.status = "tr_doesnotexist", PayoutStatus.PAID
        session.get(Payout, wrong_amount.id).amount_minor = 2400
        session.get(Payout, wrong_currency.id).currency = "eur"
        session.get(Payout, wrong_destination.id).stripe_account_id = alice.stripe_account_id
        session.get(Payout, failed).status = PayoutStatus.FAILED
        failed_row = session.get(Payout, failed)
        key, group = failed_row.idempotency_key, f"payout-{failed}"
    world.gateway.create_transfer(
        amount_minor=2500, currency="usd", destination=alice.stripe_account_id,
        idempotency_key=key, transfer_group=group,
        metadata={"payout_id": str(failed), "ledger_key": key},
    )

    report = _reconcile(world)

    def ids(kind):
        return {(i.payout_id, i.stripe_transfer_id) for i in report.of_kind(kind)}

    assert ids(MISSING_LEDGER) == {(None, stray.id)}, (report.summary(), report.rows())
    assert ids(MISSING_TRANSFER) == {(ghost.id, "tr_doesnotexist")}
    assert ids(AMOUNT_MISMATCH) == {(wrong_amount.id, wrong_amount.stripe_transfer_id)}
    assert ids(CURRENCY_MISMATCH) == {(wrong_currency.id, wrong_currency.stripe_transfer_id)}
    assert ids(DESTINATION_MISMATCH) == {
        (wrong_destination.id, wrong_destination.stripe_transfer_id)}
    assert {i.payout_id for i in report.of_kind(UNEXPECTED_TRANSFER)} == {failed}
    assert report.matched == 1  # only the good one
    assert good.id not in {i.payout_id for i in report.mismatches}
    assert len(report.mismatches) == 6
    assert report.transfers_seen == 6
    amount_row = report.of_kind(AMOUNT_MISMATCH)[0]
    assert (amount_row.ledger_amount_minor, amount_row.stripe_amount_minor) == (2400, 2500)
    assert set(report.rows()[0]) >= {"kind", "detail", "payout_id", "stripe_transfer_id"}


def test_unknown_row_whose_transfer_exists_is_settled_paid(world):
    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer()
    payout_id = _request(world, freelancer.id)
    world.emu.inject_fault("commit_then_drop", path="/v1/transfers", method="POST")
    first = execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                           operator=ADMIN)
    assert first.status == PayoutStatus.UNKNOWN
    report = _reconcile(world)
    (item,) = report.resolved
    assert item.payout_id == payout_id and report.mismatches == []
    with world.session_factory() as session:
        row = session.get(Payout, payout_id)
        assert row.status == PayoutStatus.PAID
        assert row.stripe_transfer_id == world.transfers()[0]["id"]
        assert session.scalars(select(AuditLog.result).where(
            AuditLog.action == "payout.reconcile")).one() == "resolved_paid"
    # Executing it again is now a no-op: still one transfer.
    execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                   operator=ADMIN)
    assert len(world.transfers()) == 1
    # And a second reconciliation finds everything matched.
    assert _reconcile(world).mismatches == []


def test_unknown_row_found_outside_the_period_by_destination(world):
    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer()
    payout_id = _request(world, freelancer.id)
    world.emu.inject_fault("commit_then_drop", path="/v1/transfers", method="POST")
    execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                   operator=ADMIN)
    report = reconcile(world.session_factory, gateway=world.gateway, operator=FINANCE,
                       since=utcnow() + timedelta(minutes=1),
                       until=utcnow() + timedelta(hours=1))
    assert report.transfers_seen == 0
    assert [i.payout_id for i in report.resolved] == [payout_id]


def test_unknown_row_without_a_transfer_is_left_for_a_same_key_retry(world):
    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer()
    payout_id = _request(world, freelancer.id)
    # A 500 before execution (nothing saved under the key); a saved one is test_saved_server_error.
    world.emu.inject_fault("http_500", path="/v1/transfers", method="POST", saved=False)
    execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                   operator=ADMIN)
    report = _reconcile(world)
    assert [i.payout_id for i in report.of_kind(RETRY_SAME_KEY)] == [payout_id]
    # Once the key may be pruned, retrying is refused and a person must decide.
    with world.session_factory.begin() as session:
        session.get(Payout, payout_id).submitted_at = utcnow() - timedelta(days=2)
    report = _reconcile(world)
    assert [i.payout_id for i in report.of_kind(UNKNOWN_EXPIRED)] == [payout_id]


def test_reconcile_needs_the_role_and_a_sane_period(world):
    with pytest.raises(PermissionDeniedError):
        reconcile(world.session_factory, gateway=world.gateway, operator=MANAGER, since=utcnow())
    with pytest.raises(ValidationError):
        reconcile(world.session_factory, gateway=world.gateway, operator=FINANCE, since=utcnow(),
                  until=utcnow() - timedelta(days=1))


# ---- issue 17, defect 6: no transaction spans a Stripe call; every ambiguity is reported -------

def test_two_transfers_claiming_one_row_are_reported_and_nothing_is_settled(world):
    from lib.payouts.reconciliation import AMBIGUOUS

    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer()
    payout_id = _request(world, freelancer.id)
    world.emu.inject_fault("commit_then_drop", path="/v1/transfers", method="POST")
    execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                   operator=ADMIN)
    with world.session_factory() as session:
        key = session.get(Payout, payout_id).idempotency_key
    # A second transfer carrying the same ledger key (a copy of the desk, a hand-made one).
    second = world.gateway.create_transfer(
        amount_minor=2500, currency="usd", destination=freelancer.stripe_account_id,
        idempotency_key="elsewhere-1", metadata={"payout_id": str(payout_id), "ledger_key": key})
    report = _reconcile(world)
    (item,) = report.of_kind(AMBIGUOUS)
    assert item.payout_id == payout_id and second.id in item.detail
    assert len(world.transfers()) == 2
    assert all(t["id"] in item.detail for t in world.transfers())
    assert report.resolved == [] and item in report.mismatches
    with world.session_factory() as session:
        assert session.get(Payout, payout_id).status == PayoutStatus.UNKNOWN


def test_no_write_lock_is_held_while_stripe_is_read(world):
    """On SQLite a writer waited for reconciliation's Stripe calls (up to 30 s each)."""
    import threading

    from lib import audit

    world.emu.set_balance(100_000, "usd")
    paid = _paid(world, world.freelancer(), "held")
    # A paid row of the period whose transfer is not in the period's list: reconciliation reads
    # the ledger, then retrieves that transfer from Stripe (held 1 s; the gateway waits 2 s).
    since = utcnow() + timedelta(minutes=1)
    with world.session_factory.begin() as session:
        session.get(Payout, paid.id).created_at = since + timedelta(minutes=1)
    world.emu.inject_fault("delay", path="/v1/transfers/{transfer}", method="GET", seconds=1.0)
    done: list[object] = []
    runner = threading.Thread(target=lambda: done.append(reconcile(
        world.session_factory, gateway=world.gateway, operator=FINANCE, since=since,
        until=since + timedelta(hours=1))))
    runner.start()
    wait_until(lambda: world.emu.state()["in_flight"], timeout=10, interval=0.01,
               what="reconciliation's call reaching Stripe")
    # Reconciliation is inside its Stripe call right now: another writer goes straight through.
    audit.record_now(world.session_factory, actor=ADMIN, action="test.write", result="ok")
    assert world.emu.state()["in_flight"] == 1, "the write waited for Stripe's answer"
    runner.join()
    assert done and done[0].matched == 1 and done[0].mismatches == []


def test_an_unknown_reversal_is_settled_or_left_for_a_person(world):
    from lib.models import PayoutReversal, ReversalStatus
    from lib.payouts.reconciliation import RESOLVED_REVERSAL
    from lib.payouts.reversal import reverse_payout

    world.emu.set_balance(100_000, "usd")
    made = _paid(world, world.freelancer(email="made@example.com"), "made")
    lost = _paid(world, world.freelancer(email="lost@example.com"), "lost")
    world.emu.inject_fault("commit_then_drop", path="/v1/transfers/", method="POST")
    found = reverse_payout(world.session_factory, gateway=world.gateway,
                           settings=world.settings, operator=ADMIN, payout_id=made.id,
                           amount="5.00", reason="fee")
    world.emu.inject_fault("http_500", path="/v1/transfers/", method="POST", saved=False)
    missing = reverse_payout(world.session_factory, gateway=world.gateway,
                             settings=world.settings, operator=ADMIN, payout_id=lost.id,
                             amount="5.00", reason="fee")
    assert (found.status, missing.status) == ("unknown", "unknown")
    report = _reconcile(world)
    assert [i.reversal_id for i in report.of_kind(RESOLVED_REVERSAL)] == [found.id]
    assert [i.reversal_id for i in report.of_kind(RETRY_SAME_KEY)] == [missing.id]
    with world.session_factory.begin() as session:
        assert session.get(PayoutReversal, found.id).status == ReversalStatus.SUCCEEDED
        session.get(PayoutReversal, missing.id).submitted_at = utcnow() - timedelta(days=2)
    later = _reconcile(world)
    assert [i.reversal_id for i in later.of_kind(UNKNOWN_EXPIRED)] == [missing.id]
    # The succeeded reversal now matches Stripe's amount_reversed on its transfer.
    assert not later.of_kind("reversal_mismatch")
