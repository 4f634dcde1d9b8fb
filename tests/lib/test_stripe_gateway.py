"""The gateway against the emulator with the unmodified SDK: base addresses, error mapping with
request ids, retries and timeouts as configured."""

from __future__ import annotations

import time

import pytest
import stripe

from lib import errors
from lib.stripe_gateway import StripeGateway, StripeRateLimitHintedError
from tests.factories import make_settings


def gateway_for(emulator, **overrides) -> StripeGateway:
    return StripeGateway(make_settings(stripe_api_base=emulator.base_url,
                                       stripe_connect_base=emulator.base_url, **overrides))


def express(gateway: StripeGateway, key: str = "k1") -> str:
    return gateway.create_express_account(email="ada@example.com", country="US",
                                          metadata={"freelancer_id": "1"},
                                          idempotency_key=key).id


def test_base_addresses_are_honoured(emulator) -> None:
    gateway = gateway_for(emulator)
    account_id = express(gateway)
    assert account_id.startswith("acct_")
    assert emulator.state()["counts"]["accounts"] >= 1
    url = gateway.oauth_authorize_url(state="s", redirect_uri="http://127.0.0.1:8000/cb",
                                      stripe_user={"email": "ada@example.com"})
    assert url.startswith(f"{emulator.base_url}/oauth/authorize?")
    assert "scope=read_write" in url and "client_id=ca_emulator_connectops" in url
    assert "stripe_user%5Bemail%5D=ada%40example.com" in url


def test_results_are_dicts_with_request_ids(emulator) -> None:
    gateway = gateway_for(emulator)
    result = gateway.retrieve_account(express(gateway))
    assert isinstance(result.data, dict)
    assert result.request_id and result.request_id.startswith("req_")
    assert result.data["capabilities"]["transfers"] in {"inactive", "pending"}


def test_account_creation_is_idempotent_per_key(emulator) -> None:
    gateway = gateway_for(emulator)
    assert express(gateway, "same") == express(gateway, "same")
    assert express(gateway, "other") != express(gateway, "same")


def test_not_found_maps_to_request_error_with_request_id(emulator) -> None:
    with pytest.raises(errors.StripeRequestError) as excinfo:
        gateway_for(emulator).retrieve_account("acct_doesnotexist")
    exc = excinfo.value
    assert exc.stripe_code == "resource_missing"
    assert exc.http_status == 404
    assert exc.request_id and exc.request_id.startswith("req_")
    assert "acct_doesnotexist" in exc.message


def test_balance_insufficient_is_a_request_error(emulator) -> None:
    gateway = gateway_for(emulator)
    account_id = express(gateway)
    emulator.set_account(account_id, onboarding="complete")
    with pytest.raises(errors.StripeRequestError) as excinfo:
        gateway.create_transfer(amount_minor=10**8, currency="usd", destination=account_id,
                                idempotency_key="too-much")
    assert excinfo.value.stripe_code == "balance_insufficient"


def test_bad_key_maps_to_authentication_error_without_the_key(emulator) -> None:
    # The emulator accepts any sk_test_ key and refuses live keys, as a test-mode Stripe would
    # refuse a key it does not know. Settings refuse a live key at a local server, so the
    # client is built by hand here.
    client = stripe.StripeClient("sk_live_" + "x" * 24,
                                 base_addresses={"api": emulator.base_url},
                                 max_network_retries=0)
    live = StripeGateway(make_settings(), client=client)
    with pytest.raises(errors.StripeAuthenticationError) as excinfo:
        live.retrieve_balance()
    assert "x" * 24 not in str(excinfo.value)


def test_oauth_errors_map_to_oauth_error(emulator) -> None:
    with pytest.raises(errors.StripeOAuthError) as excinfo:
        gateway_for(emulator).oauth_token("ac_unknown")
    assert excinfo.value.stripe_code == "invalid_grant"


def test_timeout_is_a_connection_error(emulator) -> None:
    gateway = gateway_for(emulator, stripe_timeout_seconds=0.5)
    emulator.inject_fault("delay", "/v1/balance", method="GET", seconds=2, count=1)
    started = time.monotonic()
    with pytest.raises(errors.StripeConnectionError) as excinfo:
        gateway.retrieve_balance()
    assert time.monotonic() - started < 1.9
    assert "outcome is unknown" in excinfo.value.message


