"""Payout limits per currency: the approval threshold and the largest single payout.

Why per currency
    One number of minor units for every currency made ¥100,000 (about $670) need the same
    second approver as $1,000, and capped a yen payout at ¥5,000,000 while a dollar one could
    reach $50,000. Limits are now set in a base currency (``PAYOUT_BASE_CURRENCY``, USD by
    default, with ``PAYOUT_APPROVAL_THRESHOLD_MINOR`` / ``PAYOUT_MAX_MINOR`` in its minor units)
    and each other currency gets a **derived default** of the same order of magnitude, unless
    ``PAYOUT_APPROVAL_THRESHOLDS`` / ``PAYOUT_MAXIMA`` set it exactly (``jpy=150000,gbp=80000``).

How defaults are derived
    :data:`UNITS_PER_USD` holds deliberately round, order-of-magnitude rates (not exchange
    rates: the desk never converts money). The base amount in major units is converted and then
    rounded **down** to two significant digits, so a derived threshold asks for approval a
    little early and a derived maximum refuses a little early — never the other way. A currency
    missing from the table and not configured has no derived limit: every payout in it needs a
    second approver, and it cannot be paid at all until ``PAYOUT_MAXIMA`` names it (a clear
    refusal instead of a guess).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, getcontext

from lib.errors import ValidationError
from lib.money import (
    STRIPE_MAX_AMOUNT_MINOR,
    Money,
    currency_exponent,
    format_money,
    normalise_currency,
    wire_exponent,
)
from lib.settings import Settings

#: Rough units of each currency per US dollar (order of magnitude only; see the module doc).
UNITS_PER_USD: dict[str, Decimal] = {code: Decimal(rate) for code, rate in {
    "usd": "1", "eur": "0.9", "gbp": "0.8", "chf": "0.9", "cad": "1.4", "aud": "1.5",
    "nzd": "1.7", "jpy": "150", "sek": "10", "nok": "10", "dkk": "7", "isk": "140",
    "pln": "4", "czk": "23", "huf": "350", "ron": "4.5", "bgn": "1.8", "hkd": "7.8",
    "sgd": "1.3", "mxn": "18", "brl": "5", "inr": "85", "krw": "1400", "twd": "32",
    "thb": "35", "myr": "4.5", "idr": "16000", "php": "58", "zar": "18", "aed": "3.6",
    "ils": "3.7", "try": "35", "cny": "7.2", "kwd": "0.3", "bhd": "0.38", "omr": "0.38",
    "jod": "0.7", "tnd": "3.1",
}.items()}


@dataclass(frozen=True, slots=True)
class CurrencyLimits:
    """The limits of one currency, wire minor units; ``None`` maximum means "not payable"."""

    currency: str
    approval_threshold_minor: int
    max_minor: int | None
    derived: bool

    def describe(self) -> str:
        """One line for the payout form: what needs approval and what is the maximum."""
        threshold = format_money(Money(self.approval_threshold_minor, self.currency))
        if self.max_minor is None:
            return (f"{self.currency.upper()} has no configured maximum: payouts in it are "
                    "refused until PAYOUT_MAXIMA names it.")
        maximum = format_money(Money(self.max_minor, self.currency))
        note = " (derived from the base currency)" if self.derived else ""
        return f"Needs a second approver at or above {threshold}; at most {maximum}{note}."


def _step(currency: str) -> int:
    """The smallest wire amount a payout in ``currency`` can be a multiple of."""
    wire, shown = wire_exponent(currency), currency_exponent(currency)
    if wire == 3:
        return 10  # Stripe: the last digit of a three-decimal amount must be 0
    if currency in ("huf", "twd"):
        return 100  # paid out in whole units only
    step: int = 10 ** (wire - shown)  # a whole power: Stripe's wire never has fewer decimals
    return step


def _derive(base_minor: int, base: str, currency: str) -> int | None:
    if currency == base:
        return base_minor
    if base not in UNITS_PER_USD or currency not in UNITS_PER_USD:
        return None
    base_major = Decimal(base_minor).scaleb(-wire_exponent(base))
    # Decimal division through the context (exact to 28 digits; no float anywhere).
    major = getcontext().divide(base_major * UNITS_PER_USD[currency], UNITS_PER_USD[base])
    if major <= 0:
        return 0
    # Two significant digits, rounded down (fails safe: earlier approval, lower maximum).
    quantum = Decimal(1).scaleb(major.adjusted() - 1)
    rounded = major.quantize(quantum, rounding=ROUND_DOWN)
    minor = int(rounded.scaleb(wire_exponent(currency)).to_integral_value(rounding=ROUND_DOWN))
    step = _step(currency)
    return minor - minor % step


def limits_for(settings: Settings, currency: str) -> CurrencyLimits:
    """The approval threshold and maximum for ``currency`` under these settings."""
    code = normalise_currency(currency)
    base = settings.payout_base_currency
    threshold = settings.payout_approval_thresholds.get(code)
    maximum = settings.payout_maxima.get(code)
    derived = False
    if threshold is None:
        threshold = _derive(settings.payout_approval_threshold_minor, base, code)
        derived = derived or code != base
    if maximum is None:
        maximum = _derive(settings.payout_max_minor, base, code)
        derived = derived or code != base
    if maximum is not None:
        # Stripe's own cap on any amount (eight digits), on a payable step.
        ceiling = STRIPE_MAX_AMOUNT_MINOR - STRIPE_MAX_AMOUNT_MINOR % _step(code)
        maximum = min(maximum, ceiling)
    # Unknown currency, no configuration: approval always, payment refused (see module doc).
    return CurrencyLimits(currency=code, approval_threshold_minor=threshold or 0,
                          max_minor=maximum, derived=derived)


def maximum_or_refuse(settings: Settings, currency: str) -> int:
    """The largest payout in ``currency``; a clear refusal when none is configured or derivable."""
    limits = limits_for(settings, currency)
    if limits.max_minor is None:
        raise ValidationError(limits.describe())
    return limits.max_minor
