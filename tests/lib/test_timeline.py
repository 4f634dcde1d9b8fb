"""A freelancer's timeline (issue 21): every source in one time-ordered list, filters, export."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lib import audit
from lib.accounts import upsert_account
from lib.bank_payouts import record_payout
from lib.connect_flow import detach
from lib.errors import NotFoundError, PermissionDeniedError
from lib.exports import rows_to_csv
from lib.freelancers import create_freelancer
from lib.models import ConnectionAttempt, Freelancer, PayoutReversal
from lib.roles import Operator
from lib.timeline import EXPORT_COLUMNS, Kind, freelancer_timeline, timeline_export_rows
from tests.factories_dashboard import add_payout
from tests.lib.test_account_status import account

FINANCE = Operator.from_role_names("fiona", ["finance"])
MANAGER = Operator.from_role_names("mia", ["manager"])
T0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def story(session_factory) -> int:
    """Grace: a declined link, a connection, Stripe asking then satisfied, a payout (one
    reversal), a failed bank payout, a disconnection."""
    with session_factory.begin() as session:
        grace = create_freelancer(session, name="Grace Hopper", email="grace@example.com")
        session.flush()
        session.add_all([
            ConnectionAttempt(freelancer_id=grace.id, method="oauth", issued_by="admin",
                              started_at=T0, finished_at=T0 + timedelta(minutes=3),
                              outcome="failed", failure_reason="access_denied"),
            ConnectionAttempt(freelancer_id=grace.id, method="account_link", issued_by="admin",
                              started_at=T0 + timedelta(days=1), outcome="succeeded",
                              stripe_account_id="acct_grace",
                              finished_at=T0 + timedelta(days=1, minutes=20)),
        ])
        upsert_account(session, account=account(id="acct_grace", requirements={
            "currently_due": ["external_account"], "eventually_due": ["external_account"]}),
            fetched_at=T0 + timedelta(days=1, minutes=20))
        grace.stripe_account_id = "acct_grace"
        grace.connected_at = T0 + timedelta(days=1, minutes=20)
        grace_id = grace.id
    with session_factory.begin() as session:
        upsert_account(session, account=account(id="acct_grace"),
                       fetched_at=T0 + timedelta(days=2))
        grace = session.get_one(Freelancer, grace_id)
        payout = add_payout(session, freelancer=grace, amount_minor=12_345,
                            created_at=T0 + timedelta(days=3))
        payout.description = "=HYPERLINK(\"http://evil\")"   # a formula, neutralised in CSV
        payout.completed_at = T0 + timedelta(days=3, seconds=2)
        session.flush()
        session.add(PayoutReversal(payout_id=payout.id, amount_minor=345, reason="Overpaid",
                                   status="succeeded", idempotency_key="rev-1",
                                   requested_by="admin",
                                   created_at=T0 + timedelta(days=4),
                                   completed_at=T0 + timedelta(days=4)))
        record_payout(session, payout={
            "id": "po_grace", "object": "payout", "amount": 12_000, "currency": "usd",
            "status": "failed", "failure_code": "account_closed",
            "created": int((T0 + timedelta(days=5)).timestamp())},
            account_id="acct_grace", event_created=T0 + timedelta(days=6))
        audit.record(session, actor="admin", action="connect.disconnect",
                     result="disconnected", target=f"freelancer:{grace_id}",
                     input={"account": "acct_grace"})
        detach(session, freelancer=grace, at=datetime.now(UTC))
    return grace_id


def _events(timeline) -> list[tuple[Kind, str]]:
    return [(e.kind, e.event) for e in reversed(timeline.entries)]


def test_the_whole_story_oldest_to_newest(session_factory, story) -> None:
    with session_factory() as session:
        timeline = freelancer_timeline(session, operator=FINANCE, freelancer_id=story)
    assert [e.at for e in timeline.entries] == sorted((e.at for e in timeline.entries),
                                                      reverse=True)
    events = _events(timeline)
    assert events[:8] == [
        (Kind.CONNECTION, "Link issued: OAuth (Standard account)"),
        (Kind.CONNECTION, "Connection failed"),
        (Kind.CONNECTION, "Link issued: Onboarding link (Express)"),
        (Kind.ACCOUNT, "Connected to acct_grace"),
        (Kind.REQUIREMENTS, "Stripe asks for more information"),
        (Kind.REQUIREMENTS, "Requirements met or withdrawn"),
        (Kind.PAYOUT, "Payout requested (manual)"),
        (Kind.PAYOUT, "Payout paid"),
    ]
    assert (Kind.PAYOUT, "Reversal succeeded") in events
    assert (Kind.BANK, "Bank payout failed") in events
    assert (Kind.ACCOUNT, "Disconnected") in events
    by_event = {e.event: e for e in timeline.entries}
    assert by_event["Connection failed"].detail == "Freelancer declined on Stripe"
    assert by_event["Stripe asks for more information"].detail == (
        "Now asked: Currently due: Bank account or debit card for payouts; Eventually due: "
        "Bank account or debit card for payouts")
    assert by_event["Payout paid"].amount == "$123.45 USD"
    assert by_event["Bank payout failed"].detail == "The bank account has been closed."
    assert by_event["Disconnected"].by == "admin"
    # The audit entry of the disconnection is shown once, as a connection fact.
    assert [e.event for e in timeline.entries].count("Disconnected") == 1


def test_filters_by_kind_and_dates(session_factory, story) -> None:
    with session_factory() as session:
        payouts = freelancer_timeline(session, operator=FINANCE, freelancer_id=story,
                                      kinds=[Kind.PAYOUT, Kind.BANK])
        early = freelancer_timeline(session, operator=FINANCE, freelancer_id=story,
                                    since=T0, until=T0 + timedelta(days=1, hours=1))
    assert {e.kind for e in payouts.entries} == {Kind.PAYOUT, Kind.BANK}
    assert [e.event for e in reversed(early.entries)] == [
        "Link issued: OAuth (Standard account)", "Connection failed",
        "Link issued: Onboarding link (Express)", "Connected to acct_grace",
        "Stripe asks for more information"]


def test_export_is_spreadsheet_safe(session_factory, story) -> None:
    with session_factory() as session:
        rows = timeline_export_rows(session, operator=FINANCE, freelancer_id=story)
    text = rows_to_csv(rows, EXPORT_COLUMNS).decode("utf-8-sig")
    assert text.splitlines()[0] == "at,kind,event,detail,amount,by,reference"
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text


def test_roles_and_missing_freelancers(session_factory, story) -> None:
    with session_factory() as session:
        with pytest.raises(PermissionDeniedError):
            freelancer_timeline(session, operator=MANAGER, freelancer_id=story)
        with pytest.raises(PermissionDeniedError):
            timeline_export_rows(session, operator=MANAGER, freelancer_id=story)
        with pytest.raises(NotFoundError):
            freelancer_timeline(session, operator=FINANCE, freelancer_id=story + 99)
