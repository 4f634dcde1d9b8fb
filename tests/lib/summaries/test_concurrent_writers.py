"""Concurrent writers on PostgreSQL: account pages upserted by a sync while events arrive and
attempts finish, each in its own transaction, never wait on a shared counter row or deadlock,
and the summaries still equal a recount (after folding the deltas, and before)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from lib.accounts import upsert_accounts
from lib.db import utcnow
from lib.models import ConnectionAttempt, Freelancer, WebhookEvent
from lib.summaries import maintenance
from tests.conftest import requires_postgresql
from tests.lib.summaries.test_summaries_state_machine import account_json

ROUNDS = 40


@requires_postgresql()
def test_concurrent_writers_keep_the_summaries_exact(
    session_factory: sessionmaker[Session],
) -> None:
    now = utcnow()
    with session_factory.begin() as session:
        people = [Freelancer(name=f"P{i}", email=f"p{i}@example.com",
                             stripe_account_id=f"acct_c{i:03d}", connected_at=now)
                  for i in range(20)]
        session.add_all(people)
        session.flush()
        attempts = [ConnectionAttempt(freelancer_id=p.id, method="oauth", issued_by="t",
                                      started_at=now) for p in people]
        session.add_all(attempts)
        session.flush()
        attempt_ids = [a.id for a in attempts]
    errors: list[BaseException] = []

    def sync(offset: int) -> None:
        # Pages of the same accounts in opposite orders: row locks taken in different orders.
        for round_ in range(ROUNDS):
            ids = [f"acct_c{i:03d}" for i in range(20)]
            if (round_ + offset) % 2:
                ids.reverse()
            with session_factory.begin() as session:
                upsert_accounts(session, accounts=[account_json(
                    stripe_id, due=["external_account"] if (round_ + offset) % 3 else [],
                    past=[], eventually=[], deadline=now + timedelta(days=round_ % 9),
                    payable=bool(round_ % 2)) for stripe_id in ids],
                    fetched_at=now + timedelta(seconds=round_ * 2 + offset))

    def events(offset: int) -> None:
        for round_ in range(ROUNDS):
            with session_factory.begin() as session:
                session.add(WebhookEvent(stripe_event_id=f"evt_{offset}_{round_}",
                                         type="account.updated", endpoint="connect",
                                         payload={}, status="received"))

    def outcomes(offset: int) -> None:
        for round_ in range(ROUNDS):
            with session_factory.begin() as session:
                session.execute(update(ConnectionAttempt)
                                .where(ConnectionAttempt.id == attempt_ids[round_ % 20])
                                .values(outcome=("succeeded", "failed")[(round_ + offset) % 2],
                                        finished_at=now + timedelta(minutes=round_)))

    def run(work: Callable[[int], None], offset: int) -> None:
        try:
            work(offset)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(work, offset))
               for work in (sync, events, outcomes) for offset in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    with session_factory() as session:
        assert maintenance.check(session).ok
    with session_factory.begin() as session:
        assert maintenance.compact(session) > 0
    with session_factory() as session:
        result = maintenance.check(session)
        assert result.ok, result.differences[:5]
