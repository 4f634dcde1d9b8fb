"""lib.money: parsing, wire/display exponents, formatting, and the no-float rule."""

from __future__ import annotations

import ast
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lib.errors import ValidationError
from lib.money import (
    STRIPE_MAX_AMOUNT_MINOR,
    SUPPORTED_CURRENCIES,
    Money,
    MoneyError,
    currency_exponent,
    format_money,
    minor_to_display,
    normalise_currency,
    parse_amount,
    to_decimal,
    wire_exponent,
)

MONEY_SOURCE = Path(__file__).resolve().parents[2] / "lib" / "money.py"

# The expectations below are written out independently of the module's own tables.
ZERO = sorted("bif clp djf gnf jpy kmf krw mga pyg rwf vnd vuv xaf xof xpf".split())
THREE = sorted("bhd jod kwd omr tnd".split())
ISK_UGX = ["isk", "ugx"]
HUF_TWD = ["huf", "twd"]
TWO = sorted(SUPPORTED_CURRENCIES - set(ZERO) - set(THREE) - set(ISK_UGX) - set(HUF_TWD))
CLASSES = {"zero": ZERO, "two": TWO, "three": THREE, "isk_ugx": ISK_UGX, "huf_twd": HUF_TWD}
EXPONENTS = {  # class: (display, wire, smallest payable step in wire minor units)
    "zero": (0, 0, 1),
    "two": (2, 2, 1),
    "three": (3, 3, 10),
    "isk_ugx": (0, 2, 100),
    "huf_twd": (2, 2, 100),
}
CLASS_OF = {code: name for name, codes in CLASSES.items() for code in codes}
ALL_CODES = sorted(SUPPORTED_CURRENCIES)
ERROR_CODES = {
    "amount_invalid",
    "amount_float",
    "amount_too_many_decimals",
    "amount_not_positive",
    "amount_over_maximum",
    "currency_unsupported",
    "amount_not_divisible",
}


def display_exp(code: str) -> int:
    return EXPONENTS[CLASS_OF[code]][0]


def step(code: str) -> int:
    return EXPONENTS[CLASS_OF[code]][2]


def refused(text: object, code: str, **kwargs: object) -> MoneyError:
    with pytest.raises(MoneyError) as info:
        parse_amount(text, code, **kwargs)  # type: ignore[arg-type]  # the wrong type on purpose
    error = info.value
    assert isinstance(error, ValidationError)
    assert error.code in ERROR_CODES
    assert code.upper() in error.message, error.message
    return error


currencies = st.sampled_from(ALL_CODES)


