"""Benchmark (issue 22): the write paths that now also maintain summaries, side by side.

``python -m bench.writes [--backend sqlite|postgresql|all] [--writes N]``

Two databases migrated the same way; in one, the summaries' triggers are dropped and the
requirement index does not add to the per-label counts: what each write cost before issue 22.
The same writes alternate between the two in rounds (A, B, A, B …), each a committed
transaction as production makes it, so a noisy machine slows both alike:

- **webhook intake**: ``lib.webhooks.store_event`` of a new ``account.updated`` event;
- **account upsert**: ``lib.accounts.upsert_account`` of a changed account (status, counts,
  deadline and requirements change, so every account summary and the label counts move);
- **payout status change**: one ledger row moved to its next status (through ``paid`` and back
  out of it, so the funnel's "paid" flag moves too).

Each freelancer has ten connection attempts, as in the benchmark database, so the funnel's
per-freelancer refresh (:mod:`lib.summaries.funnel`) reads real rows.

Target: each write's median time with summaries ≤ 1.2× without.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from unittest.mock import patch

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from bench.common import Figure, chosen_backends, fresh_database, report
from lib.accounts import upsert_account
from lib.db import make_engine, make_session_factory, utcnow
from lib.models import ConnectionAttempt, Freelancer, Payout, PayoutStatus
from lib.summaries import maintenance
from lib.summaries import store as summary_store
from lib.webhooks import Endpoint, store_event

logger = logging.getLogger("bench.writes")

ROUNDS = 10
_STATUSES = (PayoutStatus.PENDING.value, PayoutStatus.SUBMITTED.value,
             PayoutStatus.PAID.value, PayoutStatus.FAILED.value)


def _account(number: int, round_: int) -> dict[str, Any]:
    due = [["external_account"], ["individual.dob.day", "individual.id_number"], []][round_ % 3]
    deadline = int((utcnow() + timedelta(days=round_ % 9)).timestamp()) if due else None
    return {
        "id": f"acct_w{number:07d}", "object": "account", "type": "express", "country": "US",
        "charges_enabled": False, "payouts_enabled": not due, "details_submitted": True,
        "capabilities": {"transfers": "active" if not due else "inactive"},
        "requirements": {"currently_due": due, "past_due": [], "eventually_due": due,
                         "pending_verification": [], "errors": [],
                         "current_deadline": deadline, "disabled_reason": None},
        "future_requirements": {}, "created": int(utcnow().timestamp()),
    }


class _Side:
    """One database and the writes made to it."""

    def __init__(self, url: str, *, summaries: bool, accounts: int) -> None:
        self.engine = make_engine(url)
        self.factory: sessionmaker[Session] = make_session_factory(self.engine)
        self.summaries = summaries
        self.accounts = accounts
        self.counter = 0
        self.round = 0
        with self.factory.begin() as session:
            if not summaries:
                maintenance.drop_triggers(session)
            people = [Freelancer(name=f"W{i}", email=f"w{i}@example.com",
                                 stripe_account_id=f"acct_w{i:07d}", connected_at=utcnow())
                      for i in range(accounts)]
            session.add_all(people)
            session.flush()
            session.add_all([Payout(freelancer_id=p.id, amount_minor=1_000 + p.id,
                                    currency="usd", idempotency_key=f"bench-w-{p.id}",
                                    requested_by="bench") for p in people])
            # Connection attempts as in production (the benchmark database's 10 per freelancer),
            # so the funnel's refresh of a freelancer reads real rows when a write moves them.
            session.add_all([ConnectionAttempt(
                freelancer_id=p.id, method="account_link", issued_by="bench",
                started_at=utcnow() - timedelta(days=10 - n),
                outcome="succeeded" if n == 9 else "abandoned") for p in people
                for n in range(10)])
        with self._maybe_without():
            for number in range(accounts):
                with self.factory.begin() as session:
                    upsert_account(session, account=_account(number, 0))

    @contextlib.contextmanager
    def _maybe_without(self) -> Iterator[None]:
        """Without summaries, the requirement index adds nothing to the label counts."""
        if self.summaries:
            yield
            return
        # The index adds through lib.summaries.store.add (the module, not a copy of the name).
        with patch.object(summary_store, "add", lambda connection, changes: None):
            yield

    def intake(self) -> None:
        self.counter += 1
        event = {"id": f"evt_w{self.counter:09d}", "type": "account.updated",
                 "account": "acct_w0000001", "created": int(time.time()), "livemode": False,
                 "data": {"object": {"id": "acct_w0000001"}}}
        with self.factory.begin() as session:
            store_event(session, event=event, endpoint=Endpoint.CONNECT,
                        settings=_SETTINGS)

    def upsert(self) -> None:
        self.counter += 1
        number = self.counter % self.accounts
        with self._maybe_without(), self.factory.begin() as session:
            upsert_account(session, account=_account(number, self.counter // self.accounts + 1),
                           fetched_at=utcnow())

    def payout(self) -> None:
        self.counter += 1
        payout_id = self.counter % self.accounts + 1
        with self.factory.begin() as session:
            session.execute(update(Payout).where(Payout.id == payout_id)
                            .values(status=_STATUSES[self.counter % len(_STATUSES)]))

    def close(self) -> None:
        self.engine.dispose()


_SETTINGS: Any = None


def _timed(work: Callable[[], None], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        work()
    return (time.perf_counter() - started) / count


def measure(backend: str, *, writes: int, accounts: int = 200) -> list[Figure]:
    global _SETTINGS
    from bench.common import bench_settings

    figures = []
    with fresh_database(backend, "writes_with") as with_url, \
            fresh_database(backend, "writes_without") as without_url:
        _SETTINGS = bench_settings(with_url)
        sides = {True: _Side(with_url, summaries=True, accounts=accounts),
                 False: _Side(without_url, summaries=False, accounts=accounts)}
        try:
            for name in ("intake", "upsert", "payout"):
                samples: dict[bool, list[float]] = {True: [], False: []}
                per_round = max(1, writes // ROUNDS)
                for round_ in range(ROUNDS):
                    order = (True, False) if round_ % 2 == 0 else (False, True)
                    for flag in order:
                        samples[flag].append(_timed(getattr(sides[flag], name), per_round))
                with_, without = (statistics.median(samples[f]) for f in (True, False))
                label = {"intake": "webhook intake", "upsert": "account upsert",
                         "payout": "payout status change"}[name]
                figures.append(Figure(
                    "writes", f"{label}: with summaries vs without", with_ * 1e3, "ms/write",
                    "≤ 1.2× without", ratio=with_ / without, limit=1.2, backend=backend,
                    details={"without_ms": round(without * 1e3, 3),
                             "with_ms": round(with_ * 1e3, 3), "writes": per_round * ROUNDS}))
        finally:
            for side in sides.values():
                side.close()
        with make_session_factory(make_engine(with_url))() as session:
            if not maintenance.check(session).ok:
                raise SystemExit("bench.writes: the summaries differ from a recount")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.writes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "all"], default="all")
    parser.add_argument("--writes", type=int, default=2_000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for backend in chosen_backends(args.backend):
        report(measure(backend, writes=args.writes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
