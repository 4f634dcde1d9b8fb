"""Transfer events against the ledger (issue 17, defect 7): drift is reported and audited, never
marked processed in silence; unknown reversals heal from the transfer's reversals."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from lib.models import AuditLog, Payout, PayoutReversal, PayoutStatus, ReversalStatus
from lib.payouts.execution import execute_payout
from lib.payouts.reversal import reverse_payout
from lib.payouts.webhooks import DRIFT_ACTION, apply_transfer_event
from tests.lib.payouts.helpers import ADMIN
from tests.lib.payouts.test_execution import _request


def _event(transfer_id: str, kind: str = "transfer.created") -> dict:
    return {"id": f"evt_{transfer_id}", "type": kind, "data": {"object": {"id": transfer_id}}}


def _drift_entries(world) -> list[AuditLog]:
    with world.session_factory() as session:
        return list(session.scalars(select(AuditLog).where(AuditLog.action == DRIFT_ACTION)))


@pytest.mark.parametrize("ledger_status", ["pending", "pending_approval", "failed", "rejected"])
def test_a_transfer_for_a_row_the_ledger_calls_unpaid_is_drift(world, ledger_status):
    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer()
    payout_id = _request(world, freelancer.id)
    with world.session_factory.begin() as session:
        row = session.get(Payout, payout_id)
        assert row is not None
        row.status = ledger_status
        key = row.idempotency_key
    # Stripe moved money for this row anyway (another copy of the desk, a script, a bug).
    transfer = world.gateway.create_transfer(
        amount_minor=2500, currency="usd", destination=freelancer.stripe_account_id,
        idempotency_key=key, metadata={"payout_id": str(payout_id), "ledger_key": key})
    note = apply_transfer_event(world.session_factory, gateway=world.gateway,
                                event=_event(transfer.id))
    assert note is not None and note.startswith(f"drift on payout {payout_id}")
    assert ledger_status in note
    (entry,) = _drift_entries(world)
    assert (entry.target, entry.result) == (f"payout:{payout_id}", "detected")
    assert entry.input["transfer"] == transfer.id and entry.input["ledger_status"] == ledger_status
    with world.session_factory() as session:
        assert session.get(Payout, payout_id).status == ledger_status  # nothing invented


def test_a_transfer_that_differs_from_its_row_is_drift(world):
    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer()
    payout = execute_payout(world.session_factory, gateway=world.gateway,
                            payout_id=_request(world, freelancer.id), operator=ADMIN)
    with world.session_factory.begin() as session:
        session.get(Payout, payout.id).amount_minor = 2400
    note = apply_transfer_event(world.session_factory, gateway=world.gateway,
                                event=_event(payout.stripe_transfer_id))
    assert note is not None and note.startswith("drift") and "2400" in note
    assert len(_drift_entries(world)) == 1


def test_a_matching_transfer_settles_an_unknown_row_and_is_no_drift(world):
    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer()
    payout_id = _request(world, freelancer.id)
    world.emu.inject_fault("commit_then_drop", path="/v1/transfers", method="POST")
    execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                   operator=ADMIN)
    (transfer,) = world.transfers()
    assert apply_transfer_event(world.session_factory, gateway=world.gateway,
                                event=_event(transfer["id"])) is None
    with world.session_factory() as session:
        assert session.get(Payout, payout_id).status == PayoutStatus.PAID
    assert _drift_entries(world) == []


def test_transfer_reversed_settles_an_unknown_reversal(world):
    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer()
    payout = execute_payout(world.session_factory, gateway=world.gateway,
                            payout_id=_request(world, freelancer.id), operator=ADMIN)
    world.emu.inject_fault("commit_then_drop", path="/v1/transfers/", method="POST")
    reversal = reverse_payout(world.session_factory, gateway=world.gateway,
                              settings=world.settings, operator=ADMIN, payout_id=payout.id,
                              amount="5.00", reason="fee")
    assert reversal.status == ReversalStatus.UNKNOWN
    assert apply_transfer_event(world.session_factory, gateway=world.gateway,
                                event=_event(payout.stripe_transfer_id, "transfer.reversed")) is None
    with world.session_factory() as session:
        row = session.get(PayoutReversal, reversal.id)
        assert row.status == ReversalStatus.SUCCEEDED and row.stripe_reversal_id
