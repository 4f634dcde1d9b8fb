"""Webhooks end to end: signed events through the real companion and ``python -m lib.worker``.

``python -m bench.webhooks [--backend sqlite|postgresql|all] [--events 10000] [--concurrency 16]
[--paced-seconds 10]``

The companion runs in its own uvicorn process against an emulator in another, the load
generator posts each event once over keep-alive connections (Stripe delivers concurrently).
The mix is what a marketplace receives: ``account.updated`` for connected freelancers (re-read
from Stripe, mirror upsert) and for accounts that are not ours (ignored), ``transfer.created`` /
``transfer.updated`` for paid payouts (re-read the transfer, compare with the ledger),
``account.application.deauthorized`` for accounts still connected (a stale event: Stripe is
asked) and not attached, ``balance.available``, and about 10 % duplicate deliveries.

Figures (issue 18 moved processing out of the request into worker processes):
- intake only: the same number of ``balance.available`` events, closed loop (verify, store);
- intake latency at 100 events/s, p50 and p99: the mix sent open loop at a steady rate (each
  latency counted from when the event was due, so queueing is not hidden) while workers
  process behind the intake;
- processing lag, p50 and p99: ``processed_at - received_at`` of those events, with one
  worker, and with two on PostgreSQL (ratio = two/one); and the processing rate the workers
  reached over that run (events processed per second from the first stored to the last
  processed: below 100/s, the workers fell behind and the lag is queueing);
- end to end: the mix sent as fast as the intake takes it, per second until the one worker
  has processed every event (ratio = end-to-end/intake).
Afterwards every stored event must be processed or ignored (none failed or left received).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypedDict

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
from bench.loadgen import PacedResult, run_load, run_paced
from bench.payouts import _operator_run, _prepare

BENCHMARK = "webhooks"
PLATFORM_PATH = "/api/v1/stripe/webhooks"
CONNECT_PATH = "/api/v1/stripe/connect-webhooks"
#: Accounts on the emulator that are not attached to any freelancer.
STRANGERS = 8
PAID_PAYOUTS = 16
#: The steady delivery rate of the latency and lag runs (the issue's 100 events/s).
PACED_RATE = 100.0


class World(TypedDict):
    """What the events are about: our accounts, strangers' accounts, our transfers."""

    ours: list[str]
    strangers: list[str]
    transfers: list[str]


class SignedAtSend(Sequence[bytes]):
    """Requests signed when the load generator takes them: a run longer than Stripe's 300 s
    tolerance must not turn into a run of stale-signature refusals."""

    def __init__(self, port: int, items: list[tuple[str, dict[str, Any]]]) -> None:
        self.port = port
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    # Only single items: the load generator takes one request at a time, and a slice would
    # sign ahead of sending (Sequence's slice overload is deliberately not offered).
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
              seed: int = 7, prefix: str = "wh",
              ) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, int]]:
    """``count`` deliveries (about 10 % of them duplicates) and how many of each type."""
    rng = random.Random(seed)
    originals: list[tuple[str, dict[str, Any]]] = []
    unique = count - count // 10
    for i in range(unique):
        roll = rng.random()
        event_id = f"evt_{prefix}{i:08d}"
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


def _wait_settled(url: str, timeout: float = 600.0) -> float:
    """Wait until no stored event is received or being processed; returns when (perf time)."""
    deadline = time.perf_counter() + timeout
    while True:
        statuses = _stored_statuses(url)
        if not statuses.get("received") and not statuses.get("processing"):
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise SystemExit(f"bench.webhooks: events still unprocessed after {timeout:.0f}s: "
                             f"{statuses}")
        time.sleep(0.05)


