"""The product's gateway scenarios, written once and run against two Stripes.

Every function here drives :class:`lib.stripe_gateway.StripeGateway` (the only door the product
has to Stripe) and asserts only what the product relies on. ``tests/contract/test_contract.py``
runs each of them against the emulator in the normal suite and, with the ``stripe_live`` marker
and ``STRIPE_LIVE_TEST_SECRET_KEY`` set, against Stripe's test mode, so the emulator is held to
what Stripe does: a scenario that passes here and fails there is an emulator bug (or a Stripe
rule that changed), to be fixed in the emulator first.

A scenario gets a :class:`ContractTarget`: the gateway under test, plus the few set-up actions
that differ between the two (funding the platform, an account that can receive transfers,
deleting what the scenario created). Set-up goes through the raw SDK or the emulator's control
API; what is asserted always goes through the gateway.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import stripe

from lib import errors
from lib.account_terms import FULL, RECIPIENT, AccountTerms, account_terms
from lib.stripe_gateway import StripeGateway, verify_webhook


@dataclass
class ContractTarget:
    """One Stripe to run the scenarios against."""

    name: str
    gateway: StripeGateway
    platform_country: str
    #: The platform's currency for transfers (the one it holds a balance in).
    currency: str
    #: Add ``amount`` (minor units) to the platform's available balance in ``currency``
    #: (what it returns is ignored).
    fund: Callable[[int], object]
    #: A connected account whose ``transfers`` capability is active (skips when there is none).
    payable_account: Callable[[], str]
    #: Delete an account a scenario created (test mode only; what it returns is ignored).
    delete_account: Callable[[str], object]
    #: Whether OAuth calls can run (they need the platform's client id).
    has_client_id: bool = True
    created: list[str] = field(default_factory=list)

    def key(self, label: str) -> str:
        """An idempotency key unique to this run (a rerun must not replay an old answer)."""
        return f"contract-{label}-{uuid.uuid4().hex}"

    def cleanup(self) -> None:
        for account_id in reversed(self.created):
            self.delete_account(account_id)
        self.created.clear()


def _abroad(platform_country: str) -> str:
    """A country Stripe lets this platform pay cross-border."""
    return "GB" if platform_country != "GB" else "FR"


def _create(t: ContractTarget, country: str, *, terms: AccountTerms | None = None) -> dict[str, Any]:
    account = t.gateway.create_express_account(
        email=f"contract+{uuid.uuid4().hex[:10]}@example.com", country=country,
        metadata={"created_by": "connect-ops-contract"}, idempotency_key=t.key("account"),
        terms=terms)
    t.created.append(account.id)
    return account.data


# ---- accounts: the terms Stripe accepts ---------------------------------------------------------


def recipient_account_and_onboarding_link(t: ContractTarget) -> None:
    """A cross-border freelancer: recipient agreement, transfers only, then an onboarding link."""
    country = _abroad(t.platform_country)
    account = _create(t, country)
    assert account["type"] == "express" and account["country"] == country
    assert account["tos_acceptance"]["service_agreement"] == RECIPIENT
    assert set(account["capabilities"]) == {"transfers"}
    assert account["charges_enabled"] is False and account["details_submitted"] is False
    assert account["metadata"] == {"created_by": "connect-ops-contract"}
    link = t.gateway.create_account_link(
        account_id=account["id"], refresh_url="https://example.com/contract/refresh",
        return_url="https://example.com/contract/return").data
    assert link["object"] == "account_link" and link["url"].startswith(("https://", "http://"))
    assert link["expires_at"] > link["created"]


def home_account_takes_card_payments_and_transfers(t: ContractTarget) -> None:
    """A freelancer in the platform's country: full agreement, both capabilities requested."""
    account = _create(t, t.platform_country)
    assert account["country"] == t.platform_country
    assert (account["tos_acceptance"].get("service_agreement") or FULL) == FULL
    assert {"card_payments", "transfers"} <= set(account["capabilities"])


