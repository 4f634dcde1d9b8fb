"""Requirement history: every change of an attached account's requirements is kept (issue 21).

Written by ``lib.requirement_index`` where the mirror is upserted (webhook, sync, refresh) and
on ORM writes (connecting): one ``requirement_changes`` row per change, none for a repeat of
the same data, an older fetch the upsert refuses, a detach or a rebuild.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from lib.accounts import upsert_account
from lib.connect_flow import detach
from lib.freelancers import create_freelancer
from lib.models import Freelancer, RequirementChange
from lib.requirement_index import rebuild
from tests.lib.test_account_status import account

T0 = datetime(2026, 11, 1, tzinfo=UTC)
DEADLINE = 1_900_000_000


def _changes(session_factory) -> list[RequirementChange]:
    with session_factory() as session:
        return list(session.scalars(select(RequirementChange).order_by(RequirementChange.id)))


def _attached(session_factory, acct: dict) -> int:
    with session_factory.begin() as session:
        upsert_account(session, account=acct, fetched_at=T0)
        freelancer = create_freelancer(session, name="Hedy Lamarr", email="hedy@example.com",
                                       country="US")
        freelancer.stripe_account_id = acct["id"]
        session.flush()
        return freelancer.id


def test_connecting_records_what_stripe_asks_for(session_factory) -> None:
    freelancer_id = _attached(session_factory, account(
        id="acct_h1", requirements={"currently_due": ["external_account"],
                                    "eventually_due": ["external_account"],
                                    "current_deadline": DEADLINE}))
    [change] = _changes(session_factory)
    assert change.freelancer_id == freelancer_id
    assert change.added == {"currently_due": ["external_account"],
                            "eventually_due": ["external_account"]}
    assert change.removed == {}
    assert change.deadline == datetime.fromtimestamp(DEADLINE, tz=UTC)
    assert change.previous_deadline is None
    assert change.observed_at == T0


def test_each_account_update_that_changes_something_is_one_row(session_factory) -> None:
    _attached(session_factory, account(id="acct_h2", requirements={
        "currently_due": ["external_account"], "eventually_due": ["external_account"]}))
    updates = [
        # Stripe moves it to past due and sets a deadline.
        account(id="acct_h2", requirements={
            "currently_due": ["external_account"], "past_due": ["external_account"],
            "eventually_due": ["external_account"], "current_deadline": DEADLINE}),
        # The same data again (a duplicate event, a sync): nothing new.
        account(id="acct_h2", requirements={
            "currently_due": ["external_account"], "past_due": ["external_account"],
            "eventually_due": ["external_account"], "current_deadline": DEADLINE}),
        # Provided: nothing due any more.
        account(id="acct_h2"),
    ]
    for minutes, acct in enumerate(updates, start=1):
        with session_factory.begin() as session:
            upsert_account(session, account=acct, fetched_at=T0 + timedelta(minutes=minutes))
    changes = _changes(session_factory)
    assert len(changes) == 3
    moved, provided = changes[1], changes[2]
    assert (moved.added, moved.removed) == ({"past_due": ["external_account"]}, {})
    assert moved.deadline == datetime.fromtimestamp(DEADLINE, tz=UTC)
    assert moved.previous_deadline is None
    assert moved.observed_at == T0 + timedelta(minutes=1)
    assert provided.added == {}
    assert provided.removed == {"currently_due": ["external_account"],
                                "eventually_due": ["external_account"],
                                "past_due": ["external_account"]}
    assert provided.previous_deadline == datetime.fromtimestamp(DEADLINE, tz=UTC)
    assert provided.observed_at == T0 + timedelta(minutes=3)


def test_a_deadline_moving_alone_is_a_change(session_factory) -> None:
    due = {"currently_due": ["individual.id_number"], "eventually_due": ["individual.id_number"]}
    _attached(session_factory, account(id="acct_h3", requirements={
        **due, "current_deadline": DEADLINE}))
    with session_factory.begin() as session:
        upsert_account(session, account=account(id="acct_h3", requirements={
            **due, "current_deadline": DEADLINE + 86_400}), fetched_at=T0 + timedelta(hours=1))
    last = _changes(session_factory)[-1]
    assert (last.added, last.removed) == ({}, {})
    assert last.previous_deadline == datetime.fromtimestamp(DEADLINE, tz=UTC)
    assert last.deadline == datetime.fromtimestamp(DEADLINE + 86_400, tz=UTC)


def test_refused_older_fetches_detaches_and_rebuilds_write_no_history(session_factory) -> None:
    freelancer_id = _attached(session_factory, account(id="acct_h4", requirements={
        "currently_due": ["external_account"], "eventually_due": ["external_account"]}))
    with session_factory.begin() as session:
        # Older than what is stored: the upsert's guard refuses it, so no change happened.
        assert not upsert_account(session, account=account(id="acct_h4"),
                                  fetched_at=T0 - timedelta(days=1))
    with session_factory.begin() as session:
        rebuild(session=session)
    with session_factory.begin() as session:
        detach(session, freelancer=session.get_one(Freelancer, freelancer_id))
    assert len(_changes(session_factory)) == 1


def test_accounts_no_freelancer_holds_have_no_history(session_factory) -> None:
    with session_factory.begin() as session:
        upsert_account(session, account=account(id="acct_h5", requirements={
            "currently_due": ["external_account"]}), fetched_at=T0)
    assert _changes(session_factory) == []