def _processing_rate(url: str, prefix: str) -> float:
    """Events the workers processed per second: those of ``prefix`` over the time from the
    first one stored to the last one processed (what the workers keep up with, or not)."""
    from sqlalchemy import func, select

    from lib.db import make_engine
    from lib.models import WebhookEvent
    from lib.webhooks import RECORDED_ONLY

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            count, first, last = conn.execute(
                select(func.count(), func.min(WebhookEvent.received_at),
                       func.max(WebhookEvent.processed_at))
                .where(WebhookEvent.stripe_event_id.like(f"evt_{prefix}%"),
                       WebhookEvent.type.not_in(sorted(RECORDED_ONLY)))).one()
    finally:
        engine.dispose()
    if not count or first is None or last is None:
        return 0.0
    first, last = (moment if isinstance(moment, datetime) else datetime.fromisoformat(moment)
                   for moment in (first, last))
    seconds = (last - first).total_seconds()
    return count / seconds if seconds > 0 else 0.0


def _lags(url: str, prefix: str) -> list[float]:
    """Seconds from stored to processed of the events whose id starts with ``prefix``, except
    the types stored already processed (they never wait for a worker)."""
    from sqlalchemy import select

    from lib.db import make_engine
    from lib.models import WebhookEvent
    from lib.webhooks import RECORDED_ONLY

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(WebhookEvent.received_at, WebhookEvent.processed_at)
                                .where(WebhookEvent.stripe_event_id.like(f"evt_{prefix}%"),
                                       WebhookEvent.type.not_in(sorted(RECORDED_ONLY)),
                                       WebhookEvent.processed_at.is_not(None))).all()
    finally:
        engine.dispose()
    lags = []
    for received, done in rows:
        assert done is not None  # the WHERE selects processed events only
        lags.append((done - received).total_seconds())
    return sorted(lags)


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, max(0, round(fraction * len(values)) - 1))]


@contextmanager
def _workers(count: int, env: dict[str, str], url: str) -> Iterator[None]:
    """``count`` ``python -m lib.worker --no-jobs`` processes (default settings), ready when
    each has written a heartbeat; stopped with SIGTERM (they finish what they hold)."""
    from sqlalchemy import func, select

    from lib.db import make_engine
    from lib.models import WorkerHeartbeat

    children = [subprocess.Popen([sys.executable, "-m", "lib.worker", "--no-jobs"], env=env,
                                 start_new_session=True, stdout=subprocess.DEVNULL)
                for _ in range(count)]
    engine = make_engine(url)
    try:
        deadline = time.monotonic() + 60
        pids = [child.pid for child in children]
        while True:
            with engine.connect() as conn:
                ready = conn.scalar(select(func.count()).select_from(WorkerHeartbeat).where(
                    WorkerHeartbeat.pid.in_(pids), WorkerHeartbeat.stopped_at.is_(None)))
            if ready == count:
                break
            if time.monotonic() > deadline or any(c.poll() is not None for c in children):
                raise SystemExit("bench.webhooks: a worker did not start")
            time.sleep(0.1)
        yield
    finally:
        engine.dispose()
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


def _paced_run(port: int, url: str, count: int, prefix: str, world: World,
               rate: float) -> tuple[PacedResult, list[float], float]:
    deliveries, _kinds = event_mix(count, prefix=prefix, seed=11, **world)
    paced = run_paced(port, SignedAtSend(port, deliveries), rate=rate, connections=8)
    _wait_settled(url)
    return paced, _lags(url, prefix), _processing_rate(url, prefix)