@st.composite
def valid_money(draw: st.DrawFn, codes: list[str] | None = None) -> Money:
    code = draw(st.sampled_from(codes or ALL_CODES))
    multiple = draw(st.integers(1, STRIPE_MAX_AMOUNT_MINOR // step(code)))
    return Money(multiple * step(code), code)


# --- currencies and exponents ----------------------------------------------------------------


def test_currency_tables_are_consistent() -> None:
    assert all(len(c) == 3 and c.isascii() and c.islower() for c in SUPPORTED_CURRENCIES)
    for codes in CLASSES.values():
        assert set(codes) <= SUPPORTED_CURRENCIES
    assert "usd" in TWO and "eur" in TWO and "gbp" in TWO


@pytest.mark.parametrize(
    ("code", "display", "wire"),
    [
        ("jpy", 0, 0),
        ("usd", 2, 2),
        ("kwd", 3, 3),
        ("isk", 0, 2),
        ("ugx", 0, 2),
        ("huf", 2, 2),
        ("twd", 2, 2),
        ("clp", 0, 0),
        ("eur", 2, 2),
        ("USD", 2, 2),
    ],
)
def test_exponent_examples(code: str, display: int, wire: int) -> None:
    assert currency_exponent(code) == display
    assert wire_exponent(code) == wire


@pytest.mark.parametrize("code", ALL_CODES)
def test_every_currency_has_its_class_exponents(code: str) -> None:
    display, wire, _ = EXPONENTS[CLASS_OF[code]]
    assert (currency_exponent(code), wire_exponent(code)) == (display, wire)


def test_normalise_currency() -> None:
    assert normalise_currency(" USD ") == "usd"
    assert normalise_currency("jpy") == "jpy"
    for bad in ("xyz", "", "   ", "usdd", "us"):
        with pytest.raises(MoneyError) as info:
            normalise_currency(bad)
        assert info.value.code == "currency_unsupported"
    with pytest.raises(MoneyError, match="'XYZ'"):
        normalise_currency(" xyz ")
    with pytest.raises(MoneyError):
        normalise_currency(840)  # type: ignore[arg-type]  # the wrong type on purpose


# --- Money -----------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [True, False, 1.0, Decimal("1"), "100", None])
def test_money_refuses_non_int_amounts(amount: object) -> None:
    with pytest.raises(MoneyError) as info:
        Money(amount, "usd")  # type: ignore[arg-type]  # the wrong type on purpose
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize("currency", ["USD", "xyz", " usd", "", None])
def test_money_refuses_unknown_or_unnormalised_currency(currency: object) -> None:
    with pytest.raises(MoneyError) as info:
        Money(100, currency)  # type: ignore[arg-type]  # the wrong type on purpose
    assert info.value.code == "currency_unsupported"


def test_money_is_a_frozen_value() -> None:
    money = Money(100, "usd")
    assert money == Money(100, "usd") and hash(money) == hash(Money(100, "usd"))
    assert money != Money(100, "eur")
    with pytest.raises(AttributeError):
        money.amount_minor = 5  # type: ignore[misc]  # assigning on purpose: Money is frozen
    assert Money(-5, "usd").amount_minor == -5  # balances/reversals may be negative
    assert str(money) == "$1.00 USD"


# --- table tests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code", "minor"),
    [
        ("100.50", "usd", 10050),
        ("1,234.5", "usd", 123450),
        (" 7 ", "usd", 700),
        ("1500", "jpy", 1500),
        ("1,500", "jpy", 1500),
        ("12.34", "kwd", 12340),
        ("12.340", "kwd", 12340),
        ("1500", "isk", 150000),
        ("1500", "ugx", 150000),
        ("100", "huf", 10000),
        ("100.00", "huf", 10000),
        ("100", "twd", 10000),
        ("0.01", "usd", 1),
        ("12,345.67", "usd", 1234567),
        ("1,234,567", "jpy", 1234567),
        ("999,999.99", "usd", STRIPE_MAX_AMOUNT_MINOR),
        ("1.500", "bhd", 1500),
        (" 12.5\n", "EUR", 1250),
        (Decimal("100.50"), "usd", 10050),
        (Decimal("1E+3"), "jpy", 1000),
        (7, "usd", 700),
        (1500, "isk", 150000),
    ],
)
def test_parse_examples(text: str | int | Decimal, code: str, minor: int) -> None:
    assert parse_amount(text, code) == Money(minor, normalise_currency(code))


@pytest.mark.parametrize(
    ("text", "code", "error_code"),
    [
        ("1500.5", "jpy", "amount_too_many_decimals"),
        ("12.345", "kwd", "amount_not_divisible"),
        ("15.5", "isk", "amount_too_many_decimals"),
        ("15.00", "isk", "amount_too_many_decimals"),
        ("100.50", "huf", "amount_not_divisible"),
        ("0.01", "twd", "amount_not_divisible"),
        ("1.500", "usd", "amount_too_many_decimals"),
        ("1.001", "usd", "amount_too_many_decimals"),
        ("1,23", "usd", "amount_invalid"),
        ("1 234,50", "usd", "amount_invalid"),
        ("1,234,5", "usd", "amount_invalid"),
        ("0,123", "usd", "amount_invalid"),
        ("1e3", "usd", "amount_invalid"),
        ("1E-2", "usd", "amount_invalid"),
        ("NaN", "usd", "amount_invalid"),
        ("-Infinity", "usd", "amount_invalid"),
        ("", "usd", "amount_invalid"),
        ("   ", "usd", "amount_invalid"),
        ("1.2.3", "usd", "amount_invalid"),
        ("12abc", "usd", "amount_invalid"),
        ("$100", "usd", "amount_invalid"),
        ("+5", "usd", "amount_invalid"),
        (".5", "usd", "amount_invalid"),
        ("5.", "usd", "amount_invalid"),
        ("١٢", "usd", "amount_invalid"),  # non-ASCII digits
        ("1" * 40, "usd", "amount_invalid"),
        ("-5", "usd", "amount_not_positive"),
        ("0", "usd", "amount_not_positive"),
        ("0.00", "usd", "amount_not_positive"),
        ("-0", "jpy", "amount_not_positive"),
        ("1,000,000", "usd", "amount_over_maximum"),
        ("100,000,000", "jpy", "amount_over_maximum"),
        ("1,000,000", "isk", "amount_over_maximum"),
        (Decimal("NaN"), "usd", "amount_invalid"),
        (Decimal("-Infinity"), "usd", "amount_invalid"),
        (Decimal("1E+999999"), "usd", "amount_over_maximum"),
        (Decimal("-1"), "usd", "amount_not_positive"),
        (Decimal("1.005"), "usd", "amount_too_many_decimals"),
        (0, "usd", "amount_not_positive"),
        (10**40, "usd", "amount_over_maximum"),
        (True, "usd", "amount_invalid"),
        (None, "usd", "amount_invalid"),
        (b"100", "usd", "amount_invalid"),
    ],
)
def test_refusal_examples(text: object, code: str, error_code: str) -> None:
    assert refused(text, code).code == error_code


def test_unsupported_currency_is_refused_and_named() -> None:
    error = refused("5", "xyz")
    assert error.code == "currency_unsupported"


def test_maximum_minor() -> None:
    assert parse_amount("50", "usd", maximum_minor=5000) == Money(5000, "usd")
    error = refused("50.01", "usd", maximum_minor=5000)
    assert error.code == "amount_over_maximum"
    assert "50.00 USD" in error.message
    for bad in (0, -1, True, "5000", Decimal(5000)):
        with pytest.raises(ValueError):
            parse_amount("1", "usd", maximum_minor=bad)  # type: ignore[arg-type]  # the wrong type on purpose


# --- no float, anywhere ----------------------------------------------------------------------


@pytest.mark.parametrize("value", [100.5, 100.0, 1e3, float("nan")])
def test_float_amounts_are_refused(value: float) -> None:
    error = refused(value, "usd")
    assert error.code == "amount_float"
    assert isinstance(error, TypeError)
    assert "must not be floats" in error.message


def test_no_float_in_money_source() -> None:
    tree = ast.parse(MONEY_SOURCE.read_text(encoding="utf-8"))
    offences = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "float"
        ):
            offences.append(f"float() call at line {node.lineno}")
        if isinstance(node, ast.Constant) and isinstance(node.value, float | complex):
            offences.append(f"float literal {node.value!r} at line {node.lineno}")
        if isinstance(node, ast.BinOp | ast.AugAssign) and isinstance(node.op, ast.Div):
            offences.append(f"true division at line {node.lineno}")
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names] + [getattr(node, "module", None)]
            if "math" in names or "fractions" in names:
                offences.append(f"float-prone import at line {node.lineno}")
    assert offences == []


