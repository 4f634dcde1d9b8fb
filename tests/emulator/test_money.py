"""Transfers, reversals, balance, charges, payouts and events through the unmodified SDK."""

from __future__ import annotations

import time

import pytest
import stripe

from emulator.testing import EmulatorHandle
from tests.emulator.conftest import express_account, present


def _usd(balance: stripe.Balance) -> int:
    return next(b.amount for b in balance.available if b.currency == "usd")


def test_transfer_moves_funds_and_emits_event(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    acct = express_account(client, emu)
    before = _usd(client.v1.balance.retrieve())
    transfer = client.v1.transfers.create(
        params={
            "amount": 1500,
            "currency": "usd",
            "destination": acct.id,
            "description": "Invoice 7",
            "metadata": {"invoice": "7"},
            "transfer_group": "order_7",
        }
    )
    assert transfer.id.startswith("tr_") and transfer.object == "transfer"
    assert transfer.destination == acct.id and transfer.amount_reversed == 0
    assert transfer.reversed is False and transfer.livemode is False
    assert _usd(client.v1.balance.retrieve()) == before - 1500
    assert _usd(client.v1.balance.retrieve(options={"stripe_account": acct.id})) == 1500
    events = client.v1.events.list(params={"type": "transfer.created"})
    assert events.data[0].data.object.id == transfer.id
    assert present(events.data[0].request).id is not None
    expanded = client.v1.transfers.retrieve(transfer.id, params={"expand": ["destination", "balance_transaction"]})
    destination, movement = expanded.destination, expanded.balance_transaction
    assert isinstance(destination, stripe.Account) and destination.id == acct.id
    assert isinstance(movement, stripe.BalanceTransaction) and movement.amount == -1500


def test_transfer_errors(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    unonboarded = express_account(client, emu, onboarded=False)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.transfers.create(params={"amount": 100, "currency": "usd", "destination": unonboarded.id})
    assert exc.value.code == "insufficient_capabilities_for_transfer"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.transfers.create(params={"amount": 100, "currency": "usd", "destination": "acct_000000000000nope"})
    assert exc.value.code == "resource_missing" and exc.value.param == "destination"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        # No destination, on purpose: the emulator must refuse it as Stripe does.
        client.v1.transfers.create(params={"amount": 100, "currency": "usd"})  # type: ignore[typeddict-item]
    assert exc.value.param == "destination"


def test_balance_insufficient_leaves_balance_unchanged(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    acct = express_account(client, emu)
    emu.set_balance(1000)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.transfers.create(params={"amount": 1001, "currency": "usd", "destination": acct.id})
    assert exc.value.code == "balance_insufficient"
    assert exc.value.http_status == 400
    assert "insufficient available funds" in str(exc.value)
    assert _usd(client.v1.balance.retrieve()) == 1000
    assert client.v1.transfers.list().data == []


def test_update_and_list_transfers(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    a, b = express_account(client, emu), express_account(client, emu)
    t1 = client.v1.transfers.create(params={"amount": 100, "currency": "usd", "destination": a.id, "transfer_group": "g1"})
    t2 = client.v1.transfers.create(params={"amount": 200, "currency": "usd", "destination": b.id})
    t3 = client.v1.transfers.create(params={"amount": 300, "currency": "eur", "destination": a.id})
    assert [t.id for t in client.v1.transfers.list().data] == [t3.id, t2.id, t1.id]
    assert [t.id for t in client.v1.transfers.list(params={"destination": a.id}).data] == [t3.id, t1.id]
    assert [t.id for t in client.v1.transfers.list(params={"transfer_group": "g1"}).data] == [t1.id]
    page = client.v1.transfers.list(params={"limit": 2})
    assert page.has_more is True and page.url == "/v1/transfers"
    assert client.v1.transfers.list(params={"created": {"gte": t1.created}}).data
    assert client.v1.transfers.list(params={"created": {"lt": t1.created}}).data == []
    updated = client.v1.transfers.update(t1.id, params={"description": "fixed", "metadata": {"x": "y"}})
    assert updated.description == "fixed" and present(updated.metadata)["x"] == "y"
    event = client.v1.events.list(params={"type": "transfer.updated"}).data[0]
    assert present(event.data.previous_attributes)["description"] is None
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.transfers.list(params={"limit": 101})


def test_reversals(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    acct = express_account(client, emu)
    transfer = client.v1.transfers.create(params={"amount": 1000, "currency": "usd", "destination": acct.id})
    partial = client.v1.transfers.reversals.create(transfer.id, params={"amount": 400, "metadata": {"r": "1"}})
    assert partial.id.startswith("trr_") and partial.amount == 400 and partial.transfer == transfer.id
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.transfers.reversals.create(transfer.id, params={"amount": 601})
    assert exc.value.param == "amount"
    rest = client.v1.transfers.reversals.create(transfer.id)
    assert rest.amount == 600
    after = client.v1.transfers.retrieve(transfer.id)
    assert after.amount_reversed == 1000 and after.reversed is True
    assert [r.id for r in client.v1.transfers.reversals.list(transfer.id).data] == [rest.id, partial.id]
    assert present(client.v1.transfers.reversals.retrieve(transfer.id, partial.id).metadata)["r"] == "1"
    assert _usd(client.v1.balance.retrieve(options={"stripe_account": acct.id})) == 0
    assert client.v1.events.list(params={"type": "transfer.reversed"}).data[0].data.object.reversed is True


def test_reversal_needs_connected_balance(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    acct = express_account(client, emu)
    transfer = client.v1.transfers.create(params={"amount": 1000, "currency": "usd", "destination": acct.id})
    client.v1.payouts.create(params={"amount": 900, "currency": "usd"}, options={"stripe_account": acct.id})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.transfers.reversals.create(transfer.id, params={"amount": 500})
    assert exc.value.code == "balance_insufficient"
    assert client.v1.transfers.retrieve(transfer.id).amount_reversed == 0


def test_charges_top_up_balance(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    emu.set_balance(0)
    charge = client.v1.charges.create(params={"amount": 5000, "currency": "usd", "source": "tok_visa"})
    assert charge.status == "succeeded" and charge.paid is True and charge.id.startswith("ch_")
    assert _usd(client.v1.balance.retrieve()) == 5000
    assert client.v1.charges.retrieve(charge.id).amount == 5000
    assert [c.id for c in client.v1.charges.list().data] == [charge.id]
    types = [e.type for e in client.v1.events.list().data]
    assert "balance.available" in types and "charge.succeeded" in types
    with pytest.raises(stripe.CardError) as exc:
        client.v1.charges.create(params={"amount": 5000, "currency": "usd", "source": "tok_chargeDeclined"})
    assert exc.value.code == "card_declined" and exc.value.http_status == 402
    assert _usd(client.v1.balance.retrieve()) == 5000


def test_payouts_paid_and_failed(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    acct = express_account(client, emu)
    client.v1.transfers.create(params={"amount": 1000, "currency": "usd", "destination": acct.id})
    opts: stripe.RequestOptions = {"stripe_account": acct.id}
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payouts.create(params={"amount": 1001, "currency": "usd"}, options=opts)
    assert exc.value.code == "balance_insufficient"
    payout = client.v1.payouts.create(params={"amount": 400, "currency": "usd"}, options=opts)
    assert payout.status == "pending" and payout.id.startswith("po_")
    deadline = time.monotonic() + 3
    while client.v1.payouts.retrieve(payout.id, options=opts).status != "paid" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.v1.payouts.retrieve(payout.id, options=opts).status == "paid"
    paid_events = client.v1.events.list(params={"type": "payout.paid"}, options=opts).data
    assert paid_events[0].account == acct.id
    emu.fail_payout(payout.id, "account_closed")
    failed = client.v1.payouts.retrieve(payout.id, options=opts)
    assert failed.status == "failed" and failed.failure_code == "account_closed"
    assert _usd(client.v1.balance.retrieve(options=opts)) == 1000
    assert [p.id for p in client.v1.payouts.list(options=opts).data] == [payout.id]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payouts.retrieve(payout.id)  # not visible from the platform


def test_payout_fail_next_switch(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    acct = express_account(client, emu)
    client.v1.transfers.create(params={"amount": 1000, "currency": "usd", "destination": acct.id})
    emu.http.post("/_emulator/payouts/fail_next", json={"failure_code": "no_account"}).raise_for_status()
    opts: stripe.RequestOptions = {"stripe_account": acct.id}
    payout = client.v1.payouts.create(params={"amount": 400, "currency": "usd"}, options=opts)
    deadline = time.monotonic() + 3
    while client.v1.payouts.retrieve(payout.id, options=opts).status == "pending" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.v1.payouts.retrieve(payout.id, options=opts).failure_code == "no_account"
    assert client.v1.events.list(params={"type": "payout.failed"}, options=opts).data


def test_events_list_and_retrieve(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    acct = express_account(client, emu)
    client.v1.transfers.create(params={"amount": 100, "currency": "usd", "destination": acct.id})
    platform = client.v1.events.list()
    assert all(getattr(e, "account", None) is None for e in platform.data)
    connect = client.v1.events.list(params={"types": ["account.updated", "capability.updated"]}, options={"stripe_account": acct.id})
    assert {e.type for e in connect.data} == {"account.updated", "capability.updated"}
    assert all(e.account == acct.id for e in connect.data)
    one = client.v1.events.retrieve(platform.data[0].id)
    assert one.id == platform.data[0].id and one.api_version
    assert client.v1.events.list(params={"type": "transfer.*"}).data
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.events.retrieve("evt_missing")
