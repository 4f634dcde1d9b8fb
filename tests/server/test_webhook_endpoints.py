"""Webhook intake over HTTP: real HMAC signatures, nothing stored unless verified; a verified
event is stored and acknowledged, and only the worker processes it (issue 18)."""

from __future__ import annotations

import json
import time

import pytest
import stripe
from fastapi.testclient import TestClient
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from lib import webhooks
from lib.db import utcnow
from lib.freelancers import create_freelancer
from lib.models import Freelancer, WebhookEvent
from lib.stripe_gateway import StripeGateway
from lib.worker import Worker
from server.app import create_app
from tests.factories import TEST_CONNECT_WEBHOOK_SECRET, TEST_WEBHOOK_SECRET, make_settings

CONNECT = "/api/v1/stripe/connect-webhooks"
PLATFORM = "/api/v1/stripe/webhooks"


def event(event_id: str = "evt_1", type_: str = "balance.available", **extra) -> dict:
    body = {"id": event_id, "object": "event", "type": type_, "livemode": False,
            "created": int(time.time()), "api_version": "2024-04-10",
            "data": {"object": {"id": "po_1", "object": "payout"}}}
    body.update(extra)
    return body


def signed(body: dict | bytes, secret: str, timestamp: int | None = None) -> tuple[bytes, dict]:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    header = stripe.WebhookSignature.generate_signature_header(payload.decode("utf-8", "replace"),
                                                               secret, timestamp)
    return payload, {"Stripe-Signature": header, "Content-Type": "application/json"}


#: Stripe is unreachable in this module: a handler that calls it fails.
SETTINGS = make_settings(stripe_api_base="http://127.0.0.1:9", stripe_connect_base="http://127.0.0.1:9")


@pytest.fixture
def client(session_factory):
    app = create_app(SETTINGS, session_factory=session_factory)
    with TestClient(app) as c:
        yield c


@pytest.fixture
def worker(session_factory) -> Worker:
    """The worker, driven one pass at a time by the test (no scheduled jobs)."""
    return Worker(session_factory, gateway=StripeGateway(SETTINGS), settings=SETTINGS, jobs=[])


def the_row(session_factory) -> WebhookEvent:
    with session_factory() as session:
        return session.scalars(select(WebhookEvent)).one()


def stored(session_factory) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(WebhookEvent))


def test_signed_event_is_stored_and_processed(client, session_factory) -> None:
    payload, headers = signed(event(account="acct_1"), TEST_CONNECT_WEBHOOK_SECRET)
    response = client.post(CONNECT, content=payload, headers=headers)
    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False, "ignored": False}
    with session_factory() as session:
        row = session.scalars(select(WebhookEvent)).one()
    assert (row.stripe_event_id, row.status, row.endpoint, row.account) == (
        "evt_1", "processed", "connect", "acct_1")


def test_duplicate_delivery_is_a_no_op(client, session_factory) -> None:
    payload, headers = signed(event(), TEST_WEBHOOK_SECRET)
    assert client.post(PLATFORM, content=payload, headers=headers).status_code == 200
    response = client.post(PLATFORM, content=payload, headers=headers)
    assert response.status_code == 200
    assert response.json()["duplicate"] is True
    assert stored(session_factory) == 1
    with session_factory() as session:
        assert session.scalars(select(WebhookEvent.attempts)).one() == 1


@pytest.mark.parametrize(
    "make_request",
    [
        lambda: (json.dumps(event()).encode(), {}),  # no signature
        lambda: signed(event(), "whsec_wrong"),
        lambda: signed(event(), TEST_WEBHOOK_SECRET),  # platform secret on the Connect endpoint
        lambda: signed(event(), TEST_CONNECT_WEBHOOK_SECRET, timestamp=int(time.time()) - 301),
        lambda: (signed(event(), TEST_CONNECT_WEBHOOK_SECRET)[0].replace(b"po_1", b"po_2"),
                 signed(event(), TEST_CONNECT_WEBHOOK_SECRET)[1]),  # altered body
        lambda: signed(b"{not json", TEST_CONNECT_WEBHOOK_SECRET),
        lambda: signed(b'["a list"]', TEST_CONNECT_WEBHOOK_SECRET),
        lambda: signed(b"\xff\xfe", TEST_CONNECT_WEBHOOK_SECRET),
    ],
    ids=["unsigned", "wrong-secret", "platform-secret-on-connect", "stale", "altered",
         "malformed-json", "not-an-event", "not-utf8"],
)
def test_forged_or_malformed_is_400_and_stores_nothing(client, session_factory, make_request):
    payload, headers = make_request()
    response = client.post(CONNECT, content=payload, headers=headers)
    assert response.status_code == 400
    assert response.json()["received"] is False
    assert stored(session_factory) == 0


