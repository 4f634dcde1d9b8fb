"""The Stripe rules the product relies on, each refused by the emulator as Stripe refuses it.

One test per rule of the "Rules enforced" table in ``emulator/README.md`` that the older
emulator let through (issue 16): service agreements and capabilities at account creation,
recipient accounts and their 24-hour pending transfers, access to a deauthorized account, the
distinct OAuth errors of ``/oauth/deauthorize``, saved and replayed 500s, the API version pin,
and single-use Express login links.
"""

from __future__ import annotations

from typing import cast

import httpx
import pytest
import stripe
import stripe.oauth_error
from stripe.params import AccountCreateParams, AccountUpdateParams, TransferCreateParams

from emulator.config import DEFAULT_API_VERSION
from emulator.testing import EmulatorHandle, stripe_client
from tests.emulator.conftest import error_code, express_account, present
from tests.emulator.test_oauth import _connect

DAY = 86_400


def _create(client: stripe.StripeClient, **params: object) -> stripe.Account:
    # Any parameters a test names (valid or not): the emulator judges them, not the types.
    return client.v1.accounts.create(params=cast(AccountCreateParams, {"type": "express",
                                                                       **params}))


def _refused(client: stripe.StripeClient, **params: object) -> stripe.InvalidRequestError:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        _create(client, **params)
    assert caught.value.http_status == 400
    return caught.value


TRANSFERS = {"transfers": {"requested": True}}
BOTH = {"card_payments": {"requested": True}, "transfers": {"requested": True}}
RECIPIENT = {"service_agreement": "recipient"}


# ---- service agreements and capabilities ---------------------------------------------------------


def test_transfers_without_card_payments_under_the_full_agreement_is_refused(
    client: stripe.StripeClient, emu: EmulatorHandle,
) -> None:
    error = _refused(client, country="US", capabilities=TRANSFERS)
    assert "needs approval for accounts to have requested the `transfers` capability without " \
           "the `card_payments` capability" in error.user_message
    error = _refused(client, capabilities=TRANSFERS, tos_acceptance={"service_agreement": "full"})
    assert "`card_payments`" in error.user_message
    assert emu.state()["counts"]["accounts"] == 3  # only the seeded Standard accounts

    same_country = _create(client, country="US", capabilities=BOTH)
    assert present(same_country.tos_acceptance).service_agreement == "full"
    assert set(present(same_country.capabilities).to_dict()) == {"card_payments", "transfers"}


def test_card_payments_under_the_recipient_agreement_is_refused(
    client: stripe.StripeClient, emu: EmulatorHandle,
) -> None:
    error = _refused(client, country="GB", capabilities=BOTH, tos_acceptance=RECIPIENT)
    assert "recipient" in error.user_message and "card_payments" in error.user_message
    account = _create(client, country="GB", capabilities=TRANSFERS, tos_acceptance=RECIPIENT)
    assert present(account.tos_acceptance).service_agreement == "recipient"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.accounts.update(account.id, params=cast(AccountUpdateParams,
                                                          {"capabilities": BOTH}))
    assert "card_payments" in caught.value.user_message
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.accounts.capabilities.update(account.id, "card_payments",
                                               params={"requested": True})
    assert set(present(client.v1.accounts.retrieve(account.id).capabilities).to_dict()) == {
        "transfers"}


def test_card_payments_without_transfers_is_refused(client: stripe.StripeClient) -> None:
    error = _refused(client, capabilities={"card_payments": {"requested": True}})
    assert "`card_payments` without `transfers`" in error.user_message


def test_cross_border_needs_the_recipient_agreement(
    client: stripe.StripeClient, emu: EmulatorHandle,
) -> None:
    error = _refused(client, country="FR", capabilities=BOTH)
    assert "recipient" in error.user_message and error.param == "tos_acceptance[service_agreement]"
    _refused(client, country="FR", capabilities=TRANSFERS)
    abroad = _create(client, country="FR", capabilities=TRANSFERS, tos_acceptance=RECIPIENT)
    assert abroad.country == "FR" and abroad.default_currency == "eur"