# --- formatting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("money", "with_code", "expected"),
    [
        (Money(123450, "usd"), True, "$1,234.50 USD"),
        (Money(123450, "usd"), False, "$1,234.50"),
        (Money(1500, "jpy"), True, "¥1,500 JPY"),
        (Money(1500, "jpy"), False, "¥1,500"),
        (Money(12340, "kwd"), True, "KWD 12.340"),
        (Money(12340, "kwd"), False, "KWD 12.340"),
        (Money(150000, "isk"), True, "ISK 1,500"),
        (Money(150050, "isk"), True, "ISK 1,500.50"),  # legacy fractional ISK shown exactly
        (Money(10000, "huf"), True, "HUF 100.00"),
        (Money(5, "eur"), True, "€0.05 EUR"),
        (Money(-500, "usd"), True, "-$5.00 USD"),
        (Money(0, "gbp"), True, "£0.00 GBP"),
        (Money(123456789, "cad"), True, "CA$1,234,567.89 CAD"),
    ],
)
def test_format_money(money: Money, with_code: bool, expected: str) -> None:
    assert format_money(money, with_code=with_code) == expected


@pytest.mark.parametrize(
    ("minor", "code", "expected"),
    [
        (123450, "usd", "1,234.50"),
        (1500, "jpy", "1,500"),
        (12340, "kwd", "12.340"),
        (150000, "isk", "1,500"),
        (150000, "UGX", "1,500"),
        (10000, "huf", "100.00"),
        (7, "usd", "0.07"),
        (-7, "usd", "-0.07"),
        (0, "jpy", "0"),
    ],
)
def test_minor_to_display(minor: int, code: str, expected: str) -> None:
    assert minor_to_display(minor, code) == expected


def test_display_refuses_bad_input() -> None:
    with pytest.raises(MoneyError):
        minor_to_display(1.5, "usd")  # type: ignore[arg-type]  # the wrong type on purpose
    with pytest.raises(MoneyError):
        minor_to_display(100, "xyz")
    with pytest.raises(MoneyError):
        format_money("$1")  # type: ignore[arg-type]  # the wrong type on purpose


def test_to_decimal_is_exact() -> None:
    assert to_decimal(Money(123450, "usd")) == Decimal("1234.50")
    assert to_decimal(Money(150000, "isk")) == Decimal("1500")
    assert to_decimal(Money(12340, "kwd")) == Decimal("12.340")
    big = 10**40 + 1  # beyond the default 28-digit Decimal context: must not round
    assert str(to_decimal(Money(big, "usd"))) == str(big)[:-2] + "." + str(big)[-2:]
    assert to_decimal(Money(-1, "usd")) == Decimal("-0.01")


# --- properties, per currency class ----------------------------------------------------------