def test_connect_secret_on_platform_endpoint_is_refused(client, session_factory) -> None:
    payload, headers = signed(event(), TEST_CONNECT_WEBHOOK_SECRET)
    assert client.post(PLATFORM, content=payload, headers=headers).status_code == 400
    assert stored(session_factory) == 0


def test_oversized_body_is_refused(client, session_factory) -> None:
    body = event(padding="x" * (600 * 1024))
    payload, headers = signed(body, TEST_CONNECT_WEBHOOK_SECRET)
    assert client.post(CONNECT, content=payload, headers=headers).status_code == 400
    assert stored(session_factory) == 0


def test_live_event_on_test_deployment_is_ignored_and_recorded(client, session_factory) -> None:
    payload, headers = signed(event(livemode=True), TEST_CONNECT_WEBHOOK_SECRET)
    response = client.post(CONNECT, content=payload, headers=headers)
    assert response.status_code == 200 and response.json()["ignored"] is True
    with session_factory() as session:
        row = session.scalars(select(WebhookEvent)).one()
    assert row.status == "ignored" and "live-mode event" in (row.error or "")


def test_deauthorization_is_confirmed_with_stripe_before_detaching(client, session_factory,
                                                                   worker) -> None:
    # Stripe is unreachable here: the event cannot be confirmed, so nothing is detached and
    # the attempt fails (the worker retries it). The confirmed path runs in test_connect_api.py.
    with session_factory.begin() as session:
        freelancer = create_freelancer(session, name="Ada", email="ada@example.com")
        freelancer.stripe_account_id = "acct_gone"
        freelancer.connection_method = "oauth"
        freelancer.connected_at = utcnow()
        freelancer_id = freelancer.id
    body = event("evt_deauth", "account.application.deauthorized", account="acct_gone",
                 created=int(time.time()) + 1,
                 data={"object": {"id": "ca_x", "object": "application"}})
    payload, headers = signed(body, TEST_CONNECT_WEBHOOK_SECRET)
    assert client.post(CONNECT, content=payload, headers=headers).status_code == 200
    assert worker.process_due_events() == 1
    with session_factory() as session:
        freelancer = session.get(Freelancer, freelancer_id)
        assert freelancer is not None and freelancer.stripe_account_id == "acct_gone"
    assert the_row(session_factory).status == "failed"


def test_stale_deauthorization_does_not_undo_a_reconnect(client, session_factory,
                                                          worker) -> None:
    with session_factory.begin() as session:
        freelancer = create_freelancer(session, name="Ada", email="ada@example.com")
        freelancer.stripe_account_id = "acct_back"
        freelancer.connection_method = "oauth"
        freelancer.connected_at = utcnow()
        freelancer_id = freelancer.id
    body = event("evt_old", "account.application.deauthorized", account="acct_back",
                 created=int(time.time()) - 3600)
    payload, headers = signed(body, TEST_CONNECT_WEBHOOK_SECRET)
    assert client.post(CONNECT, content=payload, headers=headers).status_code == 200
    assert worker.process_due_events() == 1
    with session_factory() as session:
        freelancer = session.get(Freelancer, freelancer_id)
        assert freelancer is not None and freelancer.stripe_account_id == "acct_back"
        row = session.scalars(select(WebhookEvent)).one()
    assert row.status == "ignored"


