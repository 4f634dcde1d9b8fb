"""Companion service throughput: requests/s per endpoint against a bare Starlette floor.

``python -m bench.companion [--backend sqlite|postgresql|all] [--duration 5] [--concurrency 16]``

Both apps run in their own uvicorn process (one worker, the same flags), the load generator
(:mod:`bench.loadgen`) in this one, so client and server sit on different cores. The floor is
the cost of uvicorn + Starlette answering a small JSON document; the target is that each real
endpoint keeps at least half of it. The floor is measured before and after the endpoints and
averaged, so a neighbour's load on this shared machine moves both sides alike.

Endpoints: ``/healthz`` (one ``SELECT 1``), the OAuth callback with an unknown state (a
consume attempt, then the ``invalid_state`` redirect), the freelancer status endpoint (a valid
token, a mirror read) and platform webhook intake (distinct ``account.updated`` events, each
signed with a real HMAC: verify, one INSERT, one commit — since issue 18 the worker processes
them; :mod:`bench.webhooks` measures that).

Webhook intake has its own floor (issue 18): a bare Starlette endpoint doing the same database
work, one INSERT of the posted event and one commit, in the same kind of thread. Its target is
≥ 70 % of that floor: the intake may add signature verification and routing, nothing else.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.common import (
    BENCH_CONNECT_WEBHOOK_SECRET,
    BENCH_JWT_SECRET,
    LOOPBACK,
    Figure,
    bench_environment,
    child_process,
    chosen_backends,
    free_port,
    fresh_database,
    report,
)
from bench.loadgen import LoadResult, build_request, run_load

if TYPE_CHECKING:  # the service is imported by the factory, in uvicorn's process
    from fastapi import FastAPI

BENCHMARK = "companion"
TARGET = "≥ 50 % of the floor's rps"
INTAKE_TARGET = "≥ 70 % of the insert floor"
#: uvicorn flags shared by the floor and the service: the only difference is the app.
UVICORN_FLAGS = ["--host", LOOPBACK, "--workers", "1", "--log-level", "warning",
                 "--no-access-log", "--no-server-header", "--proxy-headers", "--factory"]
#: Upper bound of webhook intake rate used to pre-sign enough distinct events for a run.
MAX_EXPECTED_WEBHOOK_RPS = 4000


# ---- the two apps uvicorn serves (factories, as ``python -m server`` builds its app) --------

def companion_app() -> FastAPI:
    """The real companion service, configured from the environment."""
    from lib.settings import load_settings
    from server.app import create_app

    return create_app(load_settings())


async def _floor_get(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def _floor_post(request: Request) -> JSONResponse:
    # Reads the body like the webhook endpoint does, so the POST floor pays for it too.
    body = await request.body()
    return JSONResponse({"received": True, "bytes": len(body)})


def _insert_floor() -> Callable[[Request], Awaitable[JSONResponse]]:
    """``POST /floor/insert``: one INSERT of the posted event and one commit, nothing else."""
    import os
    import uuid

    from lib.db import make_engine, utcnow, write_engine
    from lib.models import WebhookEvent
    from server.blocking import run_blocking

    engine = write_engine(make_engine(os.environ["DATABASE_URL"]))
    table = WebhookEvent.__table__

    statement = table.insert()  # values as parameters: compiled once, cached

    def insert(body: bytes) -> None:
        now = utcnow()
        with engine.begin() as connection:
            connection.execute(statement, {
                "stripe_event_id": f"evt_floor{uuid.uuid4().hex}", "type": "floor",
                "endpoint": "platform", "livemode": False, "received_at": now,
                "next_attempt_at": now, "status": "ignored", "attempts": 0,
                "payload": json.loads(body)})

    async def endpoint(request: Request) -> JSONResponse:
        body = await request.body()
        await run_blocking(insert, body)
        return JSONResponse({"received": True, "duplicate": False, "ignored": False})

    return endpoint


def floor_app() -> Starlette:
    """Bare Starlette endpoints: what uvicorn + Starlette cost with no work behind them, and
    with exactly the webhook intake's database work behind them."""
    return Starlette(routes=[Route("/floor", _floor_get, methods=["GET"]),
                             Route("/floor", _floor_post, methods=["POST"]),
                             Route("/floor/insert", _insert_floor(), methods=["POST"])])