def transfers_only_under_full_is_refused(t: ContractTarget) -> None:
    """Without Stripe's approval of the platform (the emulator's platform has none)."""
    with pytest.raises(errors.StripeRequestError) as refused:
        _create(t, t.platform_country,
                terms=AccountTerms(t.platform_country, FULL, ("transfers",)))
    assert refused.value.http_status == 400 and "card_payments" in refused.value.message


def card_payments_under_recipient_is_refused(t: ContractTarget) -> None:
    country = _abroad(t.platform_country)
    with pytest.raises(errors.StripeRequestError) as refused:
        _create(t, country, terms=AccountTerms(country, RECIPIENT,
                                               ("card_payments", "transfers")))
    assert refused.value.http_status == 400 and "card_payments" in refused.value.message


def cross_border_without_recipient_is_refused(t: ContractTarget) -> None:
    country = _abroad(t.platform_country)
    with pytest.raises(errors.StripeRequestError) as refused:
        _create(t, country, terms=AccountTerms(country, FULL, ("card_payments", "transfers")))
    assert refused.value.http_status == 400


def account_creation_is_idempotent(t: ContractTarget) -> None:
    """A double click (same key) creates one account; the same key with other terms is refused."""
    key = t.key("same-account")
    terms = account_terms(platform_country=t.platform_country,
                          freelancer_country=t.platform_country)
    first = t.gateway.create_express_account(email="twice@example.com", country=None,
                                             metadata={}, idempotency_key=key, terms=terms)
    t.created.append(first.id)
    again = t.gateway.create_express_account(email="twice@example.com", country=None,
                                             metadata={}, idempotency_key=key, terms=terms)
    assert again.id == first.id
    with pytest.raises(errors.StripeIdempotencyError):
        t.gateway.create_express_account(email="other@example.com", country=None, metadata={},
                                         idempotency_key=key, terms=terms)


def retrieve_and_list_with_paging(t: ContractTarget) -> None:
    """Newest first, one page at a time with ``starting_after``, every account reachable."""
    older = _create(t, t.platform_country)["id"]
    newer = _create(t, t.platform_country)["id"]
    assert t.gateway.retrieve_account(older).data["id"] == older
    first, more = t.gateway.list_accounts_page(limit=1)
    assert more is True and [a["id"] for a in first] == [newer]
    second, _ = t.gateway.list_accounts_page(limit=1, starting_after=newer)
    assert [a["id"] for a in second] == [older]
    seen: set[str] = set()
    for account in t.gateway.iter_accounts(page_size=2):
        seen.add(str(account["id"]))
        if {older, newer} <= seen:
            break
    assert {older, newer} <= seen


def unknown_account_is_refused(t: ContractTarget) -> None:
    """An account id Stripe never issued: refused, and not as a refused platform key."""
    with pytest.raises((errors.StripeRequestError, errors.StripeAccountAccessError)) as caught:
        t.gateway.retrieve_account("acct_1ContractNoSuch0")
    assert caught.value.http_status in (403, 404)
    assert not isinstance(caught.value, errors.StripeAuthenticationError)


# ---- money -------------------------------------------------------------------------------------


def balance_has_the_product_shape(t: ContractTarget) -> None:
    balance = t.gateway.retrieve_balance().data
    assert balance["object"] == "balance"
    for side in ("available", "pending"):
        assert balance[side], side
        for entry in balance[side]:
            assert isinstance(entry["amount"], int) and len(entry["currency"]) == 3