def measure(backend: str, *, events: int, concurrency: int,
            paced_seconds: float = 10.0, rate: float = PACED_RATE) -> list[Figure]:
    """Intake, intake latency at a steady rate, processing lag and end to end on one backend."""
    from sqlalchemy import select

    from lib.db import make_engine
    from lib.models import Payout
    from lib.stripe_gateway import StripeGateway

    worker_counts = (1, 2) if backend == "postgresql" else (1,)
    paced_count = max(20, int(rate * paced_seconds))
    lag_runs: dict[int, tuple[PacedResult, list[float], float]] = {}
    with emulator_process() as emulator, fresh_database(backend, "webhooks") as url:
        base = emulator.base_url
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
        world: World = {"ours": ours, "strangers": strangers, "transfers": transfers}
        deliveries, kinds = event_mix(events, **world)
        env = bench_environment(url, base)
        with _server("bench.companion:companion_app", env, "/healthz") as port:
            intake_items = [(PLATFORM_PATH, e) for e in balance_events(events, prefix="intake")]
            intake = run_load(port, SignedAtSend(port, intake_items), concurrency=concurrency,
                              cycle=False)
            for count in worker_counts:
                with _workers(count, env, url):
                    lag_runs[count] = _paced_run(port, url, paced_count,
                                                 f"lag{count}w{int(rate)}r", world, rate)
            before = _stored_statuses(url)
            with _workers(1, env, url):
                started = time.perf_counter()
                end_to_end = run_load(port, SignedAtSend(port, deliveries),
                                      concurrency=concurrency, cycle=False)
                settled_at = _wait_settled(url)
        after = _stored_statuses(url)

    unsettled = {k: v for k, v in after.items() if k not in ("processed", "ignored")}
    if unsettled:
        sys.stderr.write(f"bench.webhooks: events not settled after the run: {unsettled}\n")
    stored_now = sum(after.values()) - sum(before.values())
    intake_rate = intake.statuses.get(200, 0) / intake.seconds
    e2e_rate = stored_now / (settled_at - started) if settled_at > started else 0.0
    figures = [
        Figure(BENCHMARK, f"intake only: {events} balance.available", intake_rate, "events/s",
               "(no target)", backend=backend,
               details={"seconds": round(intake.seconds, 3), "statuses": intake.statuses,
                        "transport_errors": intake.errors, "concurrency": concurrency}),
    ]
    one_worker_lag = _percentile(lag_runs[1][1], 0.5)
    one_worker_rate = lag_runs[1][2]
    for count, (paced, lags, processed_rate) in lag_runs.items():
        workers = f"{count} worker{'s' if count > 1 else ''}"
        at = f"at {rate:g} events/s, {workers}"
        details = {"events": paced_count, "rate": rate, "statuses": paced.statuses,
                   "transport_errors": paced.errors, "workers": count}
        figures += [
            Figure(BENCHMARK, f"intake p50 {at}",
                   paced.percentile(0.5) * 1000, "ms", "(no target)", backend=backend,
                   details=details),
            Figure(BENCHMARK, f"intake p99 {at}",
                   paced.percentile(0.99) * 1000, "ms", "(no target)", backend=backend,
                   details=details),
            Figure(BENCHMARK, f"processing lag p50 {at}", _percentile(lags, 0.5) * 1000,
                   "ms", "(no target) ratio = lag/1-worker lag",
                   ratio=_percentile(lags, 0.5) / one_worker_lag if one_worker_lag else None,
                   backend=backend, details={**details, "processed": len(lags)}),
            Figure(BENCHMARK, f"processing lag p99 {at}", _percentile(lags, 0.99) * 1000,
                   "ms", "(no target)", backend=backend,
                   details={**details, "processed": len(lags)}),
            Figure(BENCHMARK, f"processing rate {at}", processed_rate, "events/s",
                   "(no target) ratio = rate/1-worker rate",
                   ratio=processed_rate / one_worker_rate if one_worker_rate else None,
                   backend=backend,
                   details=details),
        ]
    figures.append(Figure(
        BENCHMARK, f"end to end: {events} mixed events", e2e_rate, "events/s",
        "(no target) ratio = e2e/intake", ratio=e2e_rate / intake_rate if intake_rate else None,
        backend=backend,
        details={"seconds": round(settled_at - started, 3), "statuses": end_to_end.statuses,
                 "transport_errors": end_to_end.errors, "mix": kinds, "workers": 1,
                 "stored_distinct": stored_now, "stored_by_status": after,
                 "unsettled": unsettled, "concurrency": concurrency}))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "all"], default="all")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--paced-seconds", type=float, default=10.0,
                        help="length of each steady-rate latency and lag run")
    parser.add_argument("--rate", type=float, default=PACED_RATE,
                        help="events per second of the steady-rate runs (the issue's 100)")
    args = parser.parse_args(argv)
    for backend in chosen_backends(args.backend):
        report(measure(backend, events=args.events, concurrency=args.concurrency,
                       paced_seconds=args.paced_seconds, rate=args.rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
