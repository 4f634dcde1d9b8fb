"""Funding page (issue 21): each role, covered and short currencies, release dates, Stripe down;
the Overview's "funds needed" alert."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lib.models import PayoutStatus
from tests.dashboard.emulator_env import open_page, stripe_env  # noqa: F401 (fixture)
from tests.factories_dashboard import add_freelancer, add_payout, page_text, run_page_directly


def _commit(session_factory, amount: int, currency: str, status: str) -> None:
    with session_factory.begin() as session:
        freelancer = add_freelancer(session)
        add_payout(session, freelancer=freelancer, amount_minor=amount, currency=currency,
                   status=status)


@pytest.mark.parametrize("user", ["admin", "finance"])
def test_short_covered_and_pending_dates(app, stripe_env, session_factory, user) -> None:  # noqa: F811
    emulator = stripe_env
    now = int(emulator.state()["now"])
    emulator.set_balance(100_000, "usd")
    emulator.set_balance(10_000, "eur")
    emulator.set_balance(50_000, "eur", mode="add", pending=True, available_on=now + 3 * 86_400)
    _commit(session_factory, 250_000, "usd", PayoutStatus.PENDING_APPROVAL.value)
    _commit(session_factory, 40_000, "eur", PayoutStatus.PENDING.value)
    at = open_page(app, "funding.py", user)
    assert not at.exception
    text = page_text(at)
    on = datetime.fromtimestamp(now + 3 * 86_400, tz=UTC).date()
    assert "**USD** · Short $1,500.00 USD: add at least $1,500.00 USD beyond the pending funds." in text
    assert f"**EUR** · Short €300.00 EUR now; pending funds cover it on {on} (UTC)." in text
    [per_currency] = [t.value for t in at.dataframe if "Available now" in t.value.columns]
    usd = per_currency[per_currency["Currency"] == "USD"].iloc[0]
    assert (usd["Available now"], usd["Awaiting approval"], usd["Shortfall"]) == (
        "$1,000.00 USD", "$2,500.00 USD (1)", "$1,500.00 USD")
    releases = [t.value for t in at.dataframe if "Amount released" in t.value.columns][0]
    assert list(releases["Amount released"]) == ["€500.00 EUR"]
    assert list(releases["Covers what is committed"]) == ["Yes"]
    assert {m.label for m in at.metric} >= {"USD available", "EUR available"}
    for element in at.dataframe:
        assert "None" not in element.value.to_string()


def test_every_currency_covered(app, stripe_env, session_factory) -> None:  # noqa: F811
    _commit(session_factory, 1_000, "usd", PayoutStatus.PENDING.value)
    at = open_page(app, "funding.py", "finance")
    assert "Every currency's committed payouts are covered" in page_text(at)


def test_stripe_unreachable_says_so(app, session_factory) -> None:
    _commit(session_factory, 1_000, "usd", PayoutStatus.PENDING.value)
    at = open_page(app, "funding.py", "finance")   # dashboard_env: Stripe on a closed port
    assert not at.exception
    assert any("Stripe's balance could not be read" in e.value for e in at.error)


def test_manager_cannot_open_it(app) -> None:
    from tests.factories_dashboard import open_page as open_read_page

    with pytest.raises(ValueError, match="Could not find a navigation page"):
        open_read_page(app, "funding.py", "manager")
    at = run_page_directly("funding.py", "manager")
    assert [e.value for e in at.error] == ["manager (manager) may not view funding."]


@pytest.mark.parametrize("user", ["admin", "manager"])
def test_the_overview_says_funds_are_needed(app, stripe_env, session_factory, user) -> None:  # noqa: F811
    stripe_env.set_balance(1_000, "usd")
    _commit(session_factory, 6_000, "usd", PayoutStatus.PENDING_APPROVAL.value)
    at = open_page(app, "overview.py", user)
    assert not at.exception
    needed = [e.value for e in at.error if e.value.startswith("Funds needed")]
    assert needed == ["Funds needed: USD is short by $50.00 USD for the payouts already "
                      "approved or awaiting approval." + (" See Funding." if user == "admin"
                                                          else "")]
