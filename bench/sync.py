"""Sync backfill: ``lib.sync.sync_all_accounts`` of N accounts from the emulator into an empty mirror.

``python -m bench.sync [--backend sqlite|postgresql|all] [--accounts 10000]``

The emulator runs in its own process (as Stripe is elsewhere) and is filled through the SDK with
a realistic mix: new Express accounts (onboarding not finished), a third completed, one in ten
with requirements past due. The figure is accounts/s of the backfill (target ≥ 2,000/s); beside
it the emulator's own cost — paging through ``GET /v1/accounts`` with the same gateway and
writing nothing — and what is left for our side (parsing + upserts) once that is taken out.
The sync fetches the next page while it writes the current one, so "our side" is an upper
bound of the time the emulator leaves us, not the sum of the two. The backfill's details also
give this process's CPU seconds (both threads), which a busy shared machine moves far less than
wall time.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
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
    from lib.stripe_gateway import StripeGateway

BENCHMARK = "sync"
TARGET_PER_SECOND = 2000.0
#: Threads filling the emulator: only set-up, not measured.
FILL_THREADS = 8


def fill_emulator(emulator: EmulatorHandle, gateway: StripeGateway, count: int) -> None:
    """Create ``count`` connected accounts with a demo-like mix of states."""

    def create(i: int) -> None:
        account = gateway.create_express_account(
            email=f"bench{i}@example.com", country="US", metadata={"bench": str(i)},
            idempotency_key=f"bench-sync-{i}")
        if i % 3 == 0:
            emulator.set_account(account.id, onboarding="complete")
        elif i % 10 == 1:
            emulator.set_account(account.id, details_submitted=True,
                                 requirements={"past_due": ["individual.id_number"],
                                               "currently_due": ["individual.id_number"],
                                               "eventually_due": ["individual.id_number"],
                                               "disabled_reason": "requirements.past_due"})

    with ThreadPoolExecutor(FILL_THREADS) as pool:
        list(pool.map(create, range(count)))


def page_through(gateway: StripeGateway, *, page_size: int = 100) -> int:
    """The emulator's side alone: every page of accounts, nothing written."""
    cursor: str | None = None
    seen = 0
    while True:
        accounts, more = gateway.list_accounts_page(
            starting_after=cursor, limit=page_size)
        seen += len(accounts)
        if not more or not accounts:
            return seen
        cursor = str(accounts[-1]["id"])


def measure(backends: list[str], *, accounts: int) -> list[Figure]:
    """Fill one emulator, then time the emulator alone and a backfill per backend."""
    from lib.db import make_engine, make_session_factory
    from lib.stripe_gateway import StripeGateway
    from lib.sync import SYSTEM_OPERATOR, sync_all_accounts

    figures: list[Figure] = []
    with emulator_process() as emulator:
        base = emulator.base_url
        filling = StripeGateway(bench_settings("sqlite://", base))
        started = time.perf_counter()
        fill_emulator(emulator, filling, accounts)
        fill_seconds = time.perf_counter() - started
        for backend in backends:
            with fresh_database(backend, "sync") as url:
                gateway = StripeGateway(bench_settings(url, base))
                page_through(gateway)  # warm the connection and the emulator's code paths
                started = time.perf_counter()
                listed = page_through(gateway)
                emulator_seconds = time.perf_counter() - started
                engine = make_engine(url)
                try:
                    factory = make_session_factory(engine)
                    started, cpu_started = time.perf_counter(), time.process_time()
                    result = sync_all_accounts(factory, gateway=gateway,
                                               operator=SYSTEM_OPERATOR)
                    sync_seconds = time.perf_counter() - started
                    cpu_seconds = time.process_time() - cpu_started
                finally:
                    engine.dispose()
            synced = result.synced + result.skipped_stale
            rate = synced / sync_seconds
            ours = max(sync_seconds - emulator_seconds, 1e-9)
            figures += [
                Figure(BENCHMARK, f"backfill {synced} accounts", rate, "accounts/s",
                       "≥ 2,000 accounts/s", ratio=rate / TARGET_PER_SECOND, limit=1.0,
                       higher_is_better=True, backend=backend,
                       details={"seconds": round(sync_seconds, 3), "pages": result.pages,
                                "cpu_seconds": round(cpu_seconds, 3),
                                "synced": result.synced, "created_in_emulator": accounts,
                                "fill_seconds": round(fill_seconds, 1)}),
                Figure(BENCHMARK, "emulator alone: page GET /v1/accounts", listed /
                       emulator_seconds, "accounts/s", "(the emulator's own cost)",
                       backend=backend, details={"seconds": round(emulator_seconds, 3)}),
                Figure(BENCHMARK, "our side: sync minus emulator paging", synced / ours,
                       "accounts/s", "(informative)", backend=backend,
                       details={"seconds": round(ours, 3),
                                "share_of_sync_time": round(ours / sync_seconds, 3)}),
            ]
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sync", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "all"], default="all")
    parser.add_argument("--accounts", type=int, default=10_000)
    args = parser.parse_args(argv)
    report(measure(chosen_backends(args.backend), accounts=args.accounts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
