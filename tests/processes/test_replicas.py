"""Two companion replicas and two payout workers on one PostgreSQL database (issue 8).

Each replica is its own ``python -m server`` process with its own connection pool; both have the
same settings and the same public ``BACKEND_URL`` (the load balancer's address), as the README's
"Running several replicas" asks. The test plays the load balancer by choosing which replica
gets each request. What must hold with nothing shared but the database:

- an OAuth state issued through one replica is consumed through the other, exactly once;
- one webhook event delivered to both replicas at the same moment is stored once and
  processed once by one of two ``python -m lib.worker`` processes;
- one payout executed at the same moment by both replicas and two ``lib.payouts`` workers is
  claimed by one of them: one Stripe transfer, one settled row.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import stripe
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from emulator.page_driver import consent
from emulator.testing import EmulatorHandle
from lib.freelancers import create_freelancer
from lib.models import AuditLog, OAuthState, WebhookEvent
from lib.payouts.execution import execute_payout
from lib.payouts.ledger import request_payout
from lib.roles import Operator, Role
from lib.stripe_gateway import StripeGateway
from scripts.processes import wait_until
from tests.conftest import requires_postgresql
from tests.factories import TEST_WEBHOOK_SECRET, make_settings
from tests.processes.conftest import (
    Companion,
    Processes,
    admin_headers,
    freelancer_headers,
    only_row,
    only_transfer,
    payable_freelancer,
    payout_body,
    transfers,
)
from tests.support.servers import HOST, free_port

logger = logging.getLogger(__name__)
pytestmark = [requires_postgresql(), pytest.mark.slow]

FREELANCER_API = "/api/v1/freelancer"
PAYOUTS = "/api/v1/admin/payouts"
ADMIN = Operator("admin", frozenset({Role.ADMIN}))

#: A payout worker: what ``python -m lib.payouts retry --operator finance`` runs (the sweeper
#: ``retry_unsettled`` with the users file's operator), set up and connected *before* a start
#: line shared with the other racers, so every racer reaches the database in the same few
#: milliseconds. It acts as ``finance`` so the audit log shows whether a worker won.
WORKER = """
import pathlib, sys, time
from lib.db import make_engine, make_session_factory
from lib.payouts.__main__ import operator_from_users_file
from lib.payouts.execution import retry_unsettled
from lib.settings import load_settings
from lib.stripe_gateway import StripeGateway
ready, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
settings = load_settings()
engine = make_engine(settings.database_url)
factory = make_session_factory(engine)
gateway = StripeGateway(settings)
operator = operator_from_users_file(settings, "finance")
engine.connect().close()
ready.touch()
while not go.exists():
    time.sleep(0.001)
for payout in retry_unsettled(factory, gateway=gateway, operator=operator):
    sys.stdout.write(f"{payout.id},{payout.status}\\n")
