"""Issue 16, finding 1: each Express account is created on the terms Stripe accepts for it.

Same country as the platform: the full agreement with card_payments and transfers. Another
country within the US, UK, EEA, Canada and Switzerland: the recipient agreement, transfers
only, the country passed. Anywhere else: refused before Stripe is called. The emulator enforces
Stripe's side of each rule, so these tests failed against it with the product of 99ac47c (which
asked for transfers alone, under no agreement, whatever the country).
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from emulator.page_driver import onboard
from lib.account_status import ConnectionStatus
from lib.account_terms import (
    FULL,
    RECIPIENT,
    AccountTerms,
    UnsupportedCountryError,
    account_terms,
)
from lib.connect_flow import connection_status, create_onboarding_link, handle_onboarding_return
from lib.errors import ConfigurationError, StripeRequestError, ValidationError
from lib.freelancers import create_freelancer
from lib.models import ConnectionAttempt
from lib.onboarding_urls import UrlPurpose
from lib.roles import Operator
from lib.settings import load_settings
from lib.stripe_gateway import StripeGateway
from tests.factories import make_settings
from tests.lib.test_connect_flow import signed_of

ADMIN = Operator.from_role_names("alice", ["admin"])


@pytest.mark.parametrize(("platform", "freelancer", "expected"), [
    ("US", "US", AccountTerms("US", FULL, ("card_payments", "transfers"))),
    ("US", None, AccountTerms("US", FULL, ("card_payments", "transfers"))),
    ("us", "us", AccountTerms("US", FULL, ("card_payments", "transfers"))),
    ("US", "GB", AccountTerms("GB", RECIPIENT, ("transfers",))),
    ("US", "FR", AccountTerms("FR", RECIPIENT, ("transfers",))),
    ("GB", "US", AccountTerms("US", RECIPIENT, ("transfers",))),
    ("DE", "CH", AccountTerms("CH", RECIPIENT, ("transfers",))),
    ("CA", "NO", AccountTerms("NO", RECIPIENT, ("transfers",))),
    ("AU", "AU", AccountTerms("AU", FULL, ("card_payments", "transfers"))),
])
def test_terms_by_country(platform: str, freelancer: str | None, expected: AccountTerms) -> None:
    assert account_terms(platform_country=platform, freelancer_country=freelancer) == expected


@pytest.mark.parametrize(("platform", "freelancer"), [("US", "BR"), ("US", "AU"), ("GB", "JP"),
                                                      ("AU", "US"), ("US", "IN")])
def test_countries_stripe_cannot_pay_are_refused_with_a_reason(platform: str,
                                                               freelancer: str) -> None:
    with pytest.raises(UnsupportedCountryError) as caught:
        account_terms(platform_country=platform, freelancer_country=freelancer)
    assert freelancer in caught.value.message and "Canada" in caught.value.message
    assert isinstance(caught.value, ValidationError)
    with pytest.raises(ValidationError):
        account_terms(platform_country="US", freelancer_country="France")


def test_the_platform_country_setting() -> None:
    assert make_settings().stripe_platform_country == "US"
    assert make_settings(stripe_platform_country=" gb ").stripe_platform_country == "GB"
    with pytest.raises(ConfigurationError, match="STRIPE_PLATFORM_COUNTRY"):
        load_settings(stripe_platform_country="United States")


def _freelancer(session_factory, country: str | None, email: str = "ada@example.com") -> int:
    with session_factory.begin() as session:
        return create_freelancer(session, name="Ada Lovelace", email=email, country=country).id


def _link(session_factory, gateway: StripeGateway, settings, freelancer_id: int):
    return create_onboarding_link(session_factory, gateway=gateway, settings=settings,
                                  operator=ADMIN, freelancer_id=freelancer_id)


@pytest.mark.parametrize(("platform", "country", "agreement", "capabilities", "charges"), [
    ("US", "US", "full", {"card_payments", "transfers"}, True),
    ("US", "FR", "recipient", {"transfers"}, False),
    ("GB", "US", "recipient", {"transfers"}, False),
    ("GB", "GB", "full", {"card_payments", "transfers"}, True),
])
def test_freelancers_here_and_abroad_onboard_and_become_payable(
    emulator, session_factory, platform: str, country: str, agreement: str,
    capabilities: set[str], charges: bool,
) -> None:
    settings = make_settings(stripe_api_base=emulator.base_url,
                             stripe_connect_base=emulator.base_url,
                             stripe_platform_country=platform)
    emulator.configure(backend_url=settings.backend_url, platform_country=platform)
    try:
        gateway = StripeGateway(settings)
        freelancer_id = _freelancer(session_factory, country)
        link = _link(session_factory, gateway, settings, freelancer_id)
        back = onboard(link.url, action="complete")
        result = handle_onboarding_return(session_factory, gateway=gateway,
                                          url=signed_of(settings, back, UrlPurpose.RETURN))
        assert result.completed and result.status is ConnectionStatus.ACTIVE
        account = gateway.retrieve_account(str(result.account_id)).data
        assert account["country"] == country
        assert account["tos_acceptance"]["service_agreement"] == agreement
        assert set(account["capabilities"]) == capabilities
        assert account["capabilities"]["transfers"] == "active"
        assert account["charges_enabled"] is charges
        with session_factory() as session:
            view = connection_status(session, freelancer_id=freelancer_id)
        assert view.verified  # payable whether or not it can take charges
    finally:
        emulator.configure(platform_country="US")


def test_an_unsupported_country_is_refused_before_stripe_is_called(emulator, session_factory
                                                                   ) -> None:
    settings = make_settings(stripe_api_base=emulator.base_url,
                             stripe_connect_base=emulator.base_url)
    gateway = StripeGateway(settings)
    freelancer_id = _freelancer(session_factory, "BR")
    before = emulator.state()["counts"]["accounts"]
    with pytest.raises(UnsupportedCountryError, match="BR"):
        _link(session_factory, gateway, settings, freelancer_id)
    assert emulator.state()["counts"]["accounts"] == before
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(ConnectionAttempt)) == 0
        assert connection_status(session, freelancer_id=freelancer_id).account_id is None


def test_the_gateway_sends_the_terms_it_is_given(emulator) -> None:
    """What Stripe answers to terms the product would never send (the contract suite too)."""
    gateway = StripeGateway(make_settings(stripe_api_base=emulator.base_url,
                                          stripe_connect_base=emulator.base_url))
    with pytest.raises(StripeRequestError, match="card_payments"):
        gateway.create_express_account(
            email="a@example.com", country="US", metadata={}, idempotency_key="terms-1",
            terms=AccountTerms("US", FULL, ("transfers",)))
    with pytest.raises(StripeRequestError, match="recipient"):
        gateway.create_express_account(
            email="a@example.com", country="FR", metadata={}, idempotency_key="terms-2",
            terms=AccountTerms("FR", FULL, ("card_payments", "transfers")))
