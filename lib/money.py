"""Money: integer minor units plus a currency code, parsed and displayed in one place.

A :class:`Money` holds ``amount_minor``, the exact integer Stripe sends or receives (its *wire*
representation), and ``currency``, the lower-case ISO code Stripe uses (``'usd'``).

Why no float, ever
    A binary float cannot hold 0.10 exactly, so ``float("19.99") * 100`` is ``1998.9999999999998``
    and truncating it loses a cent. User text is therefore parsed with :class:`decimal.Decimal`
    (exact decimal digits) against the currency's exponent and turned into an ``int`` with integer
    arithmetic only; display goes back from the ``int`` with ``divmod``. A ``float`` given as an
    amount is refused outright (``MoneyTypeError``, code ``amount_float``): by the time it reaches
    us it may already be wrong. ``tests/lib/test_money.py`` scans this file's syntax tree for
    ``float(`` calls, float literals and true division.

Wire exponent versus display exponent
    Most currencies use the same exponent on the wire and on screen (USD 2, JPY 0, KWD 3). Two do
    not: Stripe lists UGX as zero-decimal and ISK became effectively zero-decimal in April 2023,
    but for backwards compatibility Stripe still expects both as *two-decimal* integers ending in
    ``00`` ("1500" ISK is ``150000`` on the wire; fractional amounts are refused with
    ``invalid_charge_amount_no_decimal_compatible``). So :func:`wire_exponent` is 2 for them and
    :func:`currency_exponent` (display) is 0: users type and read whole krónur and shillings,
    ``amount_minor`` stays exactly Stripe's number. HUF and TWD are two-decimal in the API (and
    on screen), but Stripe pays them out as whole units only, so :func:`parse_amount` refuses
    fractional forints/dollars. Three-decimal currencies (BHD JOD KWD OMR TND) keep 3 decimals but
    Stripe requires the last digit of the integer to be 0.

Parsing policy (:func:`parse_amount`)
    * Text: optional surrounding whitespace, ASCII digits, ``.`` as the only decimal separator,
      ``,`` only as a thousands separator in groups of three (``"1,234.5"`` yes, ``"1,23"`` and
      ``"1 234,50"`` no). No sign other than a leading ``-`` (refused as not positive), no
      exponent notation, no NaN/Infinity, at most 32 characters.
    * The number of decimals *written* may not exceed the display exponent, even when they are
      zeros: ``"1.500"`` in USD is refused, because it is how much of Europe writes 1500.
    * ``int`` is whole major units; ``Decimal`` (e.g. from ``json.loads(parse_float=Decimal)``)
      follows the same decimal-places rule using its exponent.
    * The result must be positive, a multiple of the currency's smallest payable step, at most
      :data:`STRIPE_MAX_AMOUNT_MINOR` and at most ``maximum_minor`` when given (both compared with
      the wire integer).

:class:`Money` itself accepts any ``int`` (balances and reversals can be zero or negative) but
only a supported, already normalised currency code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from lib.errors import ValidationError

__all__ = [
    "STRIPE_MAX_AMOUNT_MINOR",
    "SUPPORTED_CURRENCIES",
    "Money",
    "MoneyError",
    "MoneyTypeError",
    "currency_exponent",
    "format_money",
    "minor_to_display",
    "normalise_currency",
    "parse_amount",
    "to_decimal",
    "wire_exponent",
]

#: Absolute cap on the wire integer. Stripe documents that an ``amount`` "supports up to eight
#: digits (e.g. a value of 99999999 for a USD charge of $999,999.99)". Applied to every currency
#: and every flow (transfers included) as the conservative reading; callers add their own,
#: lower policy cap through ``parse_amount(..., maximum_minor=...)``.
STRIPE_MAX_AMOUNT_MINOR = 99_999_999

#: Stripe's zero-decimal list (docs.stripe.com/currencies#zero-decimal). UGX is on it but is
#: sent as two-decimal: see ``_SENT_AS_TWO_DECIMAL``.
_ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
#: Three-decimal currencies; Stripe requires the integer's last digit to be 0.
_THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())
#: Whole units only, but sent as two-decimal integers ending in 00 (Stripe "special cases").
_SENT_AS_TWO_DECIMAL = frozenset({"isk", "ugx"})
#: Two-decimal in the API, but Stripe pays out whole units only (divisible by 100).
_WHOLE_UNIT_PAYOUTS = frozenset({"huf", "twd"})

#: Stripe's presentment currencies (docs.stripe.com/currencies), lower-case. Whether a given
#: transfer or payout is possible also depends on the platform's balances and the connected
#: account's country; Stripe refuses those at request time. Left out on purpose: currencies
#: Stripe has withdrawn or renamed (RUB, STD, SLL). Every code not in the zero-decimal or
#: three-decimal sets above is two-decimal for Stripe.
SUPPORTED_CURRENCIES: frozenset[str] = frozenset(
    """
    aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd bwp byn
    bzd cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp gel gip gmd
    gnf gtq gyd hkd hnl htg huf idr ils inr isk jmd jod jpy kes kgs khr kmf krw kwd kyd kzt lak
    lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mur mvr mwk mxn myr mzn nad ngn nio nok npr nzd
    omr pab pen pgk php pkr pln pyg qar ron rsd rwf sar sbd scr sek sgd shp sle sos srd szl thb
    tjs tnd top try ttd twd tzs uah ugx usd uyu uzs vnd vuv wst xaf xcd xof xpf yer zar zmw
    """.split()
)

#: Prefix symbols used by :func:`format_money`; ambiguous dollars/yen are qualified. A currency
#: without one is shown with its code in front ("KWD 12.340").
_SYMBOLS: dict[str, str] = {
    "usd": "$",
    "eur": "€",
    "gbp": "£",
    "jpy": "¥",
    "cny": "CN¥",
    "inr": "₹",
    "krw": "₩",
    "ils": "₪",
    "php": "₱",
    "ngn": "₦",
    "vnd": "₫",
    "cad": "CA$",
    "aud": "A$",
    "nzd": "NZ$",
    "hkd": "HK$",
    "sgd": "S$",
    "mxn": "MX$",
    "brl": "R$",
    "twd": "NT$",
}

_MAX_TEXT_LENGTH = 32
_AMOUNT_RE = re.compile(
    r"(?P<sign>-)?(?P<int>[0-9]+|[1-9][0-9]{0,2}(?:,[0-9]{3})+)(?:\.(?P<frac>[0-9]+))?",
    re.ASCII,
)
_EXPONENT_RE = re.compile(r"[+-]?[0-9.,]*[0-9][0-9.,]*e[+-]?[0-9]+", re.ASCII)
_NON_FINITE = frozenset({"nan", "snan", "inf", "infinity"})


class MoneyError(ValidationError):
    """An amount or currency a user gave cannot become :class:`Money`."""

    code = "amount_invalid"


class MoneyTypeError(MoneyError, TypeError):
    """An amount of the wrong Python type (a float, a bool, None...): a caller's bug."""

    code = "amount_invalid"


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount: Stripe's wire integer and its lower-case currency code."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.amount_minor) is not int:  # refuses bool, float, Decimal, str
            kind = type(self.amount_minor).__name__
            raise MoneyTypeError(
                f"Money.amount_minor must be an int of {_label(self.currency)} minor units, "
                f"got {kind} {self.amount_minor!r}.",
                code="amount_float" if isinstance(self.amount_minor, float) else "amount_invalid",
            )
        if type(self.currency) is not str or self.currency not in SUPPORTED_CURRENCIES:
            raise MoneyError(
                f"Currency {self.currency!r} is not a supported lower-case currency code "
                "(use normalise_currency).",
                code="currency_unsupported",
            )

    def __str__(self) -> str:
        return format_money(self)