def transfer_with_an_idempotency_key_and_its_replay(t: ContractTarget) -> None:
    destination = t.payable_account()
    t.fund(500)
    key = t.key("transfer")
    sent = t.gateway.create_transfer(amount_minor=123, currency=t.currency,
                                     destination=destination, idempotency_key=key,
                                     description="contract", metadata={"ledger_key": key},
                                     transfer_group="contract")
    assert sent.data["amount"] == 123 and sent.data["destination"] == destination
    assert sent.data["metadata"] == {"ledger_key": key}
    replayed = t.gateway.create_transfer(amount_minor=123, currency=t.currency,
                                         destination=destination, idempotency_key=key,
                                         description="contract", metadata={"ledger_key": key},
                                         transfer_group="contract")
    assert replayed.id == sent.id
    with pytest.raises(errors.StripeIdempotencyError):
        t.gateway.create_transfer(amount_minor=124, currency=t.currency,
                                  destination=destination, idempotency_key=key)
    assert t.gateway.retrieve_transfer(sent.id).data["amount"] == 123
    since = int(time.time()) - 3600
    listed = [tr["id"] for tr in t.gateway.iter_transfers(destination=destination,
                                                          created_gte=since)]
    assert listed.count(sent.id) == 1


def partial_reversal(t: ContractTarget) -> None:
    destination = t.payable_account()
    t.fund(500)
    sent = t.gateway.create_transfer(amount_minor=200, currency=t.currency,
                                     destination=destination, idempotency_key=t.key("rev-tr"))
    key = t.key("reversal")
    reversal = t.gateway.create_transfer_reversal(transfer_id=sent.id, amount_minor=50,
                                                  idempotency_key=key)
    assert reversal.data["amount"] == 50 and reversal.data["transfer"] == sent.id
    again = t.gateway.create_transfer_reversal(transfer_id=sent.id, amount_minor=50,
                                               idempotency_key=key)
    assert again.id == reversal.id
    assert t.gateway.retrieve_transfer(sent.id).data["amount_reversed"] == 50


# ---- OAuth errors that need no browser ----------------------------------------------------------


def oauth_errors_without_a_browser(t: ContractTarget) -> None:
    if not t.has_client_id:
        pytest.skip("set STRIPE_LIVE_CONNECT_CLIENT_ID (the test-mode ca_… id) for OAuth calls")
    with pytest.raises(errors.StripeOAuthError) as exchange:
        t.gateway.oauth_token("ac_contractnotarealcode000000000")
    assert exchange.value.stripe_code == "invalid_grant"
    with pytest.raises(errors.StripeOAuthError) as deauthorize:
        t.gateway.oauth_deauthorize("acct_1ContractNoSuch0")
    assert deauthorize.value.stripe_code == "invalid_client"


# ---- webhooks ----------------------------------------------------------------------------------


def signed_webhook_verification(t: ContractTarget) -> None:
    """Stripe's scheme (HMAC-SHA256 of "t.body"), checked on the raw bytes by the SDK."""
    secret = "whsec_contract_only"
    body = json.dumps({"id": "evt_contract", "object": "event", "type": "account.updated",
                       "data": {"object": {"id": "acct_1Contract"}}}).encode()
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret)
    assert verify_webhook(body, header, secret).type == "account.updated"
    for forged, signature in [(body + b" ", header), (body, header.replace("v1=", "v1=0")),
                              (body, None)]:
        with pytest.raises(errors.WebhookSignatureError):
            verify_webhook(forged, signature, secret)
    stale = stripe.WebhookSignature.generate_signature_header(
        body.decode(), secret, timestamp=int(time.time()) - 301)
    with pytest.raises(errors.WebhookSignatureError):
        verify_webhook(body, stale, secret)


SCENARIOS: tuple[Callable[[ContractTarget], None], ...] = (
    recipient_account_and_onboarding_link,
    home_account_takes_card_payments_and_transfers,
    transfers_only_under_full_is_refused,
    card_payments_under_recipient_is_refused,
    cross_border_without_recipient_is_refused,
    account_creation_is_idempotent,
    retrieve_and_list_with_paging,
    unknown_account_is_refused,
    balance_has_the_product_shape,
    transfer_with_an_idempotency_key_and_its_replay,
    partial_reversal,
    oauth_errors_without_a_browser,
    signed_webhook_verification,
)
