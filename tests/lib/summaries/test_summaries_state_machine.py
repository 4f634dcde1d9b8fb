"""Every summary equals a full recount after every step of a random sequence of writes.

The writes are the product's own (the account upsert of sync and webhooks, ORM writes of
freelancers and accounts with the requirement index's flush hooks, attempts started and
finished, payouts moving through statuses, webhook intake and processing), interleaved with
deletes, rolled-back transactions, timestamps on both sides of midnight, PostgreSQL's delta
folding and full rebuilds. After each step :func:`lib.summaries.maintenance.check` must find
no difference, on SQLite and on PostgreSQL (the suite's second pass), and the connection funnel
read from its summaries must equal the funnel counted from the attempts, for ranges ending on
the newest attempt's day.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from lib.accounts import upsert_account
from lib.connection_metrics import DateRange, _funnel_by_scan, funnel_asks, funnel_counts
from lib.models import (
    AttemptOutcome,
    ConnectedAccount,
    ConnectionAttempt,
    Freelancer,
    Payout,
    PayoutReversal,
    PayoutStatus,
    ReversalStatus,
    WebhookEvent,
    WebhookStatus,
)
from lib.summaries import maintenance
from lib.summaries.store import read_many

BASE = datetime(2026, 3, 1, tzinfo=UTC)
#: Moments a few seconds either side of midnight, and mid-day, over a fortnight.
MOMENTS = st.builds(
    lambda day, second: BASE + timedelta(days=day) + timedelta(seconds=second),
    st.integers(0, 14), st.sampled_from([-2, 0, 1, 43_200, 86_399]))
CODES = st.sampled_from(["individual.dob.day", "individual.dob.month", "individual.dob.year",
                         "external_account", "individual.id_number",
                         "person_a.dob.day", "person_b.dob.day", "tos_acceptance.date"])
# The statuses and outcomes the funnel reads first: Hypothesis draws the first element of a
# sampled_from most often, and a connected freelancer who then gets paid must be common.
STATUSES = tuple(sorted((s.value for s in PayoutStatus), key=lambda s: s != "paid"))
REVERSAL_STATUSES = tuple(sorted((s.value for s in ReversalStatus),
                                 key=lambda s: s != "succeeded"))
OUTCOMES = tuple(sorted((o.value for o in AttemptOutcome), key=lambda o: o != "succeeded"))
REASONS = st.none() | st.sampled_from(["access_denied", "invalid_state", "link_expired"])


def account_json(stripe_id: str, *, due: list[str], past: list[str], eventually: list[str],
                 deadline: datetime | None, payable: bool) -> dict[str, Any]:
    return {
        "id": stripe_id, "object": "account", "type": "express", "country": "US",
        "charges_enabled": False, "payouts_enabled": payable, "details_submitted": payable,
        "capabilities": {"transfers": "active" if payable else "inactive"},
        "requirements": {"currently_due": due, "past_due": past, "eventually_due": eventually,
                         "pending_verification": [], "errors": [],
                         "current_deadline": int(deadline.timestamp()) if deadline else None,
                         "disabled_reason": "requirements.past_due" if past else None},
        "future_requirements": {}, "created": int(BASE.timestamp()),
    }


class Summaries(RuleBasedStateMachine):
    factory: ClassVar[sessionmaker[Session]]

    freelancers = Bundle("freelancers")
    accounts = Bundle("accounts")
    attempts = Bundle("attempts")
    payouts = Bundle("payouts")
    reversals = Bundle("reversals")
    events = Bundle("events")

    def __init__(self) -> None:
        super().__init__()
        self.serial = 0
        with self.factory.begin() as session:
            for model in (PayoutReversal, Payout, ConnectionAttempt, WebhookEvent):
                session.execute(delete(model))
            session.execute(update(Freelancer).values(stripe_account_id=None))
            session.execute(delete(ConnectedAccount))
            session.execute(delete(Freelancer))
            maintenance.rebuild(session)

    def _next(self) -> int:
        self.serial += 1
        return self.serial

    @initialize(target=freelancers, outcomes=st.lists(st.sampled_from(OUTCOMES), min_size=1,
                                                      max_size=3), at=MOMENTS)
    def seed(self, outcomes: list[str], at: datetime) -> MultipleResults[int]:
        """A few freelancers who already tried to connect: a random run rarely builds one that
        connected *and* then got paid in 40 steps, and the funnel's flags need them."""
        ids = []
        with self.factory.begin() as session:
            for outcome in outcomes:
                n = self._next()
                freelancer = Freelancer(name=f"F{n}", email=f"f{n}@example.com")
                session.add(freelancer)
                session.flush()
                session.add(ConnectionAttempt(freelancer_id=freelancer.id, method="oauth",
                                              issued_by="test", started_at=at, outcome=outcome))
                ids.append(freelancer.id)
        return multiple(*ids)

    # ---- freelancers and accounts -------------------------------------------------------------

    @rule(target=freelancers)
    def add_freelancer(self) -> int:
        n = self._next()
        with self.factory.begin() as session:
            freelancer = Freelancer(name=f"F{n}", email=f"f{n}@example.com")
            session.add(freelancer)
            session.flush()
            return freelancer.id

    @rule(target=accounts, due=st.lists(CODES, max_size=3, unique=True),
          past=st.lists(CODES, max_size=2, unique=True),
          eventually=st.lists(CODES, max_size=2, unique=True),
          deadline=st.none() | MOMENTS, payable=st.booleans(), fetched=MOMENTS)
    def upsert(self, due: list[str], past: list[str], eventually: list[str],
               deadline: datetime | None, payable: bool, fetched: datetime) -> str:
        stripe_id = f"acct_{self._next():06d}"
        with self.factory.begin() as session:
            upsert_account(session, account=account_json(
                stripe_id, due=due, past=past, eventually=eventually, deadline=deadline,
                payable=payable), fetched_at=fetched)
        return stripe_id

    @rule(stripe_id=accounts, due=st.lists(CODES, max_size=3, unique=True),
          past=st.lists(CODES, max_size=2, unique=True), deadline=st.none() | MOMENTS,
          payable=st.booleans(), later=st.integers(1, 10_000))
    def refresh(self, stripe_id: str, due: list[str], past: list[str],
                deadline: datetime | None, payable: bool, later: int) -> None:
        """The sync's and webhooks' Core upsert of a newer fetch."""
        with self.factory.begin() as session:
            synced = session.scalar(select(ConnectedAccount.synced_at)
                                    .where(ConnectedAccount.stripe_id == stripe_id))
            if synced is None:
                return
            upsert_account(session, account=account_json(
                stripe_id, due=due, past=past, eventually=[], deadline=deadline,
                payable=payable), fetched_at=synced + timedelta(seconds=later))

    @rule(freelancer_id=freelancers, stripe_id=st.none() | accounts, at=MOMENTS)
    def attach(self, freelancer_id: int, stripe_id: str | None, at: datetime) -> None:
        """Connect (or disconnect, with None) through the ORM: the index's flush hooks run."""
        with self.factory.begin() as session:
            if stripe_id is not None:
                holder = session.scalar(select(Freelancer)
                                        .where(Freelancer.stripe_account_id == stripe_id))
                if holder is not None:
                    holder.stripe_account_id = None
                    session.flush()
            freelancer = session.get(Freelancer, freelancer_id)
            if freelancer is None:
                return
            freelancer.stripe_account_id = stripe_id
            freelancer.connected_at = at if stripe_id else None

    @rule(stripe_id=accounts, codes=st.lists(CODES, max_size=3, unique=True),
          deadline=st.none() | MOMENTS)
    def orm_edit(self, stripe_id: str, codes: list[str], deadline: datetime | None) -> None:
        """An ORM change of the mirror's requirements, counts and deadline."""
        with self.factory.begin() as session:
            account = session.scalar(select(ConnectedAccount)
                                     .where(ConnectedAccount.stripe_id == stripe_id))
            if account is None:
                return
            account.requirements = {"currently_due": codes, "past_due": []}
            account.currently_due_count = len(codes)
            account.past_due_count = 0
            account.current_deadline = deadline
            account.status = "RESTRICTED" if codes else "ACTIVE"

    @rule(stripe_id=accounts)
    def delete_account(self, stripe_id: str) -> None:
        with self.factory.begin() as session:
            session.execute(update(Freelancer).where(Freelancer.stripe_account_id == stripe_id)
                            .values(stripe_account_id=None))
            account = session.scalar(select(ConnectedAccount)
                                     .where(ConnectedAccount.stripe_id == stripe_id))
            if account is not None:
                session.delete(account)

    # ---- attempts, payouts, events ------------------------------------------------------------

    @rule(target=attempts, freelancer_id=freelancers, at=MOMENTS,
          method=st.sampled_from(["oauth", "account_link"]),
          outcome=st.sampled_from(OUTCOMES))
    def start_attempt(self, freelancer_id: int, at: datetime, method: str, outcome: str) -> int:
        """A new attempt, usually pending; sometimes written already decided (as a bulk load or
        a backfill does), so the funnel's stages are reached in few steps."""
        with self.factory.begin() as session:
            attempt = ConnectionAttempt(freelancer_id=freelancer_id, method=method,
                                        issued_by="test", started_at=at, outcome=outcome,
                                        finished_at=at if outcome != "pending" else None)
            session.add(attempt)
            session.flush()
            return attempt.id

    @rule(attempt_id=attempts, outcome=st.sampled_from(OUTCOMES), reason=REASONS,
          took=st.integers(0, 900_000))
    def finish_attempt(self, attempt_id: int, outcome: str, reason: str | None,
                       took: int) -> None:
        with self.factory.begin() as session:
            attempt = session.get(ConnectionAttempt, attempt_id)
            if attempt is None:
                return
            attempt.outcome = outcome
            attempt.failure_reason = reason
            attempt.finished_at = attempt.started_at + timedelta(seconds=took)

    @rule(attempt_id=attempts, took=st.integers(0, 900_000))
    def retime_attempt(self, attempt_id: int, took: int) -> None:
        """Only the finishing time changes (a late callback): the time-to-connect bucket moves."""
        with self.factory.begin() as session:
            attempt = session.get(ConnectionAttempt, attempt_id)
            if attempt is not None and attempt.finished_at is not None:
                attempt.finished_at = attempt.started_at + timedelta(seconds=took)

    @rule(attempt_id=attempts, after=st.integers(0, 900_000))
    def return_attempt(self, attempt_id: int, after: int) -> None:
        """The freelancer came back from Stripe (the funnel's "Returned", whatever the outcome)."""
        with self.factory.begin() as session:
            attempt = session.get(ConnectionAttempt, attempt_id)
            if attempt is not None:
                attempt.returned_at = attempt.started_at + timedelta(seconds=after)

    @rule(attempt_id=attempts)
    def delete_attempt(self, attempt_id: int) -> None:
        with self.factory.begin() as session:
            session.execute(delete(ConnectionAttempt).where(ConnectionAttempt.id == attempt_id))

    @rule(target=payouts, freelancer_id=freelancers, at=MOMENTS,
          amount=st.integers(1, 10**9), currency=st.sampled_from(["usd", "jpy", "kwd"]),
          status=st.sampled_from(STATUSES))
    def add_payout(self, freelancer_id: int, at: datetime, amount: int, currency: str,
                   status: str) -> int:
        n = self._next()
        with self.factory.begin() as session:
            payout = Payout(freelancer_id=freelancer_id, amount_minor=amount, currency=currency,
                            idempotency_key=f"key-{n}", requested_by="test", created_at=at,
                            status=status)
            session.add(payout)
            session.flush()
            return payout.id

    @rule(payout_id=payouts, status=st.sampled_from(STATUSES))
    def move_payout(self, payout_id: int, status: str) -> None:
        with self.factory.begin() as session:
            session.execute(update(Payout).where(Payout.id == payout_id).values(status=status))

    @rule(target=reversals, payout_id=payouts, amount=st.integers(1, 10**6),
          status=st.sampled_from(REVERSAL_STATUSES))
    def reverse(self, payout_id: int, amount: int, status: str) -> int:
        """A reversal of a payout: once succeeded, it counts under its payout's keys."""
        n = self._next()
        with self.factory.begin() as session:
            if session.get(Payout, payout_id) is None:
                return 0
            reversal = PayoutReversal(payout_id=payout_id, amount_minor=amount, reason="test",
                                      status=status, requested_by="test",
                                      idempotency_key=f"rev-{n}")
            session.add(reversal)
            session.flush()
            return reversal.id

    @rule(reversal_id=reversals, status=st.sampled_from(REVERSAL_STATUSES))
    def move_reversal(self, reversal_id: int, status: str) -> None:
        with self.factory.begin() as session:
            session.execute(update(PayoutReversal).where(PayoutReversal.id == reversal_id)
                            .values(status=status))

    @rule(target=events, type_=st.sampled_from(["account.updated", "transfer.created",
                                                "payout.failed"]), at=MOMENTS)
    def receive_event(self, type_: str, at: datetime) -> int:
        n = self._next()
        with self.factory.begin() as session:
            event = WebhookEvent(stripe_event_id=f"evt_{n}", type=type_, endpoint="connect",
                                 payload={"id": f"evt_{n}"}, received_at=at)
            session.add(event)
            session.flush()
            return event.id

    @rule(event_id=events, status=st.sampled_from([s.value for s in WebhookStatus]))
    def process_event(self, event_id: int, status: str) -> None:
        with self.factory.begin() as session:
            session.execute(update(WebhookEvent).where(WebhookEvent.id == event_id)
                            .values(status=status))

    # ---- faults and upkeep --------------------------------------------------------------------

    @rule(freelancer_id=freelancers, at=MOMENTS)
    def rolled_back(self, freelancer_id: int, at: datetime) -> None:
        """Writes whose transaction rolls back leave no trace in the summaries."""
        session = self.factory()
        with session.begin():
            session.add(ConnectionAttempt(freelancer_id=freelancer_id, method="oauth",
                                          issued_by="test", started_at=at))
            session.execute(update(WebhookEvent).values(status=WebhookStatus.DEAD.value))
            session.flush()
            session.rollback()
        session.close()

    @rule()
    def compact(self) -> None:
        with self.factory.begin() as session:
            maintenance.compact(session)

    @rule()
    def rebuild(self) -> None:
        with self.factory.begin() as session:
            maintenance.rebuild(session)

    @invariant()
    def summaries_equal_a_recount(self) -> None:
        with self.factory() as session:
            result = maintenance.check(session)
        assert result.ok, [d.to_dict() for d in result.differences[:10]]

    @invariant()
    def funnel_from_summaries_equals_a_scan(self) -> None:
        """Every range ending on the newest attempt's day: the summaries' funnel is the scan's."""
        with self.factory() as session:
            newest = session.scalar(select(func.max(ConnectionAttempt.started_at)))
            if newest is None:
                return
            for first in (BASE.date() - timedelta(days=1), BASE.date() + timedelta(days=3),
                          BASE.date() + timedelta(days=8), newest.date()):
                if first > newest.date():
                    continue
                period = DateRange(first, newest.date())
                assert (funnel_counts(read_many(session, funnel_asks(period)))
                        == _funnel_by_scan(session, period)), period


@pytest.mark.slow
def test_summaries_equal_a_recount_after_random_writes(
    session_factory: sessionmaker[Session],
) -> None:
    Summaries.factory = session_factory
    run_state_machine_as_test(Summaries, settings=settings(
        max_examples=60, stateful_step_count=40, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
