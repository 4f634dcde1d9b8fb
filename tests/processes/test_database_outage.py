"""The database goes away under a running companion process, then comes back (PostgreSQL).

A TCP proxy (tests/support/tcp_proxy.py) sits between ``python -m server`` and PostgreSQL; the
test cuts it before or in the middle of a request. What must hold: the client gets a clear
503 (a human message, no traceback, no SQL, no secret); nothing is half written (no payout row
without its key, no OAuth state spent without its code exchanged); ``/healthz`` says the
database is unreachable; and once the link is back, ``/healthz`` is ok and the same request
succeeds exactly once (one ledger row, one transfer, one connection).

The test process itself talks to PostgreSQL directly (not through the proxy) to set up rows
and to look at what the companion left behind.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from emulator.page_driver import consent
from emulator.testing import EmulatorHandle
from lib.freelancers import create_freelancer
from lib.models import ConnectionAttempt, OAuthState, WebhookEvent
from scripts.processes import wait_until
from tests.conftest import requires_postgresql
from tests.processes.conftest import (
    Companion,
    Processes,
    admin_headers,
    assert_clean_error,
    freelancer_headers,
    only_row,
    only_transfer,
    payable_freelancer,
    payout_body,
    payout_rows,
    transfers,
    wire_webhooks,
)
from tests.support.tcp_proxy import TcpProxy

pytestmark = [requires_postgresql(), pytest.mark.slow]

PAYOUTS = "/api/v1/admin/payouts"
FREELANCER_API = "/api/v1/freelancer"


@pytest.fixture(scope="module")
def _proxy(_pg_database: str) -> Iterator[TcpProxy]:
    url = make_url(_pg_database)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as running:
        yield running


@pytest.fixture(scope="module")
def _companion(module_processes: Processes, _proxy: TcpProxy, _pg_database: str,
               _shared_emulator: EmulatorHandle) -> Companion:
    """``python -m server`` whose every database connection goes through the proxy (started
    once for the module; each test leaves the link restored)."""
    proxied = make_url(_pg_database).set(host="127.0.0.1", port=_proxy.port)
    return module_processes.companion(database_url=proxied.render_as_string(hide_password=False),
                                      emulator_url=_shared_emulator.base_url)


@pytest.fixture(scope="module")
def _worker(module_processes: Processes, _proxy: TcpProxy, _pg_database: str,
            _shared_emulator: EmulatorHandle) -> None:
    """``python -m lib.worker`` behind the same proxy: the outage cuts it off too."""
    proxied = make_url(_pg_database).set(host="127.0.0.1", port=_proxy.port)
    module_processes.background_worker(
        "--no-jobs", database_url=proxied.render_as_string(hide_password=False),
        emulator_url=_shared_emulator.base_url, WORKER_POLL_SECONDS="0.05",
        WORKER_HEARTBEAT_SECONDS="0.5", WEBHOOK_RETRY_BASE_SECONDS="0.2")


@pytest.fixture
def proxy(_proxy: TcpProxy) -> Iterator[TcpProxy]:
    yield _proxy
    _proxy.restore()  # whatever the test did, the next one starts with a working link


@pytest.fixture
def companion(_companion: Companion, proxy: TcpProxy, quiet_emulator: EmulatorHandle,
              session_factory: sessionmaker[Session]) -> Companion:
    assert _companion.alive
    wait_until(lambda: _companion.health().status_code == 200, what="the companion healthy")
    return _companion


def _assert_database_down(companion: Companion) -> None:
    health = companion.health()
    assert health.status_code == 503
    assert health.json() == {"status": "error", "database": "unreachable"}


def _assert_database_back(companion: Companion) -> None:
    health = companion.health()
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "database": "ok"}


def _assert_unavailable(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["success"] is False
    assert body["code"] == "database_unavailable"
    assert "database" in body["message"] and "try again" in body["message"].lower()
    assert response.headers.get("retry-after")
    assert_clean_error(response)
    return body


def test_payout_refused_while_the_database_is_down_then_paid_once(
    companion: Companion, proxy: TcpProxy, quiet_emulator: EmulatorHandle,
    session_factory: sessionmaker[Session],
) -> None:
    freelancer_id = payable_freelancer(quiet_emulator, session_factory)
    headers = admin_headers("invoice-outage-1")
    proxy.cut()
    _assert_database_down(companion)

    with httpx.Client(base_url=companion.url, timeout=30) as http:
        refused = http.post(PAYOUTS, json=payout_body(freelancer_id), headers=headers)
        _assert_unavailable(refused)
        assert payout_rows(session_factory) == []
        assert transfers(quiet_emulator) == []

        proxy.restore()
        _assert_database_back(companion)
        paid = http.post(PAYOUTS, json=payout_body(freelancer_id), headers=headers)
        assert paid.status_code == 200, paid.text
        assert paid.json()["data"]["status"] == "paid"
        again = http.post(PAYOUTS, json=payout_body(freelancer_id), headers=headers)
    assert again.status_code == 200
    assert again.json()["data"]["payoutId"] == paid.json()["data"]["payoutId"]
    row = only_row(session_factory)
    transfer = only_transfer(quiet_emulator)
    assert row.status == "paid" and row.stripe_transfer_id == transfer["id"]
    assert transfer["metadata"]["ledger_key"] == row.idempotency_key


def test_link_cut_while_stripe_executes_the_transfer_heals_through_the_webhook(
    companion: Companion, _worker: None, proxy: TcpProxy, quiet_emulator: EmulatorHandle,
    session_factory: sessionmaker[Session],
) -> None:
    """Cut after the row is claimed, while the companion waits for Stripe: Stripe pays, the
    ledger cannot be told; the transfer.created webhook (retried by Stripe until the intake
    can store it) is processed by the worker once it reaches the database again, and settles
    the row."""
    freelancer_id = payable_freelancer(quiet_emulator, session_factory)
    wire_webhooks(quiet_emulator, companion.url, webhook_max_attempts=10,
                  webhook_retry_delay=0.3)
    quiet_emulator.inject_fault("delay", path="/v1/transfers", method="POST", seconds=3.0)
    headers = admin_headers("invoice-outage-2")
    answers: list[httpx.Response] = []

    def request() -> None:
        with httpx.Client(base_url=companion.url, timeout=30) as http:
            answers.append(http.post(PAYOUTS, json=payout_body(freelancer_id), headers=headers))

    client = threading.Thread(target=request)
    client.start()
    # The claim is committed before Stripe is called: once it shows, the call is in flight.
    wait_until(lambda: [r.status for r in payout_rows(session_factory)] == ["submitted"],
               what="the payout row claimed")
    proxy.cut()
    client.join(timeout=30)
    [answer] = answers
    _assert_unavailable(answer)
    _assert_database_down(companion)
    # Stripe did pay; the ledger still says "we may have sent this", never half of anything.
    transfer = only_transfer(quiet_emulator)
    row = only_row(session_factory)
    assert row.status == "submitted" and row.stripe_transfer_id is None
    assert transfer["metadata"]["ledger_key"] == row.idempotency_key

    proxy.restore()
    _assert_database_back(companion)
    assert quiet_emulator.flush_webhooks(timeout=30)
    wait_until(lambda: payout_rows(session_factory)[0].status == "paid",
               what="the row settled by the redelivered webhook")
    with httpx.Client(base_url=companion.url, timeout=30) as http:
        again = http.post(PAYOUTS, json=payout_body(freelancer_id), headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["data"]["stripeTransferId"] == transfer["id"]
    assert len(transfers(quiet_emulator)) == 1 and len(payout_rows(session_factory)) == 1
    deliveries = [d for d in quiet_emulator.deliveries() if d["type"] == "transfer.created"]
    assert any(not d["ok"] for d in deliveries) and any(d["ok"] for d in deliveries)
    with session_factory() as session:
        event = session.scalars(select(WebhookEvent).where(
            WebhookEvent.type == "transfer.created")).one()
    assert event.status == "processed" and event.attempts == 1


def test_callback_while_the_database_is_down_spends_nothing_and_works_after(
    companion: Companion, proxy: TcpProxy, quiet_emulator: EmulatorHandle,
    session_factory: sessionmaker[Session],
) -> None:
    quiet_emulator.configure(backend_url=companion.url)
    with session_factory.begin() as session:
        freelancer_id = create_freelancer(session, name="Ada Lovelace", email="ada@example.com").id
    with httpx.Client(base_url=companion.url, timeout=30, follow_redirects=False) as http:
        link = http.get(f"{FREELANCER_API}/stripe-connect-url",
                        headers=freelancer_headers(freelancer_id))
        assert link.status_code == 200
        redirect = consent(link.json()["data"]["connectUrl"])

        before = quiet_emulator.state(full=True)["state"]["connections"]
        proxy.cut()
        # The browser lands on the callback while the database is away: a page saying so.
        down = http.get(f"{FREELANCER_API}/stripe-connect-callback", params=redirect,
                        headers={"Accept": "text/html,application/xhtml+xml"})
        assert down.status_code == 503
        assert down.headers["content-type"].startswith("text/html")
        assert "try again" in down.text.lower()
        assert_clean_error(down)
        # The same address asked by an API client gets the JSON envelope.
        _assert_unavailable(http.get(f"{FREELANCER_API}/stripe-connect-callback",
                                     params=redirect))
        with session_factory() as session:
            state = session.scalars(select(OAuthState)).one()
            attempt = session.scalars(select(ConnectionAttempt)).one()
        assert state.consumed_at is None and attempt.outcome == "pending"
        # The code was not exchanged: Stripe's connections are as they were.
        assert quiet_emulator.state(full=True)["state"]["connections"] == before

        proxy.restore()
        _assert_database_back(companion)
        # Reloading the callback page (same code, same state) now connects, once.
        done = http.get(f"{FREELANCER_API}/stripe-connect-callback", params=redirect)
        assert done.status_code == 302
        location = done.headers["location"]
        assert location.startswith("/freelancer/stripe/success?")
        replay = http.get(f"{FREELANCER_API}/stripe-connect-callback", params=redirect)
        assert replay.headers["location"] == "/freelancer/stripe/error?reason=invalid_state"
    account_id = parse_qs(urlsplit(location).query)["accountId"][0]
    connection = quiet_emulator.state(full=True)["state"]["connections"][account_id]
    assert connection["active"] is True


def test_link_cut_during_the_code_exchange_never_exchanges_twice(
    companion: Companion, proxy: TcpProxy, quiet_emulator: EmulatorHandle,
    session_factory: sessionmaker[Session],
) -> None:
    """Cut after the state is spent, while Stripe exchanges the code: Stripe connects the
    account, the callback cannot record it. A reload must not exchange again (that would revoke
    the connection); connecting again attaches the same account."""
    quiet_emulator.configure(backend_url=companion.url)
    with session_factory.begin() as session:
        freelancer_id = create_freelancer(session, name="Ada Lovelace", email="ada@example.com").id
    headers = freelancer_headers(freelancer_id)
    browser = {"Accept": "text/html"}
    with httpx.Client(base_url=companion.url, timeout=30, follow_redirects=False) as http:
        link = http.get(f"{FREELANCER_API}/stripe-connect-url", headers=headers)
        redirect = consent(link.json()["data"]["connectUrl"])
    quiet_emulator.inject_fault("delay", path="/oauth/token", method="POST", seconds=3.0)
    answers: list[httpx.Response] = []

    def callback() -> None:
        with httpx.Client(base_url=companion.url, timeout=30, follow_redirects=False) as http:
            answers.append(http.get(f"{FREELANCER_API}/stripe-connect-callback",
                                    params=redirect, headers=browser))

    browser_tab = threading.Thread(target=callback)
    browser_tab.start()

    def state_spent() -> bool:
        with session_factory() as session:
            return session.scalars(select(OAuthState.consumed_at)).one() is not None

    wait_until(state_spent, what="the state spent before the exchange")
    proxy.cut()
    browser_tab.join(timeout=30)
    [down] = answers
    assert down.status_code == 503 and down.headers["content-type"].startswith("text/html")
    assert_clean_error(down)
    connections = quiet_emulator.state(full=True)["state"]["connections"]
    [account_id] = [acct for acct, c in connections.items() if c["active"]]  # Stripe connected

    proxy.restore()
    _assert_database_back(companion)
    with httpx.Client(base_url=companion.url, timeout=30, follow_redirects=False) as http:
        reload = http.get(f"{FREELANCER_API}/stripe-connect-callback", params=redirect,
                          headers=browser)
        assert reload.headers["location"] == "/freelancer/stripe/error?reason=invalid_state"
        assert quiet_emulator.state(full=True)["state"]["connections"][account_id]["active"]
        # "Session expired. Please try again.": connecting again picks the same account.
        again = http.get(f"{FREELANCER_API}/stripe-connect-url", headers=headers)
        done = http.get(f"{FREELANCER_API}/stripe-connect-callback",
                        params=consent(again.json()["data"]["connectUrl"], account=account_id))
        assert done.headers["location"] == f"/freelancer/stripe/success?accountId={account_id}"
        status = http.get(f"{FREELANCER_API}/stripe-connect-status", headers=headers)
    assert status.json()["data"]["accountId"] == account_id
    assert quiet_emulator.state(full=True)["state"]["connections"][account_id]["active"]
