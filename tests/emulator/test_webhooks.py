"""Signed webhook delivery to a real local receiver, verified with stripe.Webhook."""

from __future__ import annotations

import json

import stripe

from emulator.testing import EmulatorHandle
from tests.emulator.conftest import Receiver, express_account

PLATFORM_SECRET = "whsec_platform_test"
CONNECT_SECRET = "whsec_connect_test"


def _point(emu: EmulatorHandle, receiver: Receiver) -> None:
    emu.configure(
        webhook_url=f"{receiver.url}/platform",
        webhook_secret=PLATFORM_SECRET,
        connect_webhook_url=f"{receiver.url}/connect",
        connect_webhook_secret=CONNECT_SECRET,
        webhook_retry_delay=0.05,
    )


def _events(receiver: Receiver, path: str, secret: str) -> list[stripe.Event]:
    out = []
    for req in receiver.requests:
        if req["path"] == path:
            out.append(stripe.Webhook.construct_event(req["body"], req["headers"]["stripe-signature"], secret))
    return out


def test_platform_and_connect_events_are_signed_separately(client: stripe.StripeClient, emu: EmulatorHandle, receiver: Receiver) -> None:
    _point(emu, receiver)
    acct = express_account(client, emu)
    transfer = client.v1.transfers.create(params={"amount": 100, "currency": "usd", "destination": acct.id})
    assert emu.flush_webhooks()
    platform = _events(receiver, "/platform", PLATFORM_SECRET)
    connect = _events(receiver, "/connect", CONNECT_SECRET)
    assert [e.type for e in platform] == ["transfer.created"]
    assert platform[0].data.object.id == transfer.id
    assert {e.type for e in connect} == {"account.updated", "capability.updated"}
    assert all(e.account == acct.id for e in connect)
    # a Connect event does not verify with the platform secret
    req = next(r for r in receiver.requests if r["path"] == "/connect")
    try:
        stripe.Webhook.construct_event(req["body"], req["headers"]["stripe-signature"], PLATFORM_SECRET)
        raise AssertionError("verified with the wrong secret")
    except stripe.SignatureVerificationError:
        pass
    delivered = client.v1.events.retrieve(transfer_event_id(client))
    assert delivered.pending_webhooks == 0
    assert all(d["ok"] for d in emu.deliveries())


def transfer_event_id(client: stripe.StripeClient) -> str:
    return str(client.v1.events.list(params={"type": "transfer.created"}).data[0].id)


def test_no_delivery_when_unset(client: stripe.StripeClient, emu: EmulatorHandle, receiver: Receiver) -> None:
    express_account(client, emu)
    assert emu.flush_webhooks()
    assert receiver.requests == [] and emu.deliveries() == []


def test_retries_on_failure_then_succeeds(client: stripe.StripeClient, emu: EmulatorHandle, receiver: Receiver) -> None:
    _point(emu, receiver)
    receiver.statuses.extend([500, 503])
    acct = express_account(client, emu, onboarded=False)
    client.v1.accounts.update(acct.id, params={"metadata": {"a": "b"}})
    assert emu.flush_webhooks()
    log = emu.deliveries()
    assert [d["status"] for d in log] == [500, 503, 200]
    assert len({r["body"] for r in receiver.requests}) == 1


def test_duplicate_delivery(client: stripe.StripeClient, emu: EmulatorHandle, receiver: Receiver) -> None:
    _point(emu, receiver)
    emu.inject_fault("duplicate", count=1)
    acct = express_account(client, emu)
    client.v1.transfers.create(params={"amount": 100, "currency": "usd", "destination": acct.id})
    assert emu.flush_webhooks()
    ids = [json.loads(r["body"])["id"] for r in receiver.requests]
    assert len(ids) == len(set(ids)) + 1


def test_out_of_order_delivery(client: stripe.StripeClient, emu: EmulatorHandle, receiver: Receiver) -> None:
    _point(emu, receiver)
    acct = express_account(client, emu)
    assert emu.flush_webhooks()
    receiver.clear()
    emu.inject_fault("out_of_order", count=3)
    made = [
        client.v1.transfers.create(params={"amount": 100 + i, "currency": "usd", "destination": acct.id}).id
        for i in range(3)
    ]
    assert emu.flush_webhooks()
    got = [json.loads(r["body"])["data"]["object"]["id"] for r in receiver.requests]
    assert got == list(reversed(made))


def test_resend(client: stripe.StripeClient, emu: EmulatorHandle, receiver: Receiver) -> None:
    _point(emu, receiver)
    acct = express_account(client, emu)
    client.v1.transfers.create(params={"amount": 100, "currency": "usd", "destination": acct.id})
    assert emu.flush_webhooks()
    before = len(receiver.requests)
    emu.resend_event(transfer_event_id(client))
    assert emu.flush_webhooks()
    assert len(receiver.requests) == before + 1
