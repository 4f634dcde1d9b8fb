"""Issue 18's defect on the code before the worker: a handler bug loses the event.

A handler raising anything but the product's own errors left the row ``processing`` forever:
Stripe's redelivery was answered "duplicate" and never processed. Kept as a strict xfail until
the worker lands (the same guarantee is then checked through the worker).
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from lib import webhooks
from lib.models import WebhookEvent
from server.app import create_app
from tests.factories import TEST_CONNECT_WEBHOOK_SECRET, make_settings
from tests.server.test_webhook_endpoints import CONNECT, event, signed


@pytest.mark.xfail(strict=True, reason="issue 18: a handler bug leaves the event processing")
def test_redelivery_after_a_handler_bug_is_processed(session_factory, monkeypatch) -> None:
    calls: list[str] = []

    def buggy_then_fixed(_factory, _gateway, received) -> None:
        calls.append(received["id"])
        if len(calls) == 1:
            raise KeyError("a bug in the handler")

    monkeypatch.setitem(webhooks.HANDLERS, "account.updated", buggy_then_fixed)
    app = create_app(make_settings(stripe_api_base="http://127.0.0.1:9",
                                   stripe_connect_base="http://127.0.0.1:9"),
                     session_factory=session_factory)
    payload, headers = signed(event("evt_bug", "account.updated", account="acct_1"),
                              TEST_CONNECT_WEBHOOK_SECRET)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.post(CONNECT, content=payload, headers=headers)
        client.post(CONNECT, content=payload, headers=headers)  # Stripe's redelivery
    with session_factory() as session:
        row = session.scalars(select(WebhookEvent)).one()
    assert row.status == "processed", (row.status, calls)
