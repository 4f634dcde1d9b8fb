"""Reversals (admin only, reserved before Stripe) and the ledger queries the dashboard reads."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lib.db import utcnow
from lib.errors import ConflictError, PermissionDeniedError, ValidationError
from lib.models import Payout, PayoutStatus
from lib.payouts.execution import execute_payout
from lib.payouts.queries import PayoutFilter, export_rows, list_payouts, totals_by_currency
from lib.payouts.reversal import retry_reversal, reverse_payout
from tests.lib.payouts.helpers import ADMIN, FINANCE, MANAGER
from tests.lib.payouts.test_execution import _request


def _paid(world, freelancer, token="t", amount="25.00"):
    payout_id = _request(world, freelancer.id, token=token, amount=amount)
    return execute_payout(world.session_factory, gateway=world.gateway, payout_id=payout_id,
                          operator=ADMIN)


def test_partial_then_full_reversal(world):
    world.emu.set_balance(100_000, "usd")
    payout = _paid(world, world.freelancer())
    first = reverse_payout(world.session_factory, gateway=world.gateway, settings=world.settings,
                   operator=ADMIN,
                           payout_id=payout.id, amount="10.00", reason="overpaid")
    assert first.status == "succeeded" and first.stripe_reversal_id
    with world.session_factory() as session:
        row = session.get(Payout, payout.id)
        assert (row.status, row.amount_reversed_minor) == ("paid", 1000)
    with pytest.raises(ValidationError, match="left to reverse"):
        reverse_payout(world.session_factory, gateway=world.gateway, settings=world.settings,
                   operator=ADMIN,
                       payout_id=payout.id, amount="20.00", reason="too much")
    rest = reverse_payout(world.session_factory, gateway=world.gateway, settings=world.settings,
                   operator=ADMIN,
                          payout_id=payout.id, amount=None, reason="cancelled job")
    assert rest.amount_minor == 1500
    with world.session_factory() as session:
        row = session.get(Payout, payout.id)
        assert (row.status, row.amount_reversed_minor) == ("reversed", 2500)
    assert world.gateway.retrieve_transfer(payout.stripe_transfer_id)["amount_reversed"] == 2500
    assert world.available() == 100_000


def test_only_admins_reverse_and_only_paid_rows(world):
    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer()
    payout = _paid(world, freelancer)
    with pytest.raises(PermissionDeniedError):
        reverse_payout(world.session_factory, gateway=world.gateway, settings=world.settings,
                   operator=FINANCE,
                       payout_id=payout.id, amount=None, reason="x")
    with pytest.raises(ValidationError, match="reason"):
        reverse_payout(world.session_factory, gateway=world.gateway, settings=world.settings,
                   operator=ADMIN,
                       payout_id=payout.id, amount=None, reason=" ")
    pending = _request(world, freelancer.id, token="p")
    with pytest.raises(ConflictError, match="only paid"):
        reverse_payout(world.session_factory, gateway=world.gateway, settings=world.settings,
                   operator=ADMIN,
                       payout_id=pending, amount=None, reason="x")


def test_refused_reversal_releases_its_reservation(world):
    world.emu.set_balance(100_000, "usd")
    freelancer = world.freelancer()
    payout = _paid(world, freelancer)
    # The freelancer already spent it: the account's balance no longer covers a reversal.
    world.emu.set_balance(0, "usd", account=freelancer.stripe_account_id)
    failed = reverse_payout(world.session_factory, gateway=world.gateway, settings=world.settings,
                   operator=ADMIN,
                            payout_id=payout.id, amount=None, reason="clawback")
    assert failed.status == "failed" and failed.error_code == "balance_insufficient"
    with world.session_factory() as session:
        assert session.get(Payout, payout.id).amount_reversed_minor == 0


def test_unknown_reversal_is_retried_with_its_key(world):
    world.emu.set_balance(100_000, "usd")
    payout = _paid(world, world.freelancer())
    world.emu.inject_fault("commit_then_drop", path="/v1/transfers/", method="POST")
    unknown = reverse_payout(world.session_factory, gateway=world.gateway, settings=world.settings,
                   operator=ADMIN,
                             payout_id=payout.id, amount=None, reason="dup")
    assert unknown.status == "unknown"
    done = retry_reversal(world.session_factory, gateway=world.gateway, operator=ADMIN,
                          reversal_id=unknown.id)
    assert done.status == "succeeded"
    transfer = world.gateway.retrieve_transfer(payout.stripe_transfer_id)
    assert transfer["amount_reversed"] == 2500 and transfer["reversals"]["total_count"] == 1


def test_ledger_listing_filters_paging_totals_and_export(world):
    world.emu.set_balance(1_000_000, "usd")
    a = world.freelancer(email="qa@example.com")
    b = world.freelancer(email="qb@example.com")
    for n in range(5):
        _paid(world, a, token=f"a{n}", amount=f"{n + 1}.00")
    pending = _request(world, b.id, token="b0", amount="7.00")
    _request(world, b.id, token="big", amount="5000.00")  # awaits approval

    with world.session_factory() as session:
        page = list_payouts(session, operator=FINANCE, limit=3)
        assert page.total == 7 and len(page.rows) == 3 and page.has_more
        assert page.rows[0].id > page.rows[1].id  # newest first
        last = list_payouts(session, operator=FINANCE, limit=3, offset=6)
        assert len(last.rows) == 1 and not last.has_more
        paid = list_payouts(session, operator=FINANCE, filters=PayoutFilter(status="paid"))
        assert paid.total == 5 and {r.freelancer_email for r in paid.rows} == {"qa@example.com"}
        mine = list_payouts(session, operator=FINANCE, filters=PayoutFilter(freelancer_id=b.id))
        assert {r.id for r in mine.rows} >= {pending}
        future = list_payouts(session, operator=FINANCE, filters=PayoutFilter(
            created_from=utcnow() + timedelta(days=1)))
        assert future.total == 0
        assert list_payouts(session, operator=FINANCE,
                            filters=PayoutFilter(currency="EUR")).total == 0
        totals = {(t.currency, t.status): (t.count, t.amount_minor, t.amount)
                  for t in totals_by_currency(session, operator=FINANCE)}
        assert totals[("usd", "paid")] == (5, 1500, "15.00")
        assert totals[("usd", "pending_approval")] == (1, 500_000, "5,000.00")
        export = export_rows(session, operator=FINANCE, filters=PayoutFilter(status="paid"))
        rows = export.rows
        assert len(rows) == 5 and rows[0]["amount"] == "1.00" and rows[0]["stripe_transfer_id"]
        assert export.matching == 5 and export.notice() is None
        # A cap never cuts an export silently: the result says how much is missing.
        cut = export_rows(session, operator=FINANCE, filters=PayoutFilter(status="paid"), cap=2)
        assert len(cut.rows) == 2 and cut.truncated and "2 of 5" in (cut.notice() or "")
        with pytest.raises(PermissionDeniedError):
            list_payouts(session, operator=MANAGER)
        with pytest.raises(ValidationError):
            list_payouts(session, operator=FINANCE, filters=PayoutFilter(status="bogus"))
        with pytest.raises(ValidationError):
            list_payouts(session, operator=FINANCE, limit=0)
    assert PayoutStatus.PAID == "paid"


def test_totals_and_exports_are_net_of_reversals(world):
    world.emu.set_balance(100_000, "usd")
    payout = _paid(world, world.freelancer(), amount="25.00")
    reverse_payout(world.session_factory, gateway=world.gateway, settings=world.settings,
                   operator=ADMIN, payout_id=payout.id, amount="10.00", reason="overpaid")
    with world.session_factory() as session:
        (cell,) = totals_by_currency(session, operator=FINANCE)
        (row,) = export_rows(session, operator=FINANCE).rows
    assert (cell.status, cell.amount_minor, cell.reversed_minor, cell.net_minor) == (
        "paid", 2500, 1000, 1500)
    assert (cell.reversed, cell.net) == ("10.00", "15.00")
    assert (row["reversed_minor"], row["net_minor"], row["net"]) == (1000, 1500, "15.00")


def test_reversals_are_paged_newest_first_and_counted_up_to_a_cap(world, monkeypatch):
    from lib.payouts import queries

    world.emu.set_balance(100_000, "usd")
    payout = _paid(world, world.freelancer(), amount="30.00")
    made = [reverse_payout(world.session_factory, gateway=world.gateway,
                           settings=world.settings, operator=ADMIN, payout_id=payout.id,
                           amount=amount, reason=f"part {number}").id
            for number, amount in enumerate(("5.00", "6.00", "7.00"))]
    with world.session_factory() as session:
        first = queries.reversal_page(session, operator=FINANCE, limit=2)
        rest = queries.reversal_page(session, operator=FINANCE, limit=2, offset=2)
        assert [r.id for r in first.rows] == made[:0:-1] and [r.id for r in rest.rows] == made[:1]
        assert (first.total, first.total_is_lower_bound) == (3, False)
        assert [r.amount for r in first.rows] == ["7.00", "6.00"]
        monkeypatch.setattr(queries, "REVERSAL_COUNT_CAP", 2)
        capped = queries.reversal_page(session, operator=FINANCE, limit=2)
        assert (capped.total, capped.total_is_lower_bound) == (2, True)
        assert [r.id for r in queries.list_reversals(
            session, operator=FINANCE, statuses=("pending", "succeeded"))] == made[::-1]
        assert queries.list_reversals(session, operator=FINANCE, statuses=("pending",)) == []
        with pytest.raises(ValidationError):
            queries.list_reversals(session, operator=FINANCE, statuses=("paid",))
        with pytest.raises(ValidationError):
            queries.reversal_page(session, operator=FINANCE, limit=0)
        with pytest.raises(PermissionDeniedError):
            queries.reversal_page(session, operator=MANAGER, limit=2)