def normalise_currency(text: str) -> str:
    """``' USD '`` -> ``'usd'``; anything not in :data:`SUPPORTED_CURRENCIES` is refused."""
    if not isinstance(text, str):
        raise MoneyError(
            f"Currency must be a three-letter code, got {type(text).__name__} {text!r}.",
            code="currency_unsupported",
        )
    code = text.strip().lower()
    if code not in SUPPORTED_CURRENCIES:
        raise MoneyError(
            f"Currency {_show(text.strip().upper())} is not supported.",
            code="currency_unsupported",
        )
    return code


def currency_exponent(currency: str) -> int:
    """Decimals shown to and typed by people: JPY 0, USD 2, KWD 3, ISK and UGX 0."""
    code = normalise_currency(currency)
    if code in _ZERO_DECIMAL or code in _SENT_AS_TWO_DECIMAL:
        return 0
    return 3 if code in _THREE_DECIMAL else 2


def wire_exponent(currency: str) -> int:
    """Decimals in Stripe's integer: JPY 0, USD 2, KWD 3, ISK and UGX 2."""
    code = normalise_currency(currency)
    if code in _SENT_AS_TWO_DECIMAL:
        return 2
    if code in _ZERO_DECIMAL:
        return 0
    return 3 if code in _THREE_DECIMAL else 2