def test_processing_failure_is_recorded_and_retried_by_the_worker(client, session_factory,
                                                                   worker) -> None:
    # account.updated for a known account re-reads it from Stripe; Stripe is unreachable here.
    with session_factory.begin() as session:
        freelancer = create_freelancer(session, name="Ada", email="ada@example.com")
        freelancer.stripe_account_id = "acct_known"
    body = event("evt_fail", "account.updated", account="acct_known")
    payload, headers = signed(body, TEST_CONNECT_WEBHOOK_SECRET)
    response = client.post(CONNECT, content=payload, headers=headers)
    assert response.status_code == 200  # acknowledged: the failure is the worker's business
    assert worker.process_due_events() == 1
    row = the_row(session_factory)
    assert row.status == "failed" and row.error and "stripe_connection_error" in row.error
    assert row.next_attempt_at is not None and row.next_attempt_at > utcnow()
    # Stripe's redelivery is acknowledged and changes nothing: the retry is scheduled already.
    again = client.post(CONNECT, content=payload, headers=headers)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert worker.process_due_events() == 0  # not due yet: backoff
    assert the_row(session_factory).attempts == 1
    later = webhooks.claim_due(session_factory, worker_id="later", policy=worker.policy,
                               now=row.next_attempt_at)
    assert [c.attempt for c in later] == [2]


def test_recorded_only_event_is_stored_processed_in_one_commit(client, session_factory) -> None:
    # balance.available changes nothing of ours: no claim and no finish, one transaction in all.
    engine = session_factory.kw["bind"]
    commits: list[str] = []

    def count_commit(_connection) -> None:
        commits.append("commit")

    sa_event.listen(engine, "commit", count_commit)
    try:
        payload, headers = signed(event("evt_paid"), TEST_CONNECT_WEBHOOK_SECRET)
        response = client.post(CONNECT, content=payload, headers=headers)
    finally:
        sa_event.remove(engine, "commit", count_commit)
    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False, "ignored": False}
    assert len(commits) == 1
    with session_factory() as session:
        row = session.scalars(select(WebhookEvent)).one()
    assert (row.status, row.attempts, row.error) == ("processed", 1, None)
    assert row.processed_at is not None


def test_intake_runs_no_handler_and_calls_no_stripe(client, session_factory, worker,
                                                      monkeypatch) -> None:
    # account.updated for our account needs Stripe: the request only stores it, in one commit.
    calls: list[str] = []
    monkeypatch.setitem(webhooks.HANDLERS, "account.updated",
                        lambda _f, _g, received: calls.append(received["id"]))
    with session_factory.begin() as session:
        create_freelancer(session, name="Ada", email="ada@example.com").stripe_account_id = (
            "acct_1")
    engine = session_factory.kw["bind"]
    commits: list[str] = []

    def count_commit(_connection) -> None:
        commits.append("commit")

    body = event("evt_acct", "account.updated", account="acct_1",
                 data={"object": {"id": "acct_1", "object": "account"}})
    payload, headers = signed(body, TEST_CONNECT_WEBHOOK_SECRET)
    sa_event.listen(engine, "commit", count_commit)
    try:
        response = client.post(CONNECT, content=payload, headers=headers)
    finally:
        sa_event.remove(engine, "commit", count_commit)
    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False, "ignored": False}
    assert calls == [] and len(commits) == 1
    row = the_row(session_factory)
    assert (row.status, row.attempts, row.lease_token) == ("received", 0, None)
    assert worker.process_due_events() == 1
    assert calls == ["evt_acct"]
    row = the_row(session_factory)
    assert (row.status, row.attempts, row.lease_token) == ("processed", 1, None)


def test_handled_event_is_claimed_and_finished_by_the_worker(client, session_factory,
                                                             worker) -> None:
    # account.updated re-reads the account from Stripe (unreachable here): the worker's claim
    # records the failure on the row and schedules the retry.
    with session_factory.begin() as session:
        freelancer = create_freelancer(session, name="Ada", email="ada@example.com")
        freelancer.stripe_account_id = "acct_1"
    body = event("evt_acct", "account.updated", account="acct_1",
                 data={"object": {"id": "acct_1", "object": "account"}})
    payload, headers = signed(body, TEST_CONNECT_WEBHOOK_SECRET)
    assert client.post(CONNECT, content=payload, headers=headers).status_code == 200
    assert the_row(session_factory).status == "received"
    assert worker.process_due_events() == 1
    row = the_row(session_factory)
    assert (row.status, row.attempts, row.lease_token) == ("failed", 1, None)
