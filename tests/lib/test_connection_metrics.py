"""Connection metrics on planted attempts: exact numbers, day and week buckets, both databases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, update

from lib.connection_metrics import (
    DateRange,
    Grain,
    decided_attempts,
    failure_reasons_series,
    funnel,
    success_rate_series,
    time_to_connect,
)
from lib.connection_report import ConnectionReport, connection_report
from lib.connection_timing import median_time_to_connect
from lib.errors import PermissionDeniedError, ValidationError
from lib.models import ConnectedAccount, Freelancer
from lib.roles import Operator
from tests.factories_dashboard import add_attempt, add_freelancer, add_payout

MANAGER = Operator.from_role_names("max", ["manager"])
FINANCE = Operator.from_role_names("fin", ["finance"])
# Wednesday 2026-11-04 and Thursday 2026-11-05 (ISO week of Monday 11-02), Monday 11-09.
WED = datetime(2026, 11, 4, 10, 0, tzinfo=UTC)
THU = datetime(2026, 11, 5, 23, 30, tzinfo=UTC)
MON = datetime(2026, 11, 9, 0, 15, tzinfo=UTC)
PERIOD = DateRange(date(2026, 11, 1), date(2026, 11, 30))


@pytest.fixture
def planted(session_factory) -> None:
    with session_factory.begin() as session:
        paid = add_freelancer(session, state="active", now=WED)        # connected, verified, paid
        verified = add_freelancer(session, state="active", now=WED)    # connected, verified
        due = add_freelancer(session, state="restricted", now=WED)     # connected, not verified
        denied = add_freelancer(session, state="not_connected", now=WED)
        gone = add_freelancer(session, state="not_connected", now=WED)
        outside = add_freelancer(session, state="active", now=WED)
        add_payout(session, freelancer=paid, status="paid", created_at=THU)
        add_payout(session, freelancer=verified, status="failed", created_at=THU)
        minute = timedelta(minutes=1)
        for freelancer_id, started, outcome, method, reason, took, returned in [
            (paid.id, WED, "failed", "oauth", "access_denied", minute, False),
            (paid.id, WED + timedelta(hours=1), "succeeded", "oauth", None, 3 * minute, False),
            (verified.id, THU, "succeeded", "account_link", None, 20 * minute, True),
            (due.id, MON, "succeeded", "account_link", None, timedelta(hours=30), True),
            (denied.id, THU, "failed", "oauth", "invalid_state", minute, False),
            (denied.id, MON, "failed", "oauth", "access_denied", minute, False),
            (gone.id, MON, "abandoned", "account_link", "abandoned", None, False),
            (gone.id, MON + timedelta(hours=2), "pending", "account_link", None, None, False),
            (outside.id, datetime(2026, 10, 31, 23, 59, tzinfo=UTC), "succeeded", "oauth",
             None, minute, False),
        ]:
            add_attempt(session, freelancer_id=freelancer_id, started_at=started,
                        outcome=outcome, method=method, reason=reason, took=took,
                        returned=returned)


def test_success_rate_by_day_and_method(session_factory, planted) -> None:
    with session_factory() as session:
        points = success_rate_series(session, operator=MANAGER, period=PERIOD)
    assert [(p.bucket, p.method, p.attempts, p.succeeded, p.failed, p.abandoned, p.pending)
            for p in points] == [
        (date(2026, 11, 4), "oauth", 2, 1, 1, 0, 0),
        (date(2026, 11, 5), "account_link", 1, 1, 0, 0, 0),
        (date(2026, 11, 5), "oauth", 1, 0, 1, 0, 0),
        (date(2026, 11, 9), "account_link", 3, 1, 0, 1, 1),
        (date(2026, 11, 9), "oauth", 1, 0, 1, 0, 0),
    ]
    assert [p.success_rate for p in points] == [50.0, 100.0, 0.0, 50.0, 0.0]


def test_decided_attempts_count_those_with_an_outcome_in_the_range(session_factory,
                                                                  planted) -> None:
    """What picks the page's default grain: the series' decided attempts, without the series
    (the pending one and the one started on 31 October do not count)."""
    with session_factory() as session:
        decided = decided_attempts(session, operator=MANAGER, period=PERIOD)
        ninth = decided_attempts(session, operator=MANAGER,
                                 period=DateRange(date(2026, 11, 9), date(2026, 11, 9)))
        series = success_rate_series(session, operator=MANAGER, period=PERIOD)
        with pytest.raises(PermissionDeniedError):
            decided_attempts(session, operator=FINANCE, period=PERIOD)
    assert decided == sum(p.decided for p in series) == 7
    assert ninth == 3


def test_success_rate_by_week(session_factory, planted) -> None:
    with session_factory() as session:
        points = success_rate_series(session, operator=MANAGER, period=PERIOD,
                                     grain=Grain.WEEK)
    assert [(p.bucket, p.method, p.attempts, p.succeeded) for p in points] == [
        (date(2026, 11, 2), "account_link", 1, 1),
        (date(2026, 11, 2), "oauth", 3, 1),
        (date(2026, 11, 9), "account_link", 3, 1),
        (date(2026, 11, 9), "oauth", 1, 0),
    ]


def test_funnel(session_factory, planted) -> None:
    with session_factory() as session:
        stages = funnel(session, operator=MANAGER, period=PERIOD)
    assert [(s.stage, s.freelancers) for s in stages] == [
        ("Links issued", 5), ("Returned", 4), ("Connected", 3), ("Verified", 2),
        ("First payout", 1)]
    assert [s.share_of_issued for s in stages] == [100.0, 80.0, 60.0, 40.0, 20.0]


def test_funnel_of_a_range_ending_before_the_newest_attempt(session_factory, planted) -> None:
    """A past range is not read from the summaries (which count each freelancer's *newest*
    attempt): Monday's attempts must not move the freelancers out of, or into, Nov 1–5."""
    with session_factory() as session:
        stages = funnel(session, operator=MANAGER,
                        period=DateRange(date(2026, 11, 1), date(2026, 11, 5)))
    assert [(s.stage, s.freelancers) for s in stages] == [
        ("Links issued", 3), ("Returned", 3), ("Connected", 2), ("Verified", 2),
        ("First payout", 1)]


