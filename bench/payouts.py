"""Payout path: request → preflight → execute against the emulator, payouts per second.

``python -m bench.payouts [--backend sqlite|postgresql|all] [--payouts 200] [--operators 8]``

Each payout goes the way the dashboard's Payouts page sends one: ``preflight`` (the mirror's
checks and Stripe's balance), ``request_payout`` in its own transaction (a fresh request token,
as each form gets), then ``execute_payout`` (claim, ``POST /v1/transfers`` with the row's key,
record paid). Measured with 1 operator, then with N operators at once (threads, each with its own
sessions and gateway), the same number of payouts in total. The approval threshold is set above
every amount so none waits for a second operator; the emulator's balance is funded first.

The issue gives no target: the figures are printed with the N/1 ratio (how the path scales).
PostgreSQL is the production backend; SQLite (one writer at a time) is shown for information.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bench.common import (
    Figure,
    bench_settings,
    chosen_backends,
    emulator_process,
    fresh_database,
    report,
)

if TYPE_CHECKING:  # lib and the emulator are imported inside the functions that use them
    from emulator.testing import EmulatorHandle
    from lib.settings import Settings

BENCHMARK = "payouts"
#: Destination accounts: payouts rotate over them (one account would serialise on Stripe's lock).
DESTINATIONS = 8
AMOUNT = "12.34"


def _prepare(emulator: EmulatorHandle, url: str, settings: Settings) -> list[int]:
    """Connected, active accounts mirrored and attached to freelancers; a funded platform."""
    from lib.db import make_engine, make_session_factory
    from lib.freelancers import create_freelancer
    from lib.models import Freelancer
    from lib.stripe_gateway import StripeGateway
    from lib.sync import SYSTEM_OPERATOR, sync_all_accounts

    gateway = StripeGateway(settings)
    emulator.set_balance(10**12, "usd")
    account_ids = []
    for i in range(DESTINATIONS):
        account = gateway.create_express_account(
            email=f"payee{i}@example.com", country="US", metadata={},
            idempotency_key=f"bench-payee-{i}-{uuid.uuid4().hex}")
        emulator.set_account(account.id, onboarding="complete")
        account_ids.append(account.id)
    engine = make_engine(url)
    try:
        factory = make_session_factory(engine)
        sync_all_accounts(factory, gateway=gateway, operator=SYSTEM_OPERATOR)
        with factory.begin() as session:
            freelancers: list[Freelancer] = []
            for i, account_id in enumerate(account_ids):
                freelancer = create_freelancer(session, name=f"Payee {i}",
                                               email=f"payee{i}@example.com", country="US")
                freelancer.stripe_account_id = account_id
                freelancer.connection_method = "onboarding"
                freelancer.connected_at = datetime.now(UTC)
                freelancers.append(freelancer)
            session.flush()
            return [f.id for f in freelancers]
    finally:
        engine.dispose()


def _operator_run(url: str, settings: Settings, index: int, freelancer_ids: list[int],
                  count: int) -> tuple[int, list[str]]:
    """One operator paying ``count`` payouts in a row; (paid, problems)."""
    from lib.db import make_engine, make_session_factory
    from lib.errors import ConnectOpsError
    from lib.models import PayoutStatus
    from lib.payouts import execute_payout, preflight, request_payout
    from lib.payouts.ledger import parse_money
    from lib.roles import Operator, Role
    from lib.stripe_gateway import StripeGateway

    operator = Operator(username=f"bench-operator-{index}", roles=frozenset({Role.ADMIN}))
    gateway = StripeGateway(settings)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    paid, problems = 0, []
    try:
        for i in range(count):
            freelancer_id = freelancer_ids[(index + i) % len(freelancer_ids)]
            try:
                money = parse_money(AMOUNT, "usd", settings=settings)
                with factory() as session:
                    checked = preflight(session, gateway=gateway, freelancer_id=freelancer_id,
                                        money=money)
                if not checked.ok:
                    problems.append(checked.summary())
                    continue
                token = uuid.uuid4().hex
                with factory.begin() as session:
                    payout_id = request_payout(
                        session, operator=operator, freelancer_id=freelancer_id,
                        # One invoice each: the same description again would be a likely
                        # duplicate (lib.payouts.duplicates) and need a confirmation.
                        amount=AMOUNT, currency="usd", description=f"bench invoice {token}",
                        client_request_token=token, settings=settings,
                        audit_refusals_with=factory,
                    ).id
                payout = execute_payout(factory, gateway=gateway, payout_id=payout_id,
                                        operator=operator)
            except ConnectOpsError as exc:
                problems.append(f"{exc.code}: {exc.message}")
                continue
            if payout.status == PayoutStatus.PAID:
                paid += 1
            else:
                problems.append(f"payout {payout.id} ended {payout.status}")
    finally:
        engine.dispose()
    return paid, problems


def _run(url: str, settings: Settings, freelancer_ids: list[int], *, operators: int,
         total: int) -> tuple[float, int, list[str]]:
    per_operator = max(1, total // operators)
    started = time.perf_counter()
    with ThreadPoolExecutor(operators) as pool:
        results = list(pool.map(
            lambda n: _operator_run(url, settings, n, freelancer_ids, per_operator),
            range(operators)))
    seconds = time.perf_counter() - started
    paid = sum(r[0] for r in results)
    return seconds, paid, [p for r in results for p in r[1]]


def measure(backend: str, *, payouts: int, operators: int) -> list[Figure]:
    """Payouts/s for 1 operator and for ``operators`` at once on one backend."""
    figures: list[Figure] = []
    rates: dict[int, float] = {}
    with emulator_process() as emulator, fresh_database(backend, "payouts") as url:
        settings = bench_settings(url, emulator.base_url,
                                  payout_approval_threshold_minor=10**12)
        freelancer_ids = _prepare(emulator, url, settings)
        _run(url, settings, freelancer_ids, operators=1, total=3)  # warm-up, not measured
        for count in (1, operators):
            seconds, paid, problems = _run(url, settings, freelancer_ids, operators=count,
                                           total=payouts)
            rates[count] = paid / seconds
            if problems:
                sys.stderr.write(f"bench.payouts: {len(problems)} payouts not paid, first: "
                                 f"{problems[0]}\n")
            scaling = rates[count] / rates[1] if count != 1 and rates[1] else None
            figures.append(Figure(
                BENCHMARK, f"{count} operator{'s' if count > 1 else ''}: paid payouts",
                rates[count], "payouts/s",
                "(no target) ratio = N/1 scaling" if count != 1 else "(no target)",
                ratio=scaling, backend=backend,
                details={"paid": paid, "seconds": round(seconds, 3), "not_paid": len(problems),
                         "operators": count, "destinations": DESTINATIONS},
            ))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.payouts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "all"], default="all")
    parser.add_argument("--payouts", type=int, default=200, help="payouts per measurement")
    parser.add_argument("--operators", type=int, default=8, help="concurrent operators")
    args = parser.parse_args(argv)
    for backend in chosen_backends(args.backend):
        report(measure(backend, payouts=args.payouts, operators=args.operators))
    return 0


if __name__ == "__main__":
    sys.exit(main())