@pytest.mark.parametrize("klass", sorted(CLASSES))
@given(data=st.data())
def test_round_trip_through_display(klass: str, data: st.DataObject) -> None:
    money = data.draw(valid_money(CLASSES[klass]))
    shown = minor_to_display(money.amount_minor, money.currency)
    assert parse_amount(shown, money.currency) == money
    assert parse_amount(shown.replace(",", ""), money.currency.upper()) == money
    assert parse_amount(to_decimal(money), money.currency) == money
    assert format_money(money).replace(",", "").count(shown.replace(",", "")) == 1


@given(money=valid_money())
def test_whole_units_parse_from_int(money: Money) -> None:
    value = to_decimal(money)
    if value == value.to_integral_value():
        assert parse_amount(int(value), money.currency) == money


@pytest.mark.parametrize("klass", sorted(CLASSES))
@given(
    data=st.data(),
    coefficient=st.integers(1, 10**8),
    extra=st.integers(1, 6),
)
def test_too_many_decimal_places_always_refused(
    klass: str, data: st.DataObject, coefficient: int, extra: int
) -> None:
    code = data.draw(st.sampled_from(CLASSES[klass]))
    digits = tuple(int(d) for d in str(coefficient))
    value = Decimal((0, digits, -(display_exp(code) + extra)))
    assert refused(value, code).code == "amount_too_many_decimals"
    assert refused(format(value, "f"), code).code == "amount_too_many_decimals"


@given(money=valid_money())
def test_negative_refused(money: Money) -> None:
    shown = minor_to_display(money.amount_minor, money.currency)
    assert refused("-" + shown, money.currency).code == "amount_not_positive"
    assert refused(-to_decimal(money), money.currency).code == "amount_not_positive"


@given(code=currencies, zero=st.sampled_from(["0", "000", "-0", " 0 ", "0.0", "0.00", "0.000"]))
def test_zero_refused(code: str, zero: str) -> None:
    assert refused(zero, code).code in {"amount_not_positive", "amount_too_many_decimals"}


digits_text = st.integers(0, 10**9).map(str)
nonfinite = st.sampled_from(
    ["nan", "NaN", "-nan", "sNaN", "inf", "Inf", "-inf", "+inf", "Infinity", "-Infinity"]
)
exponents = st.builds(
    lambda base, marker, power: f"{base}{marker}{power}",
    st.sampled_from(["1", "2.5", "1,000", "0.1"]),
    st.sampled_from(["e", "E", "e+", "E-", "e-"]),
    st.integers(0, 30),
)
letters = st.text(min_size=1, max_size=12).filter(lambda s: any(ch.isalpha() for ch in s))
blanks = st.text(alphabet=" \t\n\r\u00a0\u2003", max_size=6)
multiple_dots = st.builds(lambda a, b, c: f"{a}.{b}.{c}", digits_text, digits_text, digits_text)
misplaced_commas = st.one_of(
    st.builds(lambda a, b: f"{a},{b}", st.integers(1, 999), st.sampled_from(["1", "12", "1234"])),
    st.builds(lambda a: f",{a}", digits_text),
    st.builds(lambda a: f"{a},", digits_text),
    st.builds(lambda a: f"1,,{a:03d}", st.integers(0, 999)),
    st.builds(lambda a: f"1234,{a:03d}", st.integers(0, 999)),
    st.builds(lambda a: f"1.2,{a:03d}", st.integers(0, 999)),
)


@given(
    code=currencies,
    text=st.one_of(nonfinite, exponents, letters, blanks, multiple_dots, misplaced_commas),
)
def test_bad_forms_refused(code: str, text: str) -> None:
    assert refused(text, code).code == "amount_invalid"


@given(code=currencies, extra=st.integers(1, 10**12))
def test_over_stripe_maximum_refused(code: str, extra: int) -> None:
    minor = (STRIPE_MAX_AMOUNT_MINOR // step(code) + extra) * step(code)
    assert minor > STRIPE_MAX_AMOUNT_MINOR
    error = refused(minor_to_display(minor, code), code)
    assert error.code == "amount_over_maximum"


@given(money=valid_money(), below=st.integers(1, 10**6))
def test_over_caller_maximum_refused(money: Money, below: int) -> None:
    shown = minor_to_display(money.amount_minor, money.currency)
    assert parse_amount(shown, money.currency, maximum_minor=money.amount_minor) == money
    cap = money.amount_minor - below
    if cap >= 1:
        error = refused(shown, money.currency, maximum_minor=cap)
        assert error.code == "amount_over_maximum"


@given(money=valid_money(THREE + HUF_TWD), offset=st.integers(1, 9))
def test_off_step_amounts_refused(money: Money, offset: int) -> None:
    off = money.amount_minor + offset  # not a multiple of the step (10 or 100)
    shown = minor_to_display(off, money.currency)
    assert refused(shown, money.currency).code == "amount_not_divisible"