def test_funnel_summaries_follow_later_writes(session_factory, planted) -> None:
    """The per-freelancer rows move with the writes: a new attempt moves its freelancer to its
    day, a payout paid later and an account no longer payable move the flags."""
    with session_factory.begin() as session:
        restricted = session.scalars(
            select(Freelancer).join(ConnectedAccount,
                                    ConnectedAccount.stripe_id == Freelancer.stripe_account_id)
            .where(ConnectedAccount.currently_due_count > 0)).one()
        add_payout(session, freelancer=restricted, status="paid", created_at=MON)
        session.execute(update(ConnectedAccount)
                        .where(ConnectedAccount.stripe_id == restricted.stripe_account_id)
                        .values(currently_due_count=0, past_due_count=0,
                                transfers_capability="active", payouts_enabled=True,
                                details_submitted=True))
    with session_factory() as session:
        stages = funnel(session, operator=MANAGER, period=PERIOD)
    assert [(s.stage, s.freelancers) for s in stages] == [
        ("Links issued", 5), ("Returned", 4), ("Connected", 3), ("Verified", 3),
        ("First payout", 2)]


def test_funnel_verified_means_payable_not_charges_enabled(session_factory) -> None:
    """Issue 16, finding 2: the funnel's "Verified" is the transfers capability active, payouts
    enabled, details submitted and nothing currently or past due; never charges_enabled.

    Failed on 99ac47c (the recipient account was not counted, the charges-only one was).
    """
    with session_factory.begin() as session:
        recipient = add_freelancer(session, state="active", country="FR", now=WED)
        charges_only = add_freelancer(session, state="active", now=WED)
        unsubmitted = add_freelancer(session, state="active", now=WED)
        edits: list[tuple[Freelancer, dict[str, object]]] = [
            (recipient, {"charges_enabled": False}),
            (charges_only, {"charges_enabled": True, "transfers_capability": "inactive"}),
            (unsubmitted, {"details_submitted": False}),
        ]
        for freelancer, changes in edits:
            session.execute(update(ConnectedAccount)
                            .where(ConnectedAccount.stripe_id == freelancer.stripe_account_id)
                            .values(**changes))
            add_attempt(session, freelancer_id=freelancer.id, started_at=THU,
                        outcome="succeeded", took=timedelta(minutes=5), returned=True)
        add_payout(session, freelancer=recipient, status="paid", created_at=THU)
    with session_factory() as session:
        stages = funnel(session, operator=MANAGER, period=PERIOD)
    assert [(s.stage, s.freelancers) for s in stages] == [
        ("Links issued", 3), ("Returned", 3), ("Connected", 3), ("Verified", 1),
        ("First payout", 1)]


