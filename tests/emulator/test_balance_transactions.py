"""GET /v1/balance_transactions and pending funds with a release date (issue 21's Funding page).

Stripe's balance object says how much is pending, not when it becomes available; the pending
balance transactions' ``available_on`` does. The emulator lists every movement it writes, per
scope, newest first, and pending funds added through the control API carry their date.
"""

from __future__ import annotations

import pytest
import stripe

from emulator.testing import EmulatorHandle
from tests.emulator.conftest import express_account


def test_pending_funds_have_a_release_date(client: stripe.StripeClient,
                                           emu: EmulatorHandle) -> None:
    now = int(emu.state()["now"])
    emu.set_balance(70_000, "usd", mode="add", pending=True, available_on=now + 3 * 86_400)
    emu.set_balance(5_000, "eur", mode="add", pending=True)  # the default: two days later
    balance = client.v1.balance.retrieve()
    pending_now = {p.currency: p.amount for p in balance.pending}
    assert (pending_now["usd"], pending_now["eur"]) == (70_000, 5_000)
    listed = client.v1.balance_transactions.list({"limit": 10})
    pending = {t.currency: t for t in listed.data if t.status == "pending"}
    assert pending["usd"].amount == 70_000 and pending["usd"].available_on == now + 3 * 86_400
    assert pending["eur"].available_on >= now + 2 * 86_400
    only_eur = client.v1.balance_transactions.list({"currency": "eur"})
    assert [t.currency for t in only_eur.data] == ["eur"]


def test_movements_are_listed_per_scope_newest_first(client: stripe.StripeClient,
                                                     emu: EmulatorHandle) -> None:
    emu.set_balance(100_000, "usd")
    acct = express_account(client, emu)
    transfer = client.v1.transfers.create({"amount": 1_000, "currency": "usd",
                                           "destination": acct.id})
    client.v1.transfers.create({"amount": 2_000, "currency": "usd", "destination": acct.id})
    platform = client.v1.balance_transactions.list({"type": "transfer"})
    assert [t.amount for t in platform.data] == [-2_000, -1_000]
    assert [t.source for t in client.v1.balance_transactions.list(
        {"source": transfer.id}).data] == [transfer.id]
    theirs = client.v1.balance_transactions.list(options={"stripe_account": acct.id})
    # The account sees each transfer as a payment into its own balance; not the platform's rows.
    assert [(t.type, t.amount) for t in theirs.data] == [("payment", 2_000), ("payment", 1_000)]


def test_unknown_parameters_are_refused(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    with pytest.raises(stripe.InvalidRequestError, match="status"):
        # An unknown parameter, on purpose: the emulator must refuse it as Stripe does.
        client.v1.balance_transactions.list({"status": "pending"})  # type: ignore[arg-type]
