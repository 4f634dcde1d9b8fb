"""Authentication, routing, headers and idempotency, as Stripe behaves on the wire."""

from __future__ import annotations

import threading

import httpx
import pytest
import stripe
from stripe.params import TransferCreateParams

from emulator.testing import EmulatorHandle, stripe_client
from scripts.processes import wait_until
from tests.emulator.conftest import express_account, present


@pytest.mark.parametrize("key", ["sk_live_" + "abcdefghijklmnop1234", "garbage", "pk_test_abcdefgh12345678"])
def test_non_test_secret_keys_get_401(emu: EmulatorHandle, key: str) -> None:
    with pytest.raises(stripe.AuthenticationError) as exc:
        stripe_client(emu.base_url, api_key=key).v1.accounts.list()
    assert exc.value.http_status == 401
    assert key not in str(exc.value)
    if key.startswith("sk_live_"):
        assert "Invalid API Key provided: sk_live_" in str(exc.value) and str(exc.value).endswith("1234")


def test_basic_auth_like_curl(emu: EmulatorHandle) -> None:
    response = httpx.get(f"{emu.base_url}/v1/balance", auth=("sk_test_curl", ""))
    assert response.status_code == 200
    assert response.headers["request-id"].startswith("req_")
    missing = httpx.get(f"{emu.base_url}/v1/balance")
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "invalid_request_error"


def test_unknown_route_is_stripe_404(emu: EmulatorHandle) -> None:
    response = httpx.get(f"{emu.base_url}/v1/foo", auth=("sk_test_x", ""))
    assert response.status_code == 404
    assert response.headers["request-id"].startswith("req_")
    assert response.json()["error"]["message"].startswith("Unrecognized request URL (GET: /v1/foo)")
    delete = httpx.delete(f"{emu.base_url}/v1/transfers/tr_1", auth=("sk_test_x", ""))
    assert delete.status_code == 404


def test_idempotent_replay_returns_same_bytes(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    acct = express_account(client, emu)
    body = f"amount=700&currency=usd&destination={acct.id}"
    headers = {"Idempotency-Key": "pay-1", "Content-Type": "application/x-www-form-urlencoded"}
    first = httpx.post(f"{emu.base_url}/v1/transfers", content=body, headers=headers, auth=("sk_test_k", ""))
    second = httpx.post(f"{emu.base_url}/v1/transfers", content=body, headers=headers, auth=("sk_test_k", ""))
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert second.headers["idempotent-replayed"] == "true"
    assert first.headers["idempotency-key"] == "pay-1"
    assert second.headers["request-id"] != first.headers["request-id"]
    assert emu.state()["counts"]["transfers"] == 1
    # another key (or another account scope) is another request
    other = httpx.post(f"{emu.base_url}/v1/transfers", content=body, headers=headers, auth=("sk_test_other", ""))
    assert other.json()["id"] != first.json()["id"]


def test_idempotency_mismatch(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    acct = express_account(client, emu)
    opts: stripe.RequestOptions = {"idempotency_key": "same"}
    client.v1.transfers.create(params={"amount": 100, "currency": "usd", "destination": acct.id}, options=opts)
    with pytest.raises(stripe.IdempotencyError) as exc:
        client.v1.transfers.create(params={"amount": 101, "currency": "usd", "destination": acct.id}, options=opts)
    assert "Try using a key other than 'same'" in str(exc.value)


def test_error_is_replayed_even_after_top_up(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    acct = express_account(client, emu)
    emu.set_balance(100)
    opts: stripe.RequestOptions = {"idempotency_key": "big-one"}
    params: TransferCreateParams = {"amount": 5000, "currency": "usd", "destination": acct.id}
    with pytest.raises(stripe.InvalidRequestError) as first:
        client.v1.transfers.create(params=params, options=opts)
    emu.set_balance(1_000_000)
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.transfers.create(params=params, options=opts)
    assert first.value.code == again.value.code == "balance_insufficient"
    assert present(again.value.headers)["idempotent-replayed"] == "true"
    assert client.v1.transfers.create(params=params, options={"idempotency_key": "fresh"}).amount == 5000


def test_validation_errors_are_not_saved(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    acct = express_account(client, emu)
    opts: stripe.RequestOptions = {"idempotency_key": "retry-after-fix"}
    with pytest.raises(stripe.InvalidRequestError):
        # An unknown parameter, on purpose: the emulator must refuse it (and not save that).
        client.v1.transfers.create(params={"amount": 100, "currency": "usd", "destination": acct.id, "bogus": 1}, options=opts)  # type: ignore[typeddict-unknown-key]
    ok = client.v1.transfers.create(params={"amount": 100, "currency": "usd", "destination": acct.id}, options=opts)
    assert ok.amount == 100


def test_concurrent_request_with_key_in_flight_gets_409(client: stripe.StripeClient, emu: EmulatorHandle) -> None:
    acct = express_account(client, emu)
    emu.inject_fault("delay", "/v1/transfers", method="POST", seconds=1.0)
    body = f"amount=100&currency=usd&destination={acct.id}"
    headers = {"Idempotency-Key": "slow", "Content-Type": "application/x-www-form-urlencoded"}
    results: list[httpx.Response] = []

    def first() -> None:
        results.append(httpx.post(f"{emu.base_url}/v1/transfers", content=body, headers=headers, auth=("sk_test_k", ""), timeout=5))

    thread = threading.Thread(target=first)
    thread.start()
    # The first request is held at the emulator; its key is reserved a few awaits after the
    # emulator counts it in flight, far sooner than the second request's round trip.
    wait_until(lambda: emu.state()["in_flight"], timeout=10, what="the first request held")
    second = httpx.post(f"{emu.base_url}/v1/transfers", content=body, headers=headers, auth=("sk_test_k", ""))
    thread.join()
    assert second.status_code == 409
    assert second.json()["error"]["type"] == "idempotency_error"
    assert results[0].status_code == 200
    assert emu.state()["counts"]["transfers"] == 1


def test_get_query_string_with_brackets(emu: EmulatorHandle, client: stripe.StripeClient) -> None:
    express_account(client, emu)
    response = httpx.get(f"{emu.base_url}/v1/accounts?limit=1&expand%5B0%5D=data.capabilities", auth=("sk_test_x", ""))
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list" and body["url"] == "/v1/accounts" and len(body["data"]) == 1