def parse_amount(
    text: str | int | Decimal, currency: str, *, maximum_minor: int | None = None
) -> Money:
    """Turn what a person typed (or a JSON ``Decimal``/``int``) into :class:`Money`.

    See the module docstring for the accepted forms. Every refusal is a :class:`MoneyError`
    whose message names the problem and the currency. ``maximum_minor`` is in wire minor units,
    like ``Money.amount_minor``; a bad ``maximum_minor`` is a programming error (``ValueError``).
    """
    code = normalise_currency(currency)
    if maximum_minor is not None and (type(maximum_minor) is not int or maximum_minor < 1):
        raise ValueError(f"maximum_minor must be a positive int, got {maximum_minor!r}")
    label = code.upper()
    value = _input_to_decimal(text, label)
    shown = _show(text)

    if value <= 0:
        raise MoneyError(
            f"{label} amount must be positive, got {shown}.", code="amount_not_positive"
        )
    display = currency_exponent(code)
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite: checked by _input_to_decimal
    places = max(0, -exponent)
    if places > display:
        allowed = "no decimals" if display == 0 else f"at most {display} decimal places"
        raise MoneyError(
            f"{label} amounts have {allowed}; {shown} has {places}.",
            code="amount_too_many_decimals",
        )
    if value.adjusted() > 30:  # far over any cap; avoid building an enormous int
        raise _over_stripe_maximum(shown, code)

    minor = _decimal_to_minor(value, wire_exponent(code))
    if code in _THREE_DECIMAL and minor % 10:
        raise MoneyError(
            f"{label} amounts may use only two significant decimals (Stripe requires the third "
            f"to be 0, e.g. 12.340); got {shown}.",
            code="amount_not_divisible",
        )
    if code in _WHOLE_UNIT_PAYOUTS and minor % 100:
        raise MoneyError(
            f"{label} payouts must be whole units (Stripe pays {label} out in amounts divisible "
            f"by 100 minor units); got {shown}.",
            code="amount_not_divisible",
        )
    if minor > STRIPE_MAX_AMOUNT_MINOR:
        raise _over_stripe_maximum(shown, code)
    if maximum_minor is not None and minor > maximum_minor:
        raise MoneyError(
            f"{label} amount {shown} is over the maximum of "
            f"{_digits(maximum_minor, code)} {label}.",
            code="amount_over_maximum",
        )
    return Money(minor, code)


def to_decimal(money: Money) -> Decimal:
    """The exact amount in major units (``Money(123450, 'usd')`` -> ``Decimal('1234.50')``)."""
    _require_money(money)
    return Decimal(_digits(money.amount_minor, money.currency).replace(",", ""))


def minor_to_display(amount_minor: int, currency: str) -> str:
    """``'1,234.50'``: grouped digits at the display exponent, no symbol (for tables).

    An amount that is not a whole number of display units (a legacy fractional ISK charge) is
    shown with all its wire decimals rather than rounded.
    """
    code = normalise_currency(currency)
    return _digits(Money(amount_minor, code).amount_minor, code)