def test_server_error_is_unavailable_after_configured_retries(emulator) -> None:
    emulator.inject_fault("http_500", "/v1/balance", method="GET", count=1)
    with pytest.raises(errors.StripeUnavailableError):
        gateway_for(emulator, stripe_max_network_retries=0).retrieve_balance()
    # With retries configured, the SDK retries the 500 and the second try succeeds.
    emulator.inject_fault("http_500", "/v1/balance", method="GET", count=1)
    balance = gateway_for(emulator, stripe_max_network_retries=2).retrieve_balance()
    assert balance.data["object"] == "balance"


def test_rate_limits_map_and_lock_timeout_is_retried(emulator) -> None:
    emulator.inject_fault("rate_limit", "/v1/balance", method="GET", count=1)
    with pytest.raises(errors.StripeRateLimitError) as excinfo:
        gateway_for(emulator, stripe_max_network_retries=2).retrieve_balance()
    assert excinfo.value.stripe_code == "rate_limit"
    emulator.inject_fault("lock_timeout", "/v1/balance", method="GET", count=1)
    with pytest.raises(errors.StripeRateLimitError) as excinfo:
        gateway_for(emulator, stripe_max_network_retries=0).retrieve_balance()
    assert excinfo.value.stripe_code == "lock_timeout"
    emulator.inject_fault("lock_timeout", "/v1/balance", method="GET", count=1)
    assert gateway_for(emulator, stripe_max_network_retries=2).retrieve_balance().data


def test_commit_then_drop_replays_with_the_same_key(emulator) -> None:
    gateway = gateway_for(emulator, stripe_max_network_retries=2)
    account_id = express(gateway)
    emulator.set_account(account_id, onboarding="complete")
    emulator.inject_fault("commit_then_drop", "/v1/transfers", method="POST", count=1)
    transfer = gateway.create_transfer(amount_minor=1234, currency="usd",
                                       destination=account_id, idempotency_key="payout-1")
    assert transfer.data["amount"] == 1234
    assert emulator.state()["counts"]["transfers"] == 1


def test_code_exchange_is_never_retried(emulator) -> None:
    # A 500 on /oauth/token with retries configured must surface, not be retried:
    # a second exchange of one code revokes the connection.
    emulator.inject_fault("http_500", "/oauth/token", method="POST", count=2)
    with pytest.raises(errors.StripeUnavailableError):
        gateway_for(emulator, stripe_max_network_retries=3).oauth_token("ac_whatever")
    # One request reached the emulator: one of the two armed faults is left.
    armed = emulator.http.get("/_emulator/faults").json()["requests"]
    assert [f["count"] for f in armed] == [1]


def test_list_accounts_pages(emulator) -> None:
    gateway = gateway_for(emulator)
    created = {express(gateway, f"k{i}") for i in range(5)}
    first, more = gateway.list_accounts_page(limit=2)
    assert len(first) == 2 and more
    seen = {a["id"] for a in gateway.iter_accounts(page_size=2)}
    assert created <= seen


def test_rate_limits_carry_stripes_retry_hints(emulator) -> None:
    gateway = gateway_for(emulator, stripe_max_network_retries=0)
    emulator.inject_fault("rate_limit", "/v1/balance", method="GET", count=1, retry_after=7)
    # Callers catch StripeRateLimitError; the hints ride on the gateway's subclass of it.
    with pytest.raises(errors.StripeRateLimitError) as excinfo:
        gateway.retrieve_balance()
    hinted = excinfo.value
    assert isinstance(hinted, StripeRateLimitHintedError)
    assert hinted.retry_after == 7.0 and hinted.should_retry is None
    emulator.inject_fault("lock_timeout", "/v1/balance", method="GET", count=1)
    with pytest.raises(errors.StripeRateLimitError) as excinfo:
        gateway.retrieve_balance()
    hinted = excinfo.value
    assert isinstance(hinted, StripeRateLimitHintedError)
    assert hinted.should_retry is True and hinted.retry_after is None
    emulator.inject_fault("lock_timeout", "/v1/balance", method="GET", count=1,
                          should_retry=False)
    with pytest.raises(errors.StripeRateLimitError) as excinfo:
        gateway_for(emulator, stripe_max_network_retries=2).retrieve_balance()
    hinted = excinfo.value
    assert isinstance(hinted, StripeRateLimitHintedError)
    assert hinted.should_retry is False
