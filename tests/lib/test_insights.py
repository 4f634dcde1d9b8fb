"""Overview KPIs and alerts on planted data (exact numbers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lib.errors import PermissionDeniedError
from lib.insights import Alert, OverviewKpis, Rate, alerts_for, overview_kpis
from lib.models import WebhookEvent
from lib.roles import Operator
from tests.factories_dashboard import add_attempt, add_freelancer, add_payout

MANAGER = Operator.from_role_names("max", ["manager"])
FINANCE = Operator.from_role_names("fin", ["finance"])
#: Mid-month, so "this month" and "the same days of last month" are easy to plant.
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_empty_database(session_factory) -> None:
    with session_factory() as session:
        kpis = overview_kpis(session, operator=MANAGER, now=NOW)
    assert (kpis.connected, kpis.active, kpis.requirements_due, kpis.past_due) == (0, 0, 0, 0)
    assert kpis.active_share.percent is None and kpis.success_rate.percent is None
    assert kpis.payouts_this_month == [] and alerts_for(kpis) == []


def test_finance_may_not_open_the_overview(session_factory) -> None:
    with session_factory() as session, pytest.raises(PermissionDeniedError):
        overview_kpis(session, operator=FINANCE, now=NOW)


@pytest.fixture
def planted(session_factory) -> None:
    with session_factory.begin() as session:
        active = add_freelancer(session, state="active", now=NOW,
                                connected_at=NOW - timedelta(days=5))
        add_freelancer(session, state="active", now=NOW, connected_at=NOW - timedelta(days=90))
        add_freelancer(session, state="restricted", now=NOW, deadline_days=3)   # due, 7 days
        add_freelancer(session, state="restricted", now=NOW, deadline_days=20)  # due, later
        add_freelancer(session, state="disabled", now=NOW)                      # past due
        add_freelancer(session, state="not_connected", now=NOW)
        # A disconnected freelancer's old mirror must not count.
        gone = add_freelancer(session, state="active", now=NOW)
        gone.stripe_account_id = None
        # Payouts: USD 100.00 + 50.00 paid this month, 30.00 paid on Oct 10 (same days),
        # 999.00 on Oct 25 (after the same point last month), a failed one, EUR 20.00.
        for amount, currency, status, at in [
            (10_000, "usd", "paid", NOW - timedelta(days=2)),
            (5_000, "usd", "paid", datetime(2026, 11, 1, 0, 0, tzinfo=UTC)),
            (3_000, "usd", "paid", datetime(2026, 10, 10, tzinfo=UTC)),
            (99_900, "usd", "paid", datetime(2026, 10, 25, tzinfo=UTC)),
            (7_000, "usd", "failed", NOW - timedelta(days=1)),
            (2_000, "eur", "paid", NOW - timedelta(days=1)),
            (4_000, "usd", "unknown", NOW - timedelta(days=1)),
        ]:
            add_payout(session, freelancer=active, amount_minor=amount, currency=currency,
                       status=status, created_at=at)
        # Attempts: last 30 days 3 succeeded, 1 failed, 1 abandoned, 1 pending -> 3/5;
        # the 30 days before: 4 succeeded, 1 failed -> 4/5; older ones are ignored.
        for days, outcome in [(1, "succeeded"), (2, "succeeded"), (3, "succeeded"),
                              (4, "failed"), (5, "abandoned"), (6, "pending"),
                              (31, "succeeded"), (32, "succeeded"), (40, "succeeded"),
                              (50, "succeeded"), (59, "failed"), (61, "failed")]:
            add_attempt(session, freelancer_id=active.id, started_at=NOW - timedelta(days=days),
                        outcome=outcome)
        session.add(WebhookEvent(stripe_event_id="evt_1", type="account.updated",
                                 endpoint="connect", status="failed", payload={}))


def test_kpis(session_factory, planted) -> None:
    with session_factory() as session:
        kpis = overview_kpis(session, operator=MANAGER, now=NOW)
    assert kpis.connected == 5
    assert kpis.connected_last_30_days == 4  # all but the one connected 90 days ago
    assert kpis.active == 2 and kpis.active_share == Rate(2, 5)
    assert kpis.active_share.percent == 40.0
    assert (kpis.requirements_due, kpis.past_due, kpis.deadlines_next_7_days) == (3, 1, 1)
    assert [(p.currency, p.this_month_minor, p.previous_month_minor, p.count)
            for p in kpis.payouts_this_month] == [("eur", 2_000, 0, 1), ("usd", 15_000, 3_000, 2)]
    usd = kpis.payouts_this_month[1]
    assert usd.display == "$150.00 USD" and usd.delta_display == "+$120.00 USD"
    assert kpis.success_rate == Rate(3, 5) and kpis.previous_success_rate == Rate(4, 5)
    assert kpis.success_rate_delta_points == -20.0
    assert (kpis.webhook_failures, kpis.unknown_payouts) == (1, 1)


def test_alerts_on_planted_data(session_factory, planted) -> None:
    with session_factory() as session:
        alerts = alerts_for(overview_kpis(session, operator=MANAGER, now=NOW))
    # The success-rate drop is real but on too few attempts (5 < 10) to alarm anyone.
    assert [a.level for a in alerts] == ["error", "error", "warning"]
    assert "unknown outcome" in alerts[0].message
    assert alerts[1].message.startswith("1 connected account(s) have past-due")
    assert "webhook" in alerts[2].message


def _kpis(**overrides: Any) -> OverviewKpis:
    values: dict[str, Any] = dict(as_of=NOW, connected=0, connected_last_30_days=0, active=0,
                  requirements_due=0, past_due=0, deadlines_next_7_days=0)
    values.update(overrides)
    return OverviewKpis(**values)


def test_success_rate_drop_alert_needs_enough_attempts() -> None:
    dropped = _kpis(success_rate=Rate(6, 12), previous_success_rate=Rate(9, 12))
    assert alerts_for(dropped) == [Alert("warning", (
        "Connection success rate fell to 50.0% over the last 30 days, from 75.0% the 30 days "
        "before (-25.0 points). See Connection metrics."))]
    assert alerts_for(_kpis(success_rate=Rate(6, 12), previous_success_rate=Rate(7, 12))) == []
    assert alerts_for(_kpis(success_rate=Rate(1, 9), previous_success_rate=Rate(9, 9))) == []