# ---- data and requests ------------------------------------------------------------------------

def _seed(database_url: str) -> int:
    """One freelancer connected to an active mirrored account; returns the freelancer id."""
    from lib.accounts import upsert_account
    from lib.db import make_engine, make_session_factory
    from lib.freelancers import create_freelancer

    account: dict[str, Any] = {
        "id": "acct_benchcompanion01", "object": "account", "type": "express", "country": "US",
        "email": "bench@example.com", "default_currency": "usd", "charges_enabled": True,
        "payouts_enabled": True, "details_submitted": True, "livemode": False,
        "capabilities": {"transfers": "active"}, "created": int(time.time()),
        "requirements": {"currently_due": [], "eventually_due": [], "past_due": [],
                         "pending_verification": [], "errors": [], "disabled_reason": None},
    }
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine).begin() as session:
            freelancer = create_freelancer(session, name="Bench Freelancer",
                                           email="bench@example.com", country="US")
            upsert_account(session, account=account)
            freelancer.stripe_account_id = account["id"]
            freelancer.connection_method = "onboarding"
            freelancer.connected_at = datetime.now(UTC)
            session.flush()
            return freelancer.id
    finally:
        engine.dispose()


def signed_event_request(port: int, path: str, event: dict[str, object], secret: str) -> bytes:
    """One webhook POST signed like Stripe signs it: HMAC-SHA256 of ``"{t}.{body}"``."""
    body = json.dumps(event, separators=(",", ":")).encode()
    stamp = int(time.time())
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return build_request("POST", path, port=port, body=body, headers={
        "Content-Type": "application/json", "Stripe-Signature": f"t={stamp},v1={digest}",
    })


def account_events(count: int, *, prefix: str,
                   account: str = "acct_benchcompanion01") -> Iterator[dict[str, object]]:
    """Distinct Connect ``account.updated`` events: stored ``received`` for the worker."""
    created = int(time.time())
    for i in range(count):
        yield {"id": f"evt_{prefix}{i:08d}", "object": "event", "type": "account.updated",
               "api_version": "2025-01-27.acacia", "created": created, "livemode": False,
               "account": account, "pending_webhooks": 1,
               "data": {"object": {"object": "account", "id": account}}}


def balance_events(count: int, *, prefix: str) -> Iterator[dict[str, object]]:
    """Distinct platform ``balance.available`` events (recorded, no Stripe call)."""
    created = int(time.time())
    for i in range(count):
        yield {"id": f"evt_{prefix}{i:08d}", "object": "event", "type": "balance.available",
               "api_version": "2025-01-27.acacia", "created": created, "livemode": False,
               "pending_webhooks": 1,
               "data": {"object": {"object": "balance",
                                   "available": [{"amount": 1000 + i, "currency": "usd"}]}}}


@contextmanager
def _server(factory: str, env: dict[str, str], ready_path: str) -> Iterator[int]:
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", factory, "--port", str(port), *UVICORN_FLAGS]
    with child_process(args, env=env, ready_url=f"http://{LOOPBACK}:{port}{ready_path}"):
        yield port


def _good(result: LoadResult, expected: int) -> float:
    """Requests per second answered with the expected status (anything else is not served)."""
    return result.statuses.get(expected, 0) / result.seconds if result.seconds else 0.0