def test_cross_border_only_reaches_the_supported_regions(
    client: stripe.StripeClient, emu: EmulatorHandle,
) -> None:
    for country in ("BR", "IN", "AU", "JP"):
        error = _refused(client, country=country, capabilities=TRANSFERS, tos_acceptance=RECIPIENT)
        assert error.param == "country", country
    for country in ("CA", "CH", "NO", "DE", "GB"):
        _create(client, country=country, capabilities=TRANSFERS, tos_acceptance=RECIPIENT)


def test_the_platform_country_is_configurable(
    client: stripe.StripeClient, emu: EmulatorHandle,
) -> None:
    emu.configure(platform_country="GB")
    try:
        assert client.v1.accounts.retrieve_current().country == "GB"
        home = _create(client, country="GB", capabilities=BOTH)
        assert present(home.tos_acceptance).service_agreement == "full"
        _refused(client, country="US", capabilities=BOTH)
        _create(client, country="US", capabilities=TRANSFERS, tos_acceptance=RECIPIENT)
    finally:
        emu.configure(platform_country="US")


def test_the_service_agreement_is_fixed_once_accepted(
    client: stripe.StripeClient, emu: EmulatorHandle,
) -> None:
    account = _create(client, country="GB", capabilities=TRANSFERS, tos_acceptance=RECIPIENT)
    emu.set_account(account.id, onboarding="complete")
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.accounts.update(account.id, params={"tos_acceptance": {"service_agreement": "full"}})
    assert caught.value.param == "tos_acceptance[service_agreement]"
    with pytest.raises(stripe.InvalidRequestError):
        _create(client, country="US", capabilities=BOTH,
                tos_acceptance={"service_agreement": "premium"})


def test_recipient_accounts_never_have_charges_enabled(
    client: stripe.StripeClient, emu: EmulatorHandle,
) -> None:
    account = _create(client, country="CA", capabilities=TRANSFERS, tos_acceptance=RECIPIENT)
    onboarded = emu.set_account(account.id, onboarding="complete")
    assert onboarded["charges_enabled"] is False and onboarded["payouts_enabled"] is True
    assert onboarded["capabilities"] == {"transfers": "active"}
    refused = emu.http.post(f"/_emulator/accounts/{account.id}", json={"charges_enabled": True})
    assert refused.status_code == 400 and "recipient" in refused.json()["error"]
    home = express_account(client, emu)
    assert client.v1.accounts.retrieve(home.id).charges_enabled is True


def test_transfers_to_recipient_accounts_become_available_24_hours_later(
    client: stripe.StripeClient, emu: EmulatorHandle,
) -> None:
    account = _create(client, country="GB", capabilities=TRANSFERS, tos_acceptance=RECIPIENT)
    emu.set_account(account.id, onboarding="complete")
    transfer = client.v1.transfers.create(
        params={"amount": 2_000, "currency": "usd", "destination": account.id})
    balance = client.v1.balance.retrieve(options={"stripe_account": account.id})
    usd = {b.currency: b.amount for b in balance.available}, {b.currency: b.amount for b in balance.pending}
    assert usd == ({"usd": 0}, {"usd": 2_000})
    with pytest.raises(stripe.InvalidRequestError) as caught:  # nothing available to reverse yet
        client.v1.transfers.reversals.create(transfer.id, params={"amount": 500})
    assert caught.value.code == "balance_insufficient"

    emu.advance_clock(DAY - 60)
    balance = client.v1.balance.retrieve(options={"stripe_account": account.id})
    assert [b.amount for b in balance.available if b.currency == "usd"] == [0]
    emu.advance_clock(60)
    balance = client.v1.balance.retrieve(options={"stripe_account": account.id})
    assert [b.amount for b in balance.available if b.currency == "usd"] == [2_000]
    assert [b.amount for b in balance.pending if b.currency == "usd"] == [0]
    assert client.v1.transfers.reversals.create(transfer.id, params={"amount": 500}).amount == 500

    home = express_account(client, emu)  # same-country accounts: available at once
    client.v1.transfers.create(params={"amount": 700, "currency": "usd", "destination": home.id})
    balance = client.v1.balance.retrieve(options={"stripe_account": home.id})
    assert [b.amount for b in balance.available if b.currency == "usd"] == [700]


# ---- a deauthorized account ----------------------------------------------------------------------


