"""Preflight checks answered by the mirror (the balance check with an emulator is elsewhere)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session, sessionmaker

from lib.models import ConnectedAccount
from lib.money import Money
from lib.payouts.preflight import available_in, preflight
from tests.lib.payouts.helpers import add_freelancer

USD_10 = Money(1000, "usd")


def _checks(session_factory: sessionmaker[Session], freelancer_id: int, money: Money = USD_10,
            available: int | None = 5000) -> dict[str, tuple[bool, str]]:
    with session_factory() as session:
        result = preflight(session, gateway=None, freelancer_id=freelancer_id, money=money,
                           available_minor=available)
    return {c.name: (c.ok, c.message) for c in result.checks}


def test_a_payable_account_passes_every_check(session_factory):
    with session_factory.begin() as session:
        fid = add_freelancer(session).id
    checks = _checks(session_factory, fid)
    assert all(ok for ok, _ in checks.values())
    assert set(checks) == {"connected", "destination_confirmed", "transfers_capability",
                           "payouts_enabled", "nothing_past_due", "currency_supported",
                           "balance_available"}


@pytest.mark.parametrize(
    ("overrides", "failing", "fragment"),
    [
        ({"capabilities": {"transfers": "inactive"}}, "transfers_capability", "inactive"),
        ({"capabilities": {}}, "transfers_capability", "not requested"),
        ({"payouts_enabled": False}, "payouts_enabled", "not enabled"),
        ({"requirements": {"past_due": ["external_account"]}}, "nothing_past_due", "1 requirement"),
        ({"default_currency": "eur"}, "currency_supported", "paid in EUR, not USD"),
        ({"default_currency": None}, "currency_supported", "unknown"),
    ],
)
def test_each_failing_check_is_named(session_factory, overrides, failing, fragment):
    with session_factory.begin() as session:
        fid = add_freelancer(session, **overrides).id
    checks = _checks(session_factory, fid)
    assert [name for name, (ok, _) in checks.items() if not ok] == [failing]
    assert fragment in checks[failing][1]


def test_not_connected_and_deauthorized(session_factory):
    with session_factory.begin() as session:
        lonely = add_freelancer(session, account_id=None).id
        gone = add_freelancer(session)
        session.query(ConnectedAccount).filter_by(stripe_id=gone.stripe_account_id).update(
            {"deauthorized_at": datetime(2026, 11, 1, tzinfo=UTC)}
        )
        gone_id = gone.id
    assert _checks(session_factory, lonely, available=None) == {
        "connected": (False, "Frida Freelancer has no connected Stripe account.")}
    assert "disconnected" in _checks(session_factory, gone_id)["connected"][1]


def test_balance_check(session_factory):
    with session_factory.begin() as session:
        fid = add_freelancer(session).id
    ok, message = _checks(session_factory, fid, available=999)["balance_available"]
    assert not ok and "$9.99 USD, less than $10.00 USD" in message
    assert "balance_available" not in _checks(session_factory, fid, available=None)


def test_available_in_sums_one_currency():
    balance = {"available": [{"amount": 500, "currency": "usd"}, {"amount": 7, "currency": "eur"},
                             {"amount": 25, "currency": "usd"}]}
    assert available_in(balance, "usd") == 525
    assert available_in(balance, "gbp") == 0
