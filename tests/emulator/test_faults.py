"""Injected faults as the SDK sees them, and the recoveries Stripe's design allows."""

from __future__ import annotations

import httpx
import pytest
import stripe

from emulator.testing import EmulatorHandle, stripe_client
from tests.emulator.conftest import error_code, express_account, present


def test_delay_past_client_timeout(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    emu.inject_fault("delay", "/v1/balance", seconds=1.0)
    slow = stripe_client(emu.base_url, http_client=stripe.HTTPXClient(timeout=0.3, allow_sync_methods=True), max_network_retries=0)
    with pytest.raises(stripe.APIConnectionError):
        slow.v1.balance.retrieve()
    assert client.v1.balance.retrieve().object == "balance"


def test_http_500(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    emu.inject_fault("http_500", "/v1/transfers", method="POST")
    acct = express_account(client, emu)
    with pytest.raises(stripe.APIError) as exc:
        client.v1.transfers.create(params={"amount": 100, "currency": "usd", "destination": acct.id})
    assert exc.value.http_status == 500
    assert emu.state()["counts"]["transfers"] == 0


def test_rate_limit(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    emu.inject_fault("rate_limit", "/v1/accounts", count=1)
    with pytest.raises(stripe.RateLimitError) as exc:
        client.v1.accounts.list()
    assert exc.value.http_status == 429 and error_code(exc.value) == "rate_limit"
    assert client.v1.accounts.list().to_dict()["object"] == "list"


def test_lock_timeout_is_retryable(emu: EmulatorHandle) -> None:
    emu.inject_fault("lock_timeout", "/v1/accounts/{account}", count=1)
    plain = stripe_client(emu.base_url)
    acct = plain.v1.accounts.create(params={"type": "express"})
    with pytest.raises(stripe.RateLimitError) as exc:
        plain.v1.accounts.retrieve(acct.id)
    assert error_code(exc.value) == "lock_timeout"
    assert present(exc.value.headers)["stripe-should-retry"] == "true"
    emu.inject_fault("lock_timeout", "/v1/accounts/{account}", count=1)
    retrying = stripe_client(emu.base_url, max_network_retries=1)
    assert retrying.v1.accounts.retrieve(acct.id).id == acct.id


def test_rate_limits_can_carry_retry_hints(emu: EmulatorHandle) -> None:
    plain = stripe_client(emu.base_url)
    emu.inject_fault("rate_limit", "/v1/accounts", count=1, retry_after=7)
    with pytest.raises(stripe.RateLimitError) as exc:
        plain.v1.accounts.list()
    assert present(exc.value.headers)["retry-after"] == "7"
    assert "stripe-should-retry" not in present(exc.value.headers)
    emu.inject_fault("lock_timeout", "/v1/accounts", count=1, should_retry=False)
    with pytest.raises(stripe.RateLimitError) as exc:
        stripe_client(emu.base_url, max_network_retries=2).v1.accounts.list()  # not retried
    assert present(exc.value.headers)["stripe-should-retry"] == "false"
    assert plain.v1.accounts.list().to_dict()["object"] == "list"
    for bad in ({"kind": "http_500", "retry_after": 1}, {"kind": "rate_limit", "retry_after": -1},
                {"kind": "rate_limit", "retry_after": "soon"},
                {"kind": "lock_timeout", "should_retry": "yes"}):
        response = httpx.post(f"{emu.base_url}/_emulator/faults", json=bad)
        assert response.status_code == 400, bad


def test_commit_then_drop(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    acct = express_account(client, emu)
    emu.inject_fault("commit_then_drop", "/v1/transfers", method="POST")
    with pytest.raises(stripe.APIConnectionError):
        client.v1.transfers.create(
            params={"amount": 250, "currency": "usd", "destination": acct.id}, options={"idempotency_key": "drop-1"}
        )
    transfers = client.v1.transfers.list().data
    assert len(transfers) == 1 and transfers[0].amount == 250
    again = client.v1.transfers.create(
        params={"amount": 250, "currency": "usd", "destination": acct.id}, options={"idempotency_key": "drop-1"}
    )
    assert again.id == transfers[0].id


def test_sdk_retry_after_drop_creates_exactly_one(emu: EmulatorHandle) -> None:
    plain = stripe_client(emu.base_url)
    acct = express_account(plain, emu)
    emu.inject_fault("commit_then_drop", "/v1/transfers", method="POST")
    retrying = stripe_client(emu.base_url, max_network_retries=2)
    transfer = retrying.v1.transfers.create(
        params={"amount": 300, "currency": "usd", "destination": acct.id}, options={"idempotency_key": "order-9"}
    )
    listed = plain.v1.transfers.list().data
    assert [t.id for t in listed] == [transfer.id]


def test_token_exchange_dropped_then_retried_revokes(emu: EmulatorHandle) -> None:
    """The OAuth token endpoint has no idempotency: an SDK retry after a drop reuses the code."""
    from tests.emulator.test_oauth import _connect

    code = _connect(emu, account="new")["code"][0]
    emu.inject_fault("commit_then_drop", "/oauth/token")
    retrying = stripe_client(emu.base_url, max_network_retries=1)
    with pytest.raises(stripe.oauth_error.InvalidGrantError):
        retrying.oauth.token(params={"grant_type": "authorization_code", "code": code})


def test_fault_listing_and_clearing(emu: EmulatorHandle) -> None:
    emu.inject_fault("http_500", "/v1/balance", count=3)
    listed = emu.http.get("/_emulator/faults").json()
    assert listed["requests"][0]["count"] == 3
    emu.clear_faults()
    assert emu.http.get("/_emulator/faults").json()["requests"] == []
    bad = emu.http.post("/_emulator/faults", json={"kind": "meteor"})
    assert bad.status_code == 400


def test_a_held_request_counts_as_in_flight_until_it_has_run(emu: EmulatorHandle) -> None:
    """What the fault sweep waits on: the hold outlives the client, then the request still runs."""
    before = emu.state()["counts"]["accounts"]
    emu.inject_fault("delay", "/v1/accounts", method="POST", seconds=1.0)
    impatient = stripe_client(emu.base_url, http_client=stripe.HTTPXClient(timeout=0.3, allow_sync_methods=True),
                              max_network_retries=0)
    with pytest.raises(stripe.APIConnectionError):
        impatient.v1.accounts.create(params={"type": "express"})

    held = emu.state()
    assert held["in_flight"] == 1  # the control request itself is not counted
    assert held["counts"]["accounts"] == before

    emu.wait_idle(timeout=10)
    settled = emu.state()
    assert settled["in_flight"] == 0
    assert settled["counts"]["accounts"] == before + 1
