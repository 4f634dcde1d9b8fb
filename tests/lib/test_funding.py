"""Funding (issue 21): the balance at Stripe against what is committed, per currency.

Against the emulator: available and pending balances, payouts awaiting approval and approved
but not sent, a bulk file being previewed, the shortfall, and the date pending funds cover it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from lib.db import utcnow
from lib.errors import PermissionDeniedError
from lib.funding import (
    BULK_PREVIEW_TTL,
    Release,
    clear_bulk_preview,
    funding_position,
    funds_needed,
    note_bulk_preview,
    pending_releases,
)
from lib.models import PayoutStatus
from lib.roles import Operator
from lib.stripe_gateway import StripeGateway
from tests.factories import make_settings
from tests.factories_dashboard import add_freelancer, add_payout

ADMIN = Operator.from_role_names("alice", ["admin"])
FINANCE = Operator.from_role_names("fiona", ["finance"])
MANAGER = Operator.from_role_names("mia", ["manager"])


@pytest.fixture
def gateway(emulator) -> StripeGateway:
    emulator.set_balance(0, "usd")
    emulator.set_balance(0, "eur")
    emulator.set_balance(0, "gbp")
    emulator.set_balance(0, "jpy")
    return StripeGateway(make_settings(stripe_api_base=emulator.base_url,
                                       stripe_connect_base=emulator.base_url,
                                       stripe_max_network_retries=0, stripe_timeout_seconds=5))


def _commit(session_factory, *payouts: tuple[int, str, str]) -> None:
    with session_factory.begin() as session:
        freelancer = add_freelancer(session)
        for amount, currency, status in payouts:
            add_payout(session, freelancer=freelancer, amount_minor=amount, currency=currency,
                       status=status)


def _by_currency(position):
    return {c.currency: c for c in position.currencies}


def test_a_shortfall_covered_by_pending_funds_on_their_date(emulator, gateway,
                                                            session_factory) -> None:
    now = int(emulator.state()["now"])
    emulator.set_balance(100_000, "usd")
    in_two_days = now + 2 * 86_400
    in_five_days = now + 5 * 86_400
    emulator.set_balance(30_000, "usd", mode="add", pending=True, available_on=in_two_days)
    emulator.set_balance(90_000, "usd", mode="add", pending=True, available_on=in_five_days)
    _commit(session_factory, (150_000, "usd", PayoutStatus.PENDING_APPROVAL.value),
            (20_000, "usd", PayoutStatus.PENDING.value),
            (5_000, "usd", PayoutStatus.PAID.value),          # already taken from the balance
            (7_000, "usd", PayoutStatus.UNKNOWN.value))       # may or may not have been
    with session_factory.begin() as session:
        note_bulk_preview(session, operator=ADMIN, fingerprint="f" * 64,
                          totals=[("usd", 3, 10_000)])

    position = funding_position(session_factory, gateway=gateway, operator=FINANCE)
    usd = _by_currency(position)["usd"]
    assert (usd.available_minor, usd.pending_minor) == (100_000, 120_000)
    assert (usd.committed.awaiting_approval_minor, usd.committed.awaiting_approval_count) == (
        150_000, 1)
    assert (usd.committed.approved_minor, usd.committed.bulk_minor,
            usd.committed.bulk_rows) == (20_000, 10_000, 3)
    assert usd.committed_minor == 180_000 and usd.shortfall_minor == 80_000
    day = lambda unix: datetime.fromtimestamp(unix, tz=UTC).date()  # noqa: E731
    assert usd.releases == (Release(day(in_two_days), 30_000), Release(day(in_five_days), 90_000))
    # 100,000 + 30,000 is not enough; + 90,000 on the fifth day is.
    assert usd.covered_on == day(in_five_days)
    assert usd.to_add_minor == 0
    assert usd.verdict == f"Short $800.00 USD now; pending funds cover it on {day(in_five_days)} (UTC)."
    assert position.unknown_payouts == {"usd": 7_000}
    assert position.releases_complete and position.short == [usd]


def test_a_shortfall_pending_funds_cannot_cover_says_what_to_add(emulator, gateway,
                                                                 session_factory) -> None:
    emulator.set_balance(10_000, "eur")
    _commit(session_factory, (25_000, "eur", PayoutStatus.PENDING.value))
    eur = _by_currency(funding_position(session_factory, gateway=gateway,
                                        operator=ADMIN))["eur"]
    assert (eur.shortfall_minor, eur.covered_on, eur.to_add_minor) == (15_000, None, 15_000)
    assert eur.verdict == "Short €150.00 EUR: add at least €150.00 EUR beyond the pending funds."


def test_a_covered_currency_and_one_with_nothing_committed(emulator, gateway,
                                                           session_factory) -> None:
    emulator.set_balance(500_000, "gbp")
    _commit(session_factory, (1_000, "gbp", PayoutStatus.PENDING.value))
    found = _by_currency(funding_position(session_factory, gateway=gateway, operator=ADMIN))
    assert found["gbp"].verdict == "Covered by the available balance."
    assert found["gbp"].shortfall_minor == 0 and found["usd"].committed_minor == 0


def test_bulk_previews_count_until_confirmed_cleared_or_stale(emulator, gateway,
                                                             session_factory) -> None:
    other = Operator.from_role_names("arthur", ["admin"])
    with session_factory.begin() as session:
        note_bulk_preview(session, operator=ADMIN, fingerprint="a" * 64,
                          totals=[("usd", 2, 4_000), ("eur", 1, 900)])
        # A later preview by the same operator replaces the first.
        note_bulk_preview(session, operator=ADMIN, fingerprint="b" * 64,
                          totals=[("usd", 1, 1_000)])
        note_bulk_preview(session, operator=other, fingerprint="c" * 64,
                          totals=[("usd", 5, 50_000)],
                          now=utcnow() - BULK_PREVIEW_TTL - timedelta(minutes=1))
    usd = _by_currency(funding_position(session_factory, gateway=gateway, operator=ADMIN))["usd"]
    assert (usd.committed.bulk_minor, usd.committed.bulk_files) == (1_000, 1)
    with session_factory.begin() as session:
        freelancer = add_freelancer(session)
        payout = add_payout(session, freelancer=freelancer, amount_minor=1_000,
                            status=PayoutStatus.PENDING.value)
        payout.bulk_fingerprint, payout.bulk_row = "b" * 64, 2  # the file was confirmed
    usd = _by_currency(funding_position(session_factory, gateway=gateway, operator=ADMIN))["usd"]
    assert (usd.committed.bulk_minor, usd.committed.approved_minor) == (0, 1_000)
    with session_factory.begin() as session:
        note_bulk_preview(session, operator=ADMIN, fingerprint="d" * 64,
                          totals=[("usd", 1, 3_000)])
        clear_bulk_preview(session, operator=ADMIN)
    usd = _by_currency(funding_position(session_factory, gateway=gateway, operator=ADMIN))["usd"]
    assert usd.committed.bulk_minor == 0


def test_funds_needed_for_the_overview(emulator, gateway, session_factory) -> None:
    emulator.set_balance(1_000, "usd")
    assert funds_needed(session_factory, gateway=gateway, operator=MANAGER) == []
    _commit(session_factory, (3_500, "usd", PayoutStatus.PENDING_APPROVAL.value))
    shortfalls = funds_needed(session_factory, gateway=gateway, operator=MANAGER)
    assert shortfalls is not None  # None: the balance could not be read
    [short] = shortfalls
    assert (short.currency, short.shortfall_minor, short.display) == ("usd", 2_500,
                                                                      "$25.00 USD")


def test_stripe_unreachable_is_said_not_guessed(session_factory) -> None:
    gateway = StripeGateway(make_settings(stripe_api_base="http://127.0.0.1:9",
                                          stripe_connect_base="http://127.0.0.1:9"))
    _commit(session_factory, (3_500, "usd", PayoutStatus.PENDING.value))
    position = funding_position(session_factory, gateway=gateway, operator=FINANCE)
    [usd] = position.currencies
    assert position.balance_error and usd.available_minor is None
    assert (usd.shortfall_minor, usd.verdict) == (None, "Stripe's balance could not be read.")
    assert funds_needed(session_factory, gateway=gateway, operator=ADMIN) is None


def test_roles(session_factory, gateway) -> None:
    with pytest.raises(PermissionDeniedError):
        funding_position(session_factory, gateway=gateway, operator=MANAGER)
    with pytest.raises(PermissionDeniedError):
        funds_needed(session_factory, gateway=gateway, operator=FINANCE)
    with session_factory.begin() as session, pytest.raises(PermissionDeniedError):
        note_bulk_preview(session, operator=FINANCE, fingerprint="e" * 64,
                          totals=[("usd", 1, 1)])


def _txn(currency: str, amount: int, on: date, status: str = "pending") -> dict:
    moment = datetime(on.year, on.month, on.day, 12, tzinfo=UTC)
    return {"currency": currency, "amount": amount, "net": amount, "status": status,
            "available_on": int(moment.timestamp())}


def test_release_dates_stop_once_every_pending_amount_is_found() -> None:
    d1, d2 = date(2026, 12, 5), date(2026, 12, 9)
    read: list[int] = []

    def transactions():
        for n, txn in enumerate([_txn("usd", 700, d2), _txn("usd", 100, d1, "available"),
                                 _txn("usd", 300, d1), _txn("eur", 50, d1),
                                 _txn("usd", 999, d1)]):
            read.append(n)
            yield txn

    releases, complete = pending_releases(transactions(), {"usd": 1_000, "eur": 50})
    assert complete
    assert releases == {"usd": (Release(d1, 300), Release(d2, 700)), "eur": (Release(d1, 50),)}
    assert read == [0, 1, 2, 3, 4]  # the fifth is read, seen to be unneeded, and not counted
    releases, complete = pending_releases(iter([_txn("usd", 10, d1)] * 5), {"usd": 1_000},
                                          limit=3)
    assert not complete and releases == {"usd": (Release(d1, 30),)}