def format_money(money: Money, *, with_code: bool = True) -> str:
    """``'$1,234.50 USD'``, ``'¥1,500 JPY'``, ``'KWD 12.340'``: the one way money is shown.

    Currencies without a symbol always lead with their code, so ``with_code=False`` only drops
    the trailing code where a symbol already identifies the currency.
    """
    _require_money(money)
    label = money.currency.upper()
    sign = "-" if money.amount_minor < 0 else ""
    number = _digits(abs(money.amount_minor), money.currency)
    symbol = _SYMBOLS.get(money.currency)
    if symbol is None:
        return f"{sign}{label} {number}"
    return f"{sign}{symbol}{number}" + (f" {label}" if with_code else "")


# --- internals -------------------------------------------------------------------------------


def _input_to_decimal(raw: object, label: str) -> Decimal:
    if isinstance(raw, bool):
        raise MoneyTypeError(f"{label} amount must be a number, got a boolean ({raw}).")
    if isinstance(raw, float):
        raise MoneyTypeError(
            f"{label} amounts must not be floats (got {raw!r}); pass a string or a Decimal.",
            code="amount_float",
        )
    if isinstance(raw, int):
        return Decimal(raw)
    if isinstance(raw, Decimal):
        if not raw.is_finite():
            raise MoneyError(f"{label} amount {_show(raw)} is not a finite number.")
        return raw
    if isinstance(raw, str):
        return _parse_text(raw, label)
    raise MoneyTypeError(
        f"{label} amount must be text, an int or a Decimal, got {type(raw).__name__}."
    )


def _parse_text(raw: str, label: str) -> Decimal:
    text = raw.strip()
    if not text:
        raise MoneyError(f"{label} amount is empty.")
    if len(text) > _MAX_TEXT_LENGTH:
        raise MoneyError(f"{label} amount {_show(raw)} is too long to be an amount.")
    match = _AMOUNT_RE.fullmatch(text)
    if match is None:
        lowered = text.lower()
        if lowered.lstrip("+-") in _NON_FINITE:
            problem = "is not a finite number"
        elif _EXPONENT_RE.fullmatch(lowered):
            problem = "uses exponent notation, which is not accepted; write the digits out"
        elif text.count(".") > 1:
            problem = "has more than one decimal point"
        elif "," in text:
            problem = (
                "has a misplaced ','; ',' is only accepted as a thousands separator in groups "
                "of three (1,234.50) and '.' is the decimal point"
            )
        else:
            problem = "is not a number (digits, an optional '.' and ',' thousands separators)"
        raise MoneyError(f"{label} amount {_show(raw)} {problem}.")
    digits = match["int"].replace(",", "")
    frac = match["frac"]
    return Decimal(f"{match['sign'] or ''}{digits}" + (f".{frac}" if frac is not None else ""))


def _decimal_to_minor(value: Decimal, wire: int) -> int:
    """Exact integer scaling (no Decimal context, so no rounding at any size)."""
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int) and exponent + wire >= 0
    coefficient = int("".join(map(str, digits)))
    scale: int = 10 ** (exponent + wire)  # a whole power: exponent + wire >= 0, asserted above
    return (-1 if sign else 1) * coefficient * scale


def _digits(amount_minor: int, currency: str) -> str:
    wire = wire_exponent(currency)
    display = currency_exponent(currency)
    whole, frac = divmod(abs(amount_minor), 10**wire)
    surplus = 10 ** (wire - display)
    places = wire
    if frac % surplus == 0:
        frac, places = frac // surplus, display
    text = f"{whole:,}" + (f".{frac:0{places}d}" if places else "")
    return ("-" if amount_minor < 0 else "") + text


def _over_stripe_maximum(shown: str, code: str) -> MoneyError:
    label = code.upper()
    return MoneyError(
        f"{label} amount {shown} is over Stripe's maximum of "
        f"{_digits(STRIPE_MAX_AMOUNT_MINOR, code)} {label}.",
        code="amount_over_maximum",
    )


def _require_money(money: object) -> None:
    if not isinstance(money, Money):
        raise MoneyTypeError(f"Expected Money, got {type(money).__name__}.")


def _label(currency: object) -> str:
    return currency.upper() if isinstance(currency, str) else repr(currency)


def _show(raw: object) -> str:
    text = str(raw)
    return repr(text if len(text) <= 40 else text[:37] + "...")