def _oauth_account(client: stripe.StripeClient, emu: EmulatorHandle) -> str:
    code = _connect(emu, account="new")["code"][0]
    return str(client.oauth.token(params={"grant_type": "authorization_code", "code": code})
               .stripe_user_id)


def test_a_deauthorized_account_answers_403_permission_errors(
    client: stripe.StripeClient, emu: EmulatorHandle,
) -> None:
    account_id = _oauth_account(client, emu)
    assert client.v1.accounts.retrieve(account_id).id == account_id
    client.oauth.deauthorize(params={"stripe_user_id": account_id})

    with pytest.raises(stripe.PermissionError) as caught:
        client.v1.accounts.retrieve(account_id)
    error = caught.value
    assert error.http_status == 403 and error_code(error) == "account_invalid"
    assert error.user_message == (
        "The provided key 'sk_test_********' does not have access to account "
        f"'{account_id}' (or that account does not exist). Application access may have been "
        "revoked.")
    with pytest.raises(stripe.PermissionError):
        client.v1.accounts.update(account_id, params={"metadata": {"a": "b"}})
    with pytest.raises(stripe.PermissionError):
        client.v1.accounts.login_links.create(account_id)
    with pytest.raises(stripe.PermissionError) as caught:
        client.v1.transfers.create(params={"amount": 100, "currency": "usd",
                                           "destination": account_id})
    assert error_code(caught.value) == "account_invalid"
    assert emu.state()["counts"]["transfers"] == 0
    with pytest.raises(stripe.InvalidRequestError) as missing:  # never existed: 404
        client.v1.accounts.retrieve("acct_00000000000never")
    assert missing.value.http_status == 404


# ---- OAuth deauthorize: one error per cause --------------------------------------------------------


def _deauthorize(emu: EmulatorHandle, **form: str) -> httpx.Response:
    return httpx.post(f"{emu.base_url}/oauth/deauthorize", data=form,
                      headers={"Authorization": "Bearer sk_test_emulator"})


def test_deauthorize_answers_a_distinct_error_per_cause(
    client: stripe.StripeClient, emu: EmulatorHandle,
) -> None:
    account_id = _oauth_account(client, emu)
    emu.configure(connect_live_client_id="ca_emulator_connectops_live")
    try:
        rotated = _deauthorize(emu, client_id="ca_rotatedaway", stripe_user_id=account_id)
        assert rotated.status_code == 401
        assert rotated.json() == {"error": "invalid_client",
                                  "error_description": "No such application: 'ca_rotatedaway'"}
        live = _deauthorize(emu, client_id="ca_emulator_connectops_live", stripe_user_id=account_id)
        assert live.status_code == 401 and live.json()["error"] == "invalid_client"
        assert "live mode" in live.json()["error_description"]
        missing = _deauthorize(emu, client_id="ca_emulator_connectops")
        assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
        express = express_account(client, emu)
        controlled = _deauthorize(emu, client_id="ca_emulator_connectops",
                                  stripe_user_id=express.id)
        assert controlled.status_code == 400 and controlled.json()["error"] == "invalid_request"
        assert client.v1.accounts.retrieve(account_id).id == account_id  # nothing was revoked

        done = _deauthorize(emu, client_id="ca_emulator_connectops", stripe_user_id=account_id)
        assert done.status_code == 200 and done.json() == {"stripe_user_id": account_id}
        again = _deauthorize(emu, client_id="ca_emulator_connectops", stripe_user_id=account_id)
        assert again.status_code == 401 and again.json() == {
            "error": "invalid_client",
            "error_description": f"This application is not connected to stripe account "
                                 f"{account_id}, or that account does not exist."}
        with pytest.raises(stripe.oauth_error.InvalidClientError):
            client.oauth.deauthorize(params={"stripe_user_id": account_id})
    finally:
        emu.configure(connect_live_client_id=None)


# ---- idempotency: a saved 500 is replayed ------------------------------------------------------------


