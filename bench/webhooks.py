"""Webhooks end to end: N signed events through the real companion app, events per second.

``python -m bench.webhooks [--backend sqlite|postgresql|all] [--events 10000] [--concurrency 16]``

The companion runs in its own uvicorn process against an emulator in another, the load
generator posts each event once over keep-alive connections (Stripe delivers concurrently).
The mix is what a marketplace receives: ``account.updated`` for connected freelancers (re-read
from Stripe, mirror upsert) and for accounts that are not ours (ignored), ``transfer.created`` /
``transfer.updated`` for paid payouts (re-read the transfer, compare with the ledger),
``account.application.deauthorized`` for accounts still connected (a stale event: Stripe is
asked) and not attached, ``balance.available``, and about 10 % duplicate deliveries.

Two figures: intake only (the same number of ``balance.available`` events: verify, store,
claim, finish, with a no-op handler — the fixed cost of any event) and end to end (the mix).
Afterwards every stored event must be processed or ignored (none failed or left received).
No target is given by the issue; the ratio is end-to-end/intake.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.common import (
    BENCH_CONNECT_WEBHOOK_SECRET,
    BENCH_WEBHOOK_SECRET,
    Figure,
    bench_environment,
    bench_settings,
    chosen_backends,
    emulator_process,
    fresh_database,
    report,
)
from bench.companion import _server, balance_events, signed_event_request
from bench.loadgen import run_load
from bench.payouts import _operator_run, _prepare

BENCHMARK = "webhooks"
PLATFORM_PATH = "/api/v1/stripe/webhooks"
CONNECT_PATH = "/api/v1/stripe/connect-webhooks"
#: Accounts on the emulator that are not attached to any freelancer.
STRANGERS = 8
PAID_PAYOUTS = 16


class SignedAtSend(Sequence[bytes]):
    """Requests signed when the load generator takes them: a run longer than Stripe's 300 s
    tolerance must not turn into a run of stale-signature refusals."""

    def __init__(self, port: int, items: list[tuple[str, dict[str, Any]]]) -> None:
        self.port = port
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> bytes:  # type: ignore[override]
        path, event = self.items[index]
        secret = BENCH_CONNECT_WEBHOOK_SECRET if path == CONNECT_PATH else BENCH_WEBHOOK_SECRET
        return signed_event_request(self.port, path, event, secret)


def _event(event_id: str, kind: str, obj: dict[str, Any], account: str | None = None
           ) -> dict[str, Any]:
    event: dict[str, Any] = {"id": event_id, "object": "event", "type": kind,
                             "api_version": "2025-01-27.acacia", "created": int(time.time()),
                             "livemode": False, "pending_webhooks": 1, "data": {"object": obj}}
    if account:
        event["account"] = account
    return event


def event_mix(count: int, *, ours: list[str], strangers: list[str], transfers: list[str],
              seed: int = 7) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, int]]:
    """``count`` deliveries (about 10 % of them duplicates) and how many of each type."""
    rng = random.Random(seed)
    originals: list[tuple[str, dict[str, Any]]] = []
    unique = count - count // 10
    for i in range(unique):
        roll = rng.random()
        event_id = f"evt_wh{i:08d}"
        if roll < 0.40:
            account = rng.choice(ours)
            originals.append((CONNECT_PATH, _event(event_id, "account.updated",
                                                   {"object": "account", "id": account}, account)))
        elif roll < 0.50:
            account = rng.choice(strangers)
            originals.append((CONNECT_PATH, _event(event_id, "account.updated",
                                                   {"object": "account", "id": account}, account)))
        elif roll < 0.75:
            kind = rng.choice(["transfer.created", "transfer.updated"])
            originals.append((PLATFORM_PATH, _event(
                event_id, kind, {"object": "transfer", "id": rng.choice(transfers)})))
        elif roll < 0.80:
            account = rng.choice(ours + strangers)
            originals.append((CONNECT_PATH, _event(
                event_id, "account.application.deauthorized",
                {"object": "application", "id": "ca_emulator_connectops"}, account)))
        else:
            originals.append((PLATFORM_PATH, _event(
                event_id, "balance.available",
                {"object": "balance", "available": [{"amount": i, "currency": "usd"}]})))
    deliveries = list(originals)
    for _ in range(count - unique):
        # A redelivery arrives a little after its original, as Stripe's retries do.
        position = rng.randrange(len(originals))
        deliveries.insert(min(len(deliveries), position + rng.randrange(16, 400)),
                          originals[position])
    kinds: dict[str, int] = {"duplicates": count - unique}
    for _path, event in originals:
        kinds[event["type"]] = kinds.get(event["type"], 0) + 1
    return deliveries, kinds


def _stored_statuses(url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from lib.db import make_engine
    from lib.models import WebhookEvent

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(WebhookEvent.status, func.count())
                                .group_by(WebhookEvent.status)).all()
    finally:
        engine.dispose()
    return {str(status): int(n) for status, n in rows}


def measure(backend: str, *, events: int, concurrency: int) -> list[Figure]:
    """Intake-only and end-to-end events/s on one backend."""
    from sqlalchemy import select

    from lib.db import make_engine
    from lib.models import Payout
    from lib.stripe_gateway import StripeGateway

    with emulator_process() as emulator, fresh_database(backend, "webhooks") as url:
        base = emulator.base_url  # type: ignore[attr-defined]
        settings = bench_settings(url, base, payout_approval_threshold_minor=10**12)
        freelancer_ids = _prepare(emulator, url, settings)
        paid, problems = _operator_run(url, settings, 0, freelancer_ids, PAID_PAYOUTS)
        if problems:
            raise SystemExit(f"bench.webhooks: set-up payouts failed: {problems[0]}")
        gateway = StripeGateway(settings)
        strangers = [gateway.create_express_account(
            email=f"stranger{i}@example.com", country="US", metadata={},
            idempotency_key=f"bench-stranger-{i}-{time.time_ns()}").id for i in range(STRANGERS)]
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                transfers = [str(t) for t in conn.scalars(select(Payout.stripe_transfer_id))
                             if t]
                ours = [str(a) for a in conn.scalars(select(Payout.stripe_account_id).distinct())]
        finally:
            engine.dispose()
        deliveries, kinds = event_mix(events, ours=ours, strangers=strangers, transfers=transfers)
        env = bench_environment(url, base)
        with _server("bench.companion:companion_app", env, "/healthz") as port:
            intake_items = [(PLATFORM_PATH, e) for e in balance_events(events, prefix="intake")]
            intake = run_load(port, SignedAtSend(port, intake_items), concurrency=concurrency,
                              cycle=False)
            before = _stored_statuses(url)
            end_to_end = run_load(port, SignedAtSend(port, deliveries), concurrency=concurrency,
                                  cycle=False)
        after = _stored_statuses(url)

    unsettled = {k: v for k, v in after.items() if k not in ("processed", "ignored")}
    if unsettled:
        sys.stderr.write(f"bench.webhooks: events not settled after the run: {unsettled}\n")
    stored_now = sum(after.values()) - sum(before.values())
    intake_rate = intake.statuses.get(200, 0) / intake.seconds
    e2e_rate = end_to_end.statuses.get(200, 0) / end_to_end.seconds
    return [
        Figure(BENCHMARK, f"intake only: {events} balance.available", intake_rate, "events/s",
               "(no target)", backend=backend,
               details={"seconds": round(intake.seconds, 3), "statuses": intake.statuses,
                        "transport_errors": intake.errors, "concurrency": concurrency}),
        Figure(BENCHMARK, f"end to end: {events} mixed events", e2e_rate, "events/s",
               "(no target) ratio = e2e/intake", ratio=e2e_rate / intake_rate if intake_rate
               else None, backend=backend,
               details={"seconds": round(end_to_end.seconds, 3), "statuses": end_to_end.statuses,
                        "transport_errors": end_to_end.errors, "mix": kinds,
                        "stored_distinct": stored_now, "stored_by_status": after,
                        "unsettled": unsettled, "concurrency": concurrency}),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "all"], default="all")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    for backend in chosen_backends(args.backend):
        report(measure(backend, events=args.events, concurrency=args.concurrency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
