"""The Reversals page (issue 17): admins reverse with a reason, a second person approves large
ones, finance reads and decides, a double submit is one reversal."""

from __future__ import annotations

import pytest

from lib.models import Payout, PayoutReversal, ReversalStatus
from lib.payouts import execute_payout, request_payout
from lib.payouts.approval import approve_payout
from tests.dashboard import emulator_env
from tests.dashboard.emulator_env import OPERATORS, OTHER_FINANCE, errors, open_page, texts

stripe_env, world = emulator_env.stripe_env, emulator_env.world  # fixtures


def paid_payout(world, amount: str = "40.00") -> int:
    world.emulator.set_balance(1_000_000, "usd")
    fid = world.freelancer()
    with world.session_factory.begin() as session:
        payout_id = request_payout(session, operator=OPERATORS["admin"], freelancer_id=fid,
                                   amount=amount, currency="usd", description="Job 1",
                                   client_request_token=None, settings=world.settings).id
        if session.get(Payout, payout_id).status == "pending_approval":
            approve_payout(session, operator=OTHER_FINANCE, payout_id=payout_id)
    payout = execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                            operator=OPERATORS["admin"])
    assert payout.status == "paid"
    return payout_id


def reversals(world) -> list[PayoutReversal]:
    with world.session_factory() as session:
        return list(session.query(PayoutReversal).order_by(PayoutReversal.id))


def reverse(at, payout_id: int, amount: str, reason: str):
    at.number_input(key="reversals_payout_id").set_value(payout_id).run()
    at.text_input(key="reversals_amount").input(amount)
    at.text_input(key="reversals_reason").input(reason)
    return at.button(key="FormSubmitter:reversals_form-Reverse").click().run()


@pytest.mark.parametrize("role", ["admin", "finance"])
def test_the_page_opens_on_an_empty_database(app, stripe_env, role) -> None:
    at = open_page(app, "reversals.py", role)
    assert not at.exception, at.exception
    assert "No reversals yet." in texts(at)
    keys = [n.key for n in at.number_input]
    assert ("reversals_payout_id" in keys) is (role == "admin")


def test_an_admin_reverses_part_of_a_payout_and_a_second_submit_is_the_same_one(app, world):
    payout_id = paid_payout(world)
    at = open_page(app, "reversals.py", "admin")
    at = reverse(at, payout_id, "10.00", "Overpaid by ten dollars")
    assert not at.exception, at.exception
    assert "made at Stripe" in texts(at), texts(at)
    (row,) = reversals(world)
    assert (row.status, row.amount_minor, row.requested_by) == ("succeeded", 1000, "admin")
    assert "$40.00 USD, paid; $30.00 USD can still be reversed" in texts(at)
    assert at.dataframe[0].value["Status"].tolist() == ["Succeeded"]
    assert at.dataframe[0].value["Amount"].tolist() == ["$10.00 USD"]
    assert "1 row" in [caption.value for caption in at.caption]       # the pager's count
    # The same amount again: the page names the earlier reversal and asks for confirmation.
    at = reverse(at, payout_id, "10.00", "Overpaid by ten dollars")
    assert any(f"#{row.id}" in e for e in errors(at)), errors(at)
    assert len(reversals(world)) == 1
    at.checkbox(key="reversals_again").check()
    at = at.button(key="FormSubmitter:reversals_form-Reverse").click().run()
    assert [r.amount_minor for r in reversals(world)] == [1000, 1000]


def test_a_large_reversal_waits_and_finance_approves_it(app, world):
    payout_id = paid_payout(world, amount="3000.00")
    at = reverse(open_page(app, "reversals.py", "admin"), payout_id, "", "Duplicate invoice")
    assert "waits for a second operator" in texts(at)
    (row,) = reversals(world)
    assert row.status == ReversalStatus.PENDING_APPROVAL
    # The requester cannot approve it: lib refuses and the page says so.
    at = at.button(key="reversals_approve").click().run()
    assert any("second operator" in e for e in errors(at)), errors(at)
    fin = open_page(app, "reversals.py", "finance")
    fin = fin.button(key="reversals_approve").click().run()
    assert not fin.exception, fin.exception
    assert "an admin sends it" in texts(fin)
    # Finance approves; an admin sends it with its own key.
    at = open_page(app, "reversals.py", "admin")
    at = at.button(key="reversals_send").click().run()
    assert "made at Stripe" in texts(at), texts(at)
    assert reversals(world)[0].status == ReversalStatus.SUCCEEDED
    with world.session_factory() as session:
        assert session.get(Payout, payout_id).status == "reversed"


def test_managers_cannot_open_it(app, stripe_env) -> None:
    from tests.dashboard.emulator_env import run_page_script

    at = run_page_script("reversals.py", "manager")
    assert errors(at) == ["manager (manager) may not view payouts."]