def test_a_500_is_saved_under_its_key_and_replayed(
    client: stripe.StripeClient, emu: EmulatorHandle,
) -> None:
    account = express_account(client, emu)
    params: TransferCreateParams = {"amount": 900, "currency": "usd", "destination": account.id}
    emu.inject_fault("http_500", "/v1/transfers", method="POST")
    with pytest.raises(stripe.APIError) as first:
        client.v1.transfers.create(params=params, options={"idempotency_key": "pay-1"})
    assert first.value.http_status == 500
    assert present(first.value.headers)["stripe-should-retry"] == "false"
    retrying = stripe_client(emu.base_url, max_network_retries=2)  # the SDK honours the header
    with pytest.raises(stripe.APIError) as replay:
        retrying.v1.transfers.create(params=params, options={"idempotency_key": "pay-1"})
    assert replay.value.http_status == 500
    assert present(replay.value.headers)["idempotent-replayed"] == "true"
    assert present(replay.value.headers)["original-request"] == first.value.request_id
    assert replay.value.http_body == first.value.http_body
    assert emu.state()["counts"]["transfers"] == 0
    # Another key is another request.
    assert client.v1.transfers.create(params=params, options={"idempotency_key": "pay-2"}).amount == 900


def test_a_500_after_execution_hides_a_transfer_that_exists(
    client: stripe.StripeClient, emu: EmulatorHandle,
) -> None:
    account = express_account(client, emu)
    params: TransferCreateParams = {"amount": 400, "currency": "usd", "destination": account.id}
    emu.inject_fault("http_500", "/v1/transfers", method="POST", phase="after")
    for _ in range(2):
        with pytest.raises(stripe.APIError):
            client.v1.transfers.create(params=params, options={"idempotency_key": "pay-3"})
    assert [t.amount for t in client.v1.transfers.list().data] == [400]


def test_an_unsaved_500_lets_the_retry_execute(
    client: stripe.StripeClient, emu: EmulatorHandle,
) -> None:
    account = express_account(client, emu)
    params: TransferCreateParams = {"amount": 300, "currency": "usd", "destination": account.id}
    emu.inject_fault("http_500", "/v1/transfers", method="POST", saved=False)
    with pytest.raises(stripe.APIError) as first:
        client.v1.transfers.create(params=params, options={"idempotency_key": "pay-4"})
    assert "stripe-should-retry" not in present(first.value.headers)
    assert client.v1.transfers.create(params=params, options={"idempotency_key": "pay-4"}).amount == 300
    bad = emu.http.post("/_emulator/faults", json={"kind": "rate_limit", "saved": True})
    assert bad.status_code == 400


# ---- the API version ---------------------------------------------------------------------------------


def test_a_stripe_version_the_emulator_does_not_model_is_refused(emu: EmulatorHandle) -> None:
    assert stripe_client(emu.base_url).v1.balance.retrieve().object == "balance"
    newer = stripe_client(emu.base_url, stripe_version="2026-10-28.endive")
    with pytest.raises(stripe.InvalidRequestError) as caught:
        newer.v1.balance.retrieve()
    assert caught.value.http_status == 400
    assert caught.value.user_message.startswith("Invalid Stripe API version: 2026-10-28.endive")
    assert DEFAULT_API_VERSION in caught.value.user_message
    garbled = httpx.get(f"{emu.base_url}/v1/balance", headers={
        "Authorization": "Bearer sk_test_emulator", "Stripe-Version": "latest"})
    assert garbled.status_code == 400
    assert garbled.json()["error"]["message"] == "Invalid Stripe API version: latest"
    # No header: the account's default version, the one modelled.
    plain = httpx.get(f"{emu.base_url}/v1/balance", headers={"Authorization": "Bearer sk_test_emulator"})
    assert plain.status_code == 200 and plain.headers["stripe-version"] == DEFAULT_API_VERSION


# ---- Express login links -----------------------------------------------------------------------------


def test_login_links_are_single_use_and_lead_to_the_express_dashboard(
    client: stripe.StripeClient, emu: EmulatorHandle,
) -> None:
    account = express_account(client, emu)
    link = client.v1.accounts.login_links.create(account.id)
    page = httpx.get(link.url)
    assert page.status_code == 200 and account.id in page.text
    reused = httpx.get(link.url)
    assert reused.status_code == 410 and account.id not in reused.text
    late = client.v1.accounts.login_links.create(account.id)
    emu.advance_clock(301)
    assert httpx.get(late.url).status_code == 410
    unonboarded = express_account(client, emu, onboarded=False)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.accounts.login_links.create(unonboarded.id)
