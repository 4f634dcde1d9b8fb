"""Issue 18's defect: a handler bug lost the event (it stayed ``processing`` forever and
Stripe's redelivery was answered "duplicate" and never processed).

Shown failing on the code before the worker (commit 7fe35eb: the row stayed ``processing``
and the handler ran once). Now the request only stores the event; the worker records whatever
the handler raised on the row, retries with exponential backoff and jitter, and processes the
event once the cause is gone; the redelivery changes nothing.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from lib import webhooks
from lib.models import WebhookEvent, WebhookStatus
from lib.stripe_gateway import StripeGateway
from server.app import create_app
from tests.factories import TEST_CONNECT_WEBHOOK_SECRET
from tests.server.test_webhook_endpoints import CONNECT, SETTINGS, event, signed

POLICY = webhooks.RetryPolicy(max_attempts=5, base=timedelta(seconds=30),
                              cap=timedelta(hours=1))


def _row(session_factory) -> WebhookEvent:
    with session_factory() as session:
        return session.scalars(select(WebhookEvent)).one()


def test_a_handler_bug_is_retried_with_backoff_and_processed_once_fixed(
    session_factory, monkeypatch,
) -> None:
    calls: list[str] = []

    def buggy_twice(_factory, _gateway, received) -> None:
        calls.append(received["id"])
        if len(calls) <= 2:
            raise KeyError("a bug in the handler")

    monkeypatch.setitem(webhooks.HANDLERS, "account.updated", buggy_twice)
    gateway = StripeGateway(SETTINGS)
    payload, headers = signed(event("evt_bug", "account.updated", account="acct_1"),
                              TEST_CONNECT_WEBHOOK_SECRET)
    with TestClient(create_app(SETTINGS, session_factory=session_factory)) as client:
        assert client.post(CONNECT, content=payload, headers=headers).status_code == 200
        assert calls == []  # nothing ran in the request

        [claim] = webhooks.claim_due(session_factory, worker_id="w1", policy=POLICY)
        outcome = webhooks.process_claim(session_factory, gateway=gateway, claim=claim,
                                         policy=POLICY)
        assert (outcome.status, outcome.recorded) == (WebhookStatus.FAILED, True)
        first = _row(session_factory)
        assert first.error == "KeyError: 'a bug in the handler'"
        assert first.lease_token is None and first.attempts == 1
        assert first.next_attempt_at is not None and first.processing_started_at is not None
        wait = first.next_attempt_at - first.processing_started_at
        assert timedelta(seconds=30) <= wait <= timedelta(seconds=45.5)

        # Stripe's redelivery of the unprocessed event: acknowledged, not stored twice.
        again = client.post(CONNECT, content=payload, headers=headers)
        assert again.status_code == 200 and again.json()["duplicate"] is True

    assert webhooks.claim_due(session_factory, worker_id="w2", policy=POLICY) == []  # backoff
    [claim] = webhooks.claim_due(session_factory, worker_id="w2", policy=POLICY,
                                 now=first.next_attempt_at)
    assert claim.attempt == 2
    webhooks.process_claim(session_factory, gateway=gateway, claim=claim, policy=POLICY,
                           now=first.next_attempt_at)
    second = _row(session_factory)
    assert second.status == "failed" and second.next_attempt_at is not None
    wait = second.next_attempt_at - first.next_attempt_at
    assert timedelta(seconds=60) <= wait <= timedelta(seconds=90.5)  # doubled

    # The cause is gone (the handler no longer raises): the next attempt processes it.
    [claim] = webhooks.claim_due(session_factory, worker_id="w3", policy=POLICY,
                                 now=second.next_attempt_at)
    outcome = webhooks.process_claim(session_factory, gateway=gateway, claim=claim,
                                     policy=POLICY, now=second.next_attempt_at)
    assert outcome.status is WebhookStatus.PROCESSED
    done = _row(session_factory)
    assert (done.status, done.attempts, done.error, done.lease_token) == (
        "processed", 3, None, None)
    far_later = second.next_attempt_at + timedelta(days=3)
    assert webhooks.claim_due(session_factory, worker_id="w4", policy=POLICY,
                              now=far_later) == []
    assert calls == ["evt_bug"] * 3  # processed once: nothing ran after the success
