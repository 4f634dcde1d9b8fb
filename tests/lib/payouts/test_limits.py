"""Per-currency payout limits (issue 17): derived from a base currency, or set exactly."""

from __future__ import annotations

import pytest

from lib.errors import ConfigurationError, ValidationError
from lib.models import PayoutStatus
from lib.payouts.ledger import parse_money, request_payout
from lib.payouts.limits import limits_for
from lib.settings import load_settings
from tests.factories import make_settings
from tests.lib.payouts.helpers import ADMIN, add_freelancer


def test_yen_is_not_treated_as_dollars():
    """¥100,000 is about $670: by default it neither needs approval nor hits a $ cap."""
    settings = make_settings()
    usd, jpy = limits_for(settings, "usd"), limits_for(settings, "jpy")
    assert (usd.approval_threshold_minor, usd.max_minor) == (100_000, 5_000_000)
    assert (jpy.approval_threshold_minor, jpy.max_minor) == (150_000, 7_500_000)
    assert not usd.derived and jpy.derived
    assert parse_money("7500000", "jpy", settings=settings).amount_minor == 7_500_000
    with pytest.raises(ValidationError):
        parse_money("7500001", "jpy", settings=settings)


@pytest.mark.parametrize("currency", ["usd", "eur", "gbp", "jpy", "kwd", "huf", "isk", "chf"])
def test_derived_limits_are_payable_amounts_rounded_down(currency):
    settings = make_settings()
    limits = limits_for(settings, currency)
    assert limits.max_minor is not None and limits.approval_threshold_minor > 0
    for amount in (limits.approval_threshold_minor, limits.max_minor):
        # Each limit itself is an amount Stripe accepts in that currency (steps respected).
        money = parse_money(str(_as_text(amount, currency)), currency,
                            settings=make_settings(payout_maxima={currency: amount}))
        assert money.amount_minor == amount


def _as_text(minor: int, currency: str) -> str:
    from lib.money import Money, to_decimal

    return str(to_decimal(Money(minor, currency)))


def test_exact_limits_override_the_derived_ones():
    settings = make_settings(payout_approval_thresholds={"jpy": 200_000},
                             payout_maxima={"jpy": 1_000_000})
    jpy = limits_for(settings, "jpy")
    assert (jpy.approval_threshold_minor, jpy.max_minor) == (200_000, 1_000_000)
    assert "¥200,000" in jpy.describe() and "¥1,000,000" in jpy.describe()


def test_a_currency_without_a_rate_or_setting_needs_approval_and_is_refused():
    settings = make_settings()
    xof = limits_for(settings, "xof")
    assert xof.approval_threshold_minor == 0 and xof.max_minor is None
    with pytest.raises(ValidationError, match="PAYOUT_MAXIMA"):
        parse_money("100", "xof", settings=settings)
    assert parse_money("100", "xof", settings=make_settings(payout_maxima={"xof": 10_000}))


def test_another_base_currency_derives_the_others():
    settings = make_settings(payout_base_currency="eur", payout_approval_threshold_minor=90_000,
                             payout_max_minor=4_500_000)
    assert limits_for(settings, "usd").approval_threshold_minor == 100_000
    assert limits_for(settings, "eur").approval_threshold_minor == 90_000


def test_limits_from_the_environment(monkeypatch):
    monkeypatch.setenv("PAYOUT_APPROVAL_THRESHOLDS", "JPY=200000, gbp=50000")
    monkeypatch.setenv("PAYOUT_BASE_CURRENCY", "GBP")
    settings = load_settings()
    assert settings.payout_approval_thresholds == {"jpy": 200_000, "gbp": 50_000}
    assert settings.payout_base_currency == "gbp"
    monkeypatch.setenv("PAYOUT_MAXIMA", "yen=5")
    with pytest.raises(ConfigurationError, match="PAYOUT_MAXIMA"):
        load_settings()


def test_the_ledger_applies_the_currency_threshold(session_factory):
    settings = make_settings()
    with session_factory.begin() as session:
        freelancer = add_freelancer(session, default_currency="jpy")
        small = request_payout(session, operator=ADMIN, freelancer_id=freelancer.id,
                               amount="120000", currency="jpy", description="a", settings=settings,
                               client_request_token=None)
        big = request_payout(session, operator=ADMIN, freelancer_id=freelancer.id,
                             amount="150000", currency="jpy", description="b", settings=settings,
                             client_request_token=None)
        assert small.status == PayoutStatus.PENDING
        assert big.status == PayoutStatus.PENDING_APPROVAL