@pytest.mark.parametrize("grain", [Grain.DAY, Grain.WEEK])
@pytest.mark.parametrize("last", [date(2026, 11, 30), date(2026, 11, 5)])
def test_the_page_report_is_the_series_read_one_by_one(session_factory, planted, grain,
                                                       last) -> None:
    """One statement for every series (and the funnel's summaries, or its scan for a range
    ending before the newest attempt) gives what each function gives alone."""
    period = DateRange(date(2026, 11, 1), last)
    with session_factory() as session:
        report = connection_report(session, operator=MANAGER, period=period, grain=grain)
        alone = ConnectionReport(
            rates=success_rate_series(session, operator=MANAGER, period=period, grain=grain),
            funnel=funnel(session, operator=MANAGER, period=period),
            reasons=failure_reasons_series(session, operator=MANAGER, period=period,
                                           grain=grain),
            durations=time_to_connect(session, operator=MANAGER, period=period),
            timing=median_time_to_connect(session, operator=MANAGER, period=period))
        with pytest.raises(PermissionDeniedError):
            connection_report(session, operator=FINANCE, period=period, grain=grain)
    assert report == alone
    assert report.rates and report.funnel[0].freelancers > 0


def test_failure_reasons_by_day_and_week(session_factory, planted) -> None:
    with session_factory() as session:
        daily = failure_reasons_series(session, operator=MANAGER, period=PERIOD)
        weekly = failure_reasons_series(session, operator=MANAGER, period=PERIOD,
                                        grain=Grain.WEEK)
    assert [(p.bucket, p.reason, p.attempts) for p in daily] == [
        (date(2026, 11, 4), "access_denied", 1),
        (date(2026, 11, 5), "invalid_state", 1),
        (date(2026, 11, 9), "abandoned", 1),
        (date(2026, 11, 9), "access_denied", 1),
    ]
    assert [(p.bucket, p.reason, p.attempts) for p in weekly] == [
        (date(2026, 11, 2), "access_denied", 1),
        (date(2026, 11, 2), "invalid_state", 1),
        (date(2026, 11, 9), "abandoned", 1),
        (date(2026, 11, 9), "access_denied", 1),
    ]


def test_time_to_connect(session_factory, planted) -> None:
    with session_factory() as session:
        buckets = time_to_connect(session, operator=MANAGER, period=PERIOD)
    assert [(b.bucket, b.attempts) for b in buckets] == [
        ("< 5 min", 1), ("5–15 min", 0), ("15–60 min", 1), ("1–6 h", 0), ("6–24 h", 0),
        ("1–7 days", 1), ("> 7 days", 0)]


def test_empty_database_gives_empty_series(session_factory) -> None:
    with session_factory() as session:
        assert success_rate_series(session, operator=MANAGER, period=PERIOD) == []
        assert failure_reasons_series(session, operator=MANAGER, period=PERIOD) == []
        assert [s.freelancers for s in funnel(session, operator=MANAGER, period=PERIOD)] == [
            0, 0, 0, 0, 0]
        assert sum(b.attempts for b in time_to_connect(
            session, operator=MANAGER, period=PERIOD)) == 0


def test_finance_may_not_read_metrics(session_factory) -> None:
    with session_factory() as session, pytest.raises(PermissionDeniedError):
        funnel(session, operator=FINANCE, period=PERIOD)


def test_ranges_are_checked() -> None:
    with pytest.raises(ValidationError):
        DateRange(date(2026, 11, 2), date(2026, 11, 1))
    with pytest.raises(ValidationError):
        DateRange(date(2020, 1, 1), date(2026, 1, 1))
    period = DateRange.last_days(90, today=date(2026, 11, 28))
    assert (period.first, period.last) == (date(2026, 8, 31), date(2026, 11, 28))
    assert period.end == datetime(2026, 11, 29, tzinfo=UTC)