engine.dispose()
"""


@pytest.fixture(scope="module")
def _replica_pair(module_processes: Processes, _shared_emulator: EmulatorHandle,
                  _pg_database: str) -> tuple[str, Companion, Companion]:
    """Two replicas behind one public address (the load balancer nobody needs to run here).

    Started once for the module: they are stateless, which is what this module tests.
    """
    public = f"http://{HOST}:{free_port()}"
    first, second = module_processes.companions(2, database_url=_pg_database,
                                                emulator_url=_shared_emulator.base_url,
                                                backend_url=public, name="replica")
    return public, first, second


@pytest.fixture(scope="module")
def _two_workers(module_processes: Processes, _shared_emulator: EmulatorHandle,
                 _pg_database: str) -> None:
    """Two ``python -m lib.worker`` processes beside the replicas, as production runs them."""
    for n in range(2):
        module_processes.background_worker(
            "--no-jobs", database_url=_pg_database, emulator_url=_shared_emulator.base_url,
            name=f"bg-worker-{n + 1}", WORKER_POLL_SECONDS="0.05")


@pytest.fixture
def replicas(_replica_pair: tuple[str, Companion, Companion], quiet_emulator: EmulatorHandle,
             session_factory: sessionmaker[Session]) -> tuple[Companion, Companion]:
    public, first, second = _replica_pair
    assert first.alive and second.alive
    quiet_emulator.configure(backend_url=public)  # the registered OAuth redirect URI
    return first, second


def test_state_issued_by_one_replica_is_consumed_by_the_other_once(
    replicas: tuple[Companion, Companion], quiet_emulator: EmulatorHandle,
    session_factory: sessionmaker[Session],
) -> None:
    first, second = replicas
    with session_factory.begin() as session:
        freelancer_id = create_freelancer(session, name="Ada Lovelace", email="ada@example.com").id
    link = httpx.get(f"{first.url}{FREELANCER_API}/stripe-connect-url",
                     headers=freelancer_headers(freelancer_id), timeout=30)
    assert link.status_code == 200
    redirect = consent(link.json()["data"]["connectUrl"])

    done = httpx.get(f"{second.url}{FREELANCER_API}/stripe-connect-callback", params=redirect,
                     timeout=30)
    assert done.status_code == 302
    assert done.headers["location"].startswith("/freelancer/stripe/success?accountId=acct_")
    # The same callback through the first replica finds the state spent: no second exchange.
    replay = httpx.get(f"{first.url}{FREELANCER_API}/stripe-connect-callback", params=redirect,
                       timeout=30)
    assert replay.headers["location"] == "/freelancer/stripe/error?reason=invalid_state"

    account_id = parse_qs(urlsplit(done.headers["location"]).query)["accountId"][0]
    assert quiet_emulator.state(full=True)["state"]["connections"][account_id]["active"] is True
    with session_factory() as session:
        assert session.scalars(select(OAuthState.consumed_at)).one() is not None
    status = httpx.get(f"{first.url}{FREELANCER_API}/stripe-connect-status",
                       headers=freelancer_headers(freelancer_id), timeout=30)
    assert status.status_code == 200
    assert status.json()["data"]["accountId"] == account_id
    assert status.json()["data"]["isConnected"] is True


def _unknown_payout_with_a_transfer(emulator: EmulatorHandle,
                                    session_factory: sessionmaker[Session]) -> tuple[int, str]:
    """A row left ``unknown`` although Stripe made its transfer (the response was lost)."""
    freelancer_id = payable_freelancer(emulator, session_factory)
    settings = make_settings(stripe_api_base=emulator.base_url,
                             stripe_connect_base=emulator.base_url)
    with session_factory.begin() as session:
        payout_id = request_payout(session, operator=ADMIN, freelancer_id=freelancer_id,
                                   amount="25.00", currency="usd", description="replicas",
                                   client_request_token="replicas-webhook",
                                   settings=settings).id
    emulator.inject_fault("commit_then_drop", path="/v1/transfers", method="POST")
    row = execute_payout(session_factory, gateway=StripeGateway(settings), payout_id=payout_id,
                         operator=ADMIN)
    assert row.status == "unknown"
    transfer = only_transfer(emulator)
    events = emulator.state(full=True)["state"]["events"]
    [event_id] = [e["id"] for e in events.values() if e["type"] == "transfer.created"
                  and e["data"]["object"]["id"] == transfer["id"]]
    return payout_id, str(event_id)


def test_one_event_delivered_to_both_replicas_at_once_is_processed_once(
    replicas: tuple[Companion, Companion], _two_workers: None, quiet_emulator: EmulatorHandle,
    session_factory: sessionmaker[Session],
) -> None:
    payout_id, event_id = _unknown_payout_with_a_transfer(quiet_emulator, session_factory)
    event = quiet_emulator.state(full=True)["state"]["events"][event_id]
    payload = json.dumps(event, indent=2)
    signature = stripe.WebhookSignature.generate_signature_header(payload, TEST_WEBHOOK_SECRET)
    headers = {"Stripe-Signature": signature, "Content-Type": "application/json"}
    deliveries = 8
    start = threading.Barrier(deliveries)

    def deliver(n: int) -> httpx.Response:
        replica = replicas[n % 2]
        with httpx.Client(base_url=replica.url, timeout=30) as http:
            start.wait()
            return http.post("/api/v1/stripe/webhooks", content=payload.encode(),
                             headers=headers)

    with ThreadPoolExecutor(max_workers=deliveries) as pool:
        answers = list(pool.map(deliver, range(deliveries)))
    assert [a.status_code for a in answers] == [200] * deliveries
    assert sum(not a.json()["duplicate"] for a in answers) == 1

    def processed() -> bool:
        with session_factory() as session:
            return session.scalars(select(WebhookEvent.status).where(
                WebhookEvent.stripe_event_id == event_id)).one() == "processed"

    wait_until(processed, timeout=60, what="the event processed by one of the two workers")
    with session_factory() as session:
        stored = session.scalars(select(WebhookEvent).where(
            WebhookEvent.stripe_event_id == event_id)).one()
        settled = session.scalars(select(AuditLog).where(
            AuditLog.action == "payout.settled_by_webhook")).all()
    assert stored.status == "processed" and stored.attempts == 1
    assert [a.target for a in settled] == [f"payout:{payout_id}"]
    row = only_row(session_factory)
    transfer = only_transfer(quiet_emulator)
    assert row.status == "paid" and row.stripe_transfer_id == transfer["id"]


def test_one_payout_executed_by_both_replicas_and_two_workers_pays_once(
    replicas: tuple[Companion, Companion], processes: Processes,
    quiet_emulator: EmulatorHandle, database_url: str, session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    emulator = quiet_emulator
    freelancer_id = payable_freelancer(emulator, session_factory)
    headers = admin_headers("invoice-replicas-1")
    # The first attempt gets a 5xx before Stripe executed it (nothing saved under the key): the
    # row is "unknown", which every executor may retry.
    emulator.inject_fault("http_500", path="/v1/transfers", method="POST", saved=False)
    first = httpx.post(f"{replicas[0].url}{PAYOUTS}", json=payout_body(freelancer_id),
                       headers=headers, timeout=30)
    assert first.status_code == 202 and first.json()["data"]["status"] == "unknown"
    assert transfers(emulator) == []
    # Whoever wins holds the call open a moment, so the others meet it in flight.
    emulator.inject_fault("delay", path="/v1/transfers", method="POST", seconds=0.5, count=20)

    go = tmp_path / "go"
    workers = []
    for n in range(2):
        ready = tmp_path / f"worker-{n}.ready"
        workers.append((ready, *processes.worker(WORKER, str(ready), str(go),
                                                 database_url=database_url,
                                                 emulator_url=emulator.base_url,
                                                 name=f"worker-{n}")))
    wait_until(lambda: all(ready.exists() for ready, _p, _log in workers), timeout=60,
               what="both workers ready")
    clicks = 8
    start = threading.Barrier(clicks + 1)

    def click(n: int) -> httpx.Response:
        with httpx.Client(base_url=replicas[n % 2].url, timeout=30) as http:
            start.wait()
            return http.post(PAYOUTS, json=payout_body(freelancer_id), headers=headers)

    with ThreadPoolExecutor(max_workers=clicks) as pool:
        pending = [pool.submit(click, n) for n in range(clicks)]
        start.wait()
        go.touch()
        answers = [future.result() for future in pending]

    statuses = {(a.status_code, a.json()["data"]["status"]) for a in answers}
    assert statuses <= {(200, "paid"), (202, "submitted")}, answers[0].text
    # When a worker won the claim, every click may have answered "submitted" while the worker's
    # transfer was still held at the emulator: let the workers finish and Stripe go idle first.
    for _ready, process, log in workers:
        assert process.wait(timeout=60) == 0, log.read_text()
    emulator.wait_idle()
    transfer = only_transfer(emulator)
    row = only_row(session_factory)
    assert row.status == "paid" and row.stripe_transfer_id == transfer["id"]
    assert {a.json()["data"]["payoutId"] for a in answers} == {row.id}
    for _ready, _process, log in workers:
        # It paid the row, met it in flight, or found it settled already (no output).
        assert set(log.read_text().split()) <= {f"{row.id},paid", f"{row.id},submitted"}
    with session_factory() as session:
        claims = session.execute(select(AuditLog.result, AuditLog.actor).where(
            AuditLog.action == "payout.submit").order_by(AuditLog.id)).all()
    # The first (failed) attempt, then exactly one of the ten racers won the claim.
    assert [result for result, _actor in claims] == ["submitted", "retry"]
    logger.info("the claim was won by %s", "a worker" if claims[1][1] == "finance"
                else "a replica")
    answer = httpx.post(f"{replicas[1].url}{PAYOUTS}", json=payout_body(freelancer_id),
                        headers=headers, timeout=30)
    assert answer.status_code == 200
    assert answer.json()["data"]["stripeTransferId"] == transfer["id"]

