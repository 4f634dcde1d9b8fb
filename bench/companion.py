"""Companion service throughput: requests/s per endpoint against a bare Starlette floor.

``python -m bench.companion [--backend sqlite|postgresql|all] [--duration 5] [--concurrency 16]``

Both apps run in their own uvicorn process (one worker, the same flags), the load generator
(:mod:`bench.loadgen`) in this one, so client and server sit on different cores. The floor is
the cost of uvicorn + Starlette answering a small JSON document; the target is that each real
endpoint keeps at least half of it. The floor is measured before and after the endpoints and
averaged, so a neighbour's load on this shared machine moves both sides alike.

Endpoints: ``/healthz`` (one ``SELECT 1``), the OAuth callback with an unknown state (a
consume attempt, then the ``invalid_state`` redirect), the freelancer status endpoint (a valid
token, a mirror read) and platform webhook intake (distinct ``balance.available`` events, each
signed with a real HMAC: verify, store, claim, finish — the handler itself is a no-op, so this
is the intake cost; :mod:`bench.webhooks` measures processing).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.common import (
    BENCH_JWT_SECRET,
    BENCH_WEBHOOK_SECRET,
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

BENCHMARK = "companion"
TARGET = "≥ 50 % of the floor's rps"
#: uvicorn flags shared by the floor and the service: the only difference is the app.
UVICORN_FLAGS = ["--host", LOOPBACK, "--workers", "1", "--log-level", "warning",
                 "--no-access-log", "--no-server-header", "--proxy-headers", "--factory"]
#: Upper bound of webhook intake rate used to pre-sign enough distinct events for a run.
MAX_EXPECTED_WEBHOOK_RPS = 4000


# ---- the two apps uvicorn serves (factories, as ``python -m server`` builds its app) --------

def companion_app():  # type: ignore[no-untyped-def]
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


def floor_app() -> Starlette:
    """A bare Starlette endpoint: what uvicorn + Starlette cost with no work behind them."""
    return Starlette(routes=[Route("/floor", _floor_get, methods=["GET"]),
                             Route("/floor", _floor_post, methods=["POST"])])


# ---- data and requests ------------------------------------------------------------------------

def _seed(database_url: str) -> int:
    """One freelancer connected to an active mirrored account; returns the freelancer id."""
    from lib.accounts import upsert_account
    from lib.db import make_engine, make_session_factory
    from lib.freelancers import create_freelancer

    account = {
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
            body_size = len(signed_event_request(
                port, "/x", next(balance_events(1, prefix="size")), BENCH_WEBHOOK_SECRET))
            floor_post = [build_request("POST", "/floor", port=floor_port,
                                        headers={"Content-Type": "application/json"},
                                        body=b"x" * body_size)]
            endpoints: list[tuple[str, list[bytes], int, bool, bool]] = [
                ("/healthz", [build_request("GET", "/healthz", port=port)], 200, True, False),
                ("callback invalid_state", [build_request(
                    "GET", "/api/v1/freelancer/stripe-connect-callback?state=unknown-state&code=ac_x",
                    port=port)], 302, True, False),
                ("freelancer status", [build_request(
                    "GET", "/api/v1/freelancer/stripe-connect-status", port=port,
                    headers={"Authorization": f"Bearer {token}"})], 200, True, False),
                ("webhook intake (signed)", [
                    signed_event_request(port, "/api/v1/stripe/webhooks", event,
                                         BENCH_WEBHOOK_SECRET)
                    for event in balance_events(
                        max(200, int(duration * MAX_EXPECTED_WEBHOOK_RPS)), prefix="cmp")
                ], 200, False, True),
            ]
            # Warm both servers (imports, connection pools) before anything is timed.
            run_load(floor_port, floor_get, concurrency=concurrency, total=concurrency * 20)
            run_load(port, endpoints[0][1], concurrency=concurrency, total=concurrency * 20)

            floors = {"GET": [], "POST": []}  # type: dict[str, list[float]]
            floors["GET"].append(_good(run_load(floor_port, floor_get, concurrency=concurrency,
                                                duration=duration), 200))
            floors["POST"].append(_good(run_load(floor_port, floor_post, concurrency=concurrency,
                                                 duration=duration), 200))
            measured: list[tuple[str, LoadResult, int, bool]] = []
            for name, requests, expected, cycle, is_post in endpoints:
                result = run_load(port, requests, concurrency=concurrency, duration=duration,
                                  cycle=cycle)
                measured.append((name, result, expected, is_post))
            floors["GET"].append(_good(run_load(floor_port, floor_get, concurrency=concurrency,
                                                duration=duration), 200))
            floors["POST"].append(_good(run_load(floor_port, floor_post, concurrency=concurrency,
                                                 duration=duration), 200))

    floor_rps = {kind: sum(values) / len(values) for kind, values in floors.items()}
    for kind, value in floor_rps.items():
        figures.append(Figure(BENCHMARK, f"floor: bare Starlette {kind}", value, "req/s",
                              "the floor", backend=backend,
                              details={"runs": floors[kind], "concurrency": concurrency}))
    for name, result, expected, is_post in measured:
        rps = _good(result, expected)
        floor = floor_rps["POST" if is_post else "GET"]
        figures.append(Figure(
            BENCHMARK, name, rps, "req/s", TARGET, ratio=rps / floor if floor else None,
            limit=0.5, higher_is_better=True, backend=backend,
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