def measure(backend: str, *, duration: float, concurrency: int) -> list[Figure]:
    """Floor and the four endpoints on one backend."""
    from lib.roles import Role
    from lib.tokens import issue_token

    figures: list[Figure] = []
    with fresh_database(backend, "companion") as url:
        freelancer_id = _seed(url)
        env = bench_environment(url)
        token = issue_token(secret=BENCH_JWT_SECRET, subject=str(freelancer_id),
                            role=Role.FREELANCER, lifetime=timedelta(hours=2))
        with _server("bench.companion:floor_app", env, "/floor") as floor_port, \
                _server("bench.companion:companion_app", env, "/healthz") as port:
            floor_get = [build_request("GET", "/floor", port=floor_port)]
            sample = next(account_events(1, prefix="size"))
            body_size = len(signed_event_request(port, "/x", sample,
                                                 BENCH_CONNECT_WEBHOOK_SECRET))
            floor_post = [build_request("POST", "/floor", port=floor_port,
                                        headers={"Content-Type": "application/json"},
                                        body=b"x" * body_size)]
            floor_insert = [build_request("POST", "/floor/insert", port=floor_port,
                                          headers={"Content-Type": "application/json"},
                                          body=json.dumps(sample, separators=(",", ":")).encode())]
            endpoints: list[tuple[str, list[bytes], int, bool, str]] = [
                ("/healthz", [build_request("GET", "/healthz", port=port)], 200, True, "GET"),
                ("callback invalid_state", [build_request(
                    "GET", "/api/v1/freelancer/stripe-connect-callback?state=unknown-state&code=ac_x",
                    port=port)], 302, True, "GET"),
                ("freelancer status", [build_request(
                    "GET", "/api/v1/freelancer/stripe-connect-status", port=port,
                    headers={"Authorization": f"Bearer {token}"})], 200, True, "GET"),
                ("webhook intake (signed)", [
                    signed_event_request(port, "/api/v1/stripe/connect-webhooks", event,
                                         BENCH_CONNECT_WEBHOOK_SECRET)
                    for event in account_events(
                        max(200, int(duration * MAX_EXPECTED_WEBHOOK_RPS)), prefix="cmp")
                ], 200, False, "INSERT"),
            ]
            # Warm both servers (imports, connection pools) before anything is timed.
            run_load(floor_port, floor_get, concurrency=concurrency, total=concurrency * 20)
            run_load(floor_port, floor_insert, concurrency=concurrency, total=concurrency * 20)
            run_load(port, endpoints[0][1], concurrency=concurrency, total=concurrency * 20)

            floor_requests = {"GET": floor_get, "POST": floor_post, "INSERT": floor_insert}
            floors: dict[str, list[float]] = {kind: [] for kind in floor_requests}

            def measure_floors() -> None:
                for kind, requests in floor_requests.items():
                    floors[kind].append(_good(run_load(floor_port, requests,
                                                       concurrency=concurrency,
                                                       duration=duration), 200))

            measure_floors()
            measured: list[tuple[str, LoadResult, int, str]] = []
            for name, requests, expected, cycle, floor_kind in endpoints:
                result = run_load(port, requests, concurrency=concurrency, duration=duration,
                                  cycle=cycle)
                measured.append((name, result, expected, floor_kind))
            measure_floors()

    floor_rps = {kind: sum(values) / len(values) for kind, values in floors.items()}
    floor_names = {"GET": "floor: bare Starlette GET", "POST": "floor: bare Starlette POST",
                   "INSERT": "floor: Starlette POST + one INSERT and commit"}
    for kind, value in floor_rps.items():
        figures.append(Figure(BENCHMARK, floor_names[kind], value, "req/s",
                              "the floor", backend=backend,
                              details={"runs": floors[kind], "concurrency": concurrency}))
    for name, result, expected, floor_kind in measured:
        rps = _good(result, expected)
        floor = floor_rps[floor_kind]
        intake = floor_kind == "INSERT"
        figures.append(Figure(
            BENCHMARK, name, rps, "req/s", INTAKE_TARGET if intake else TARGET,
            ratio=rps / floor if floor else None, limit=0.7 if intake else 0.5,
            higher_is_better=True, backend=backend,
            details={"requests": result.requests, "seconds": round(result.seconds, 3),
                     "statuses": result.statuses, "transport_errors": result.errors,
                     "expected_status": expected, "concurrency": concurrency},
        ))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.companion", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "all"], default="all")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive connections")
    args = parser.parse_args(argv)
    for backend in chosen_backends(args.backend):
        report(measure(backend, duration=args.duration, concurrency=args.concurrency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
