"""The finance notebook's reports (issue 21): exact figures on small, known data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lib.accounts import upsert_account
from lib.bank_payouts import record_payout
from lib.connection_metrics import DateRange
from lib.errors import PermissionDeniedError
from lib.finance_reports import (
    bank_failure_rates,
    connect_durations,
    payouts_by_month,
    requirement_ageing,
)
from lib.freelancers import create_freelancer
from lib.models import ConnectionAttempt, PayoutReversal
from lib.roles import Operator
from tests.factories_dashboard import add_freelancer, add_payout
from tests.lib.test_account_status import account

FINANCE = Operator.from_role_names("fiona", ["finance"])
MANAGER = Operator.from_role_names("mia", ["manager"])
T0 = datetime(2026, 9, 10, 12, tzinfo=UTC)


def test_payouts_per_month_and_currency_net_of_reversals(session_factory) -> None:
    with session_factory.begin() as session:
        freelancer = add_freelancer(session)
        sept = add_payout(session, freelancer=freelancer, amount_minor=10_000, created_at=T0)
        add_payout(session, freelancer=freelancer, amount_minor=2_500, currency="eur",
                   created_at=T0 + timedelta(days=1))
        add_payout(session, freelancer=freelancer, amount_minor=999, created_at=T0,
                   status="pending_approval")                    # not paid: not counted
        session.flush()
        session.add(PayoutReversal(payout_id=sept.id, amount_minor=1_000, reason="Overpaid",
                                   status="succeeded", idempotency_key="r1", requested_by="a",
                                   completed_at=T0 + timedelta(days=25)))
        session.add(PayoutReversal(payout_id=sept.id, amount_minor=7_000, reason="Typo",
                                   status="failed", idempotency_key="r2", requested_by="a"))
    with session_factory() as session:
        rows = [m.row() for m in payouts_by_month(session, operator=FINANCE)]
    assert rows == [
        {"month": "2026-09", "currency": "EUR", "payouts": 1, "paid_minor": 2_500,
         "reversed_minor": 0, "net_minor": 2_500, "net": "25.00"},
        {"month": "2026-09", "currency": "USD", "payouts": 1, "paid_minor": 10_000,
         "reversed_minor": 0, "net_minor": 10_000, "net": "100.00"},
        {"month": "2026-10", "currency": "USD", "payouts": 0, "paid_minor": 0,
         "reversed_minor": 1_000, "net_minor": -1_000, "net": "-10.00"},
    ]


def test_requirement_ageing_from_the_history(session_factory) -> None:
    with session_factory.begin() as session:
        upsert_account(session, account=account(id="acct_age", requirements={
            "currently_due": ["external_account"]}), fetched_at=T0)
        freelancer = create_freelancer(session, name="Old Due", email="old@example.com")
        freelancer.stripe_account_id = "acct_age"
    with session_factory.begin() as session:
        upsert_account(session, account=account(id="acct_age", requirements={
            "currently_due": ["external_account", "tos_acceptance.date"]}),
            fetched_at=T0 + timedelta(days=20))
    with session_factory() as session:
        rows = {r.code: r for r in requirement_ageing(session, operator=FINANCE,
                                                      now=T0 + timedelta(days=45))}
    assert (rows["external_account"].age_days, rows["external_account"].band) == (45,
                                                                                   "30–90 days")
    assert (rows["tos_acceptance.date"].age_days, rows["tos_acceptance.date"].band) == (
        25, "7–30 days")
    assert rows["external_account"].requirement == "Bank account or debit card for payouts"


def test_bank_failure_rates_and_durations(session_factory) -> None:
    with session_factory.begin() as session:
        freelancer = add_freelancer(session)
        for n, (status, day) in enumerate([("paid", 1), ("failed", 2), ("failed", 40)]):
            record_payout(session, payout={"id": f"po_r{n}", "object": "payout", "amount": 100,
                                           "currency": "usd", "status": status},
                          account_id=str(freelancer.stripe_account_id),
                          event_created=T0 + timedelta(days=day))
        session.add(ConnectionAttempt(freelancer_id=freelancer.id, method="oauth",
                                      issued_by="admin", started_at=T0, outcome="succeeded",
                                      finished_at=T0 + timedelta(minutes=90)))
    with session_factory() as session:
        rates = [r.row() for r in bank_failure_rates(session, operator=FINANCE)]
        durations = connect_durations(session, operator=FINANCE,
                                      period=DateRange(T0.date(), T0.date()))
        with pytest.raises(PermissionDeniedError):
            bank_failure_rates(session, operator=MANAGER)
    assert rates == [{"month": "2026-09", "settled": 2, "failed": 1, "failure_rate": 50.0},
                     {"month": "2026-10", "settled": 1, "failed": 1, "failure_rate": 100.0}]
    assert [d["minutes"] for d in durations] == [90.0]
