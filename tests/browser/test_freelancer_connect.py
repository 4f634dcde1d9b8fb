"""A freelancer connects Stripe in a real browser: OAuth for an existing account, onboarding for
a new one, then disconnect. What TestClient cannot show: the cross-origin redirect dance, the
session cookie surviving it, and the success page's timed return to payment settings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session, sessionmaker

from emulator.testing import EmulatorHandle
from lib.freelancers import create_freelancer, get_freelancer
from lib.settings import Settings
from server.links import freelancer_page_link

pytestmark = pytest.mark.browser

Screenshot = Callable[[str], Path]
SETTINGS_URL = re.compile(r"/freelancer/payment-settings(\?.*)?$")
SUCCESS_URL = re.compile(r"/freelancer/stripe/success\?accountId=acct_")


@pytest.fixture
def freelancer_id(session_factory: sessionmaker[Session]) -> int:
    with session_factory.begin() as session:
        return create_freelancer(session, name="Grace Hopper", email="grace@example.com",
                                 country="US").id


def open_payment_settings(page: Page, settings: Settings, freelancer_id: int) -> None:
    """Follow the freelancer's signed link: it lands on payment settings, token gone."""
    page.goto(freelancer_page_link(settings, freelancer_id, timedelta(minutes=10)))
    expect(page).to_have_url(SETTINGS_URL)
    assert "token=" not in page.url
    expect(page.get_by_test_id("status")).to_have_text("NOT_CONNECTED")


def account_of(session_factory: sessionmaker[Session], freelancer_id: int) -> str | None:
    with session_factory() as session:
        return get_freelancer(session, freelancer_id=freelancer_id).stripe_account_id


def test_connect_existing_account_with_oauth_then_disconnect(
    page: Page, companion: str, service_settings: Settings, emulator_server: EmulatorHandle,
    session_factory: sessionmaker[Session], freelancer_id: int, screenshot: Screenshot,
) -> None:
    open_payment_settings(page, service_settings, freelancer_id)
    screenshot("01-payment-settings")

    page.get_by_role("button", name="Connect with Stripe").click()
    expect(page).to_have_url(re.compile("^" + re.escape(emulator_server.base_url)))
    screenshot("02-consent")
    page.get_by_role("button", name="Connect", exact=True).click()

    expect(page).to_have_url(SUCCESS_URL)
    expect(page.get_by_role("heading", name="Successfully Connected!")).to_be_visible()
    account_id = page.get_by_test_id("account-id").inner_text()
    assert re.fullmatch(r"acct_[A-Za-z0-9]+", account_id)
    screenshot("03-success")

    # The meta refresh returns after 3 s, with the session cookie that survived the dance.
    expect(page).to_have_url(SETTINGS_URL, timeout=10_000)
    expect(page.get_by_test_id("status")).to_have_text("ACTIVE")
    expect(page.get_by_test_id("account-id")).to_have_text(account_id)
    assert account_of(session_factory, freelancer_id) == account_id
    screenshot("04-connected")

    page.get_by_role("link", name="Disconnect Stripe Account").click()
    expect(page.get_by_text("Are you sure you want to disconnect your Stripe account?")).to_be_visible()
    screenshot("05-confirm-disconnect")
    page.get_by_role("button", name="Yes, disconnect").click()

    expect(page).to_have_url(SETTINGS_URL)
    expect(page.get_by_text("Your Stripe account was disconnected.")).to_be_visible()
    expect(page.get_by_test_id("status")).to_have_text("NOT_CONNECTED")
    assert account_of(session_factory, freelancer_id) is None
    screenshot("06-disconnected")


def test_create_new_account_through_onboarding(
    page: Page, companion: str, service_settings: Settings, emulator_server: EmulatorHandle,
    session_factory: sessionmaker[Session], freelancer_id: int, screenshot: Screenshot,
) -> None:
    open_payment_settings(page, service_settings, freelancer_id)
    screenshot("01-payment-settings")

    page.get_by_role("button", name="Create a new Stripe account").click()
    expect(page).to_have_url(re.compile("^" + re.escape(emulator_server.base_url)))
    screenshot("02-onboarding")
    page.get_by_role("button", name="Complete onboarding").click()

    expect(page).to_have_url(SUCCESS_URL)
    account_id = page.get_by_test_id("account-id").inner_text()
    screenshot("03-success")

    expect(page).to_have_url(SETTINGS_URL, timeout=10_000)
    expect(page.get_by_test_id("status")).to_have_text("ACTIVE")
    expect(page.get_by_test_id("account-id")).to_have_text(account_id)
    expect(page.get_by_role("button", name="Finish onboarding")).to_have_count(0)
    assert account_of(session_factory, freelancer_id) == account_id
    screenshot("04-connected")


def test_leave_onboarding_incomplete_then_finish_it(
    page: Page, companion: str, service_settings: Settings, emulator_server: EmulatorHandle,
    session_factory: sessionmaker[Session], freelancer_id: int, screenshot: Screenshot,
) -> None:
    open_payment_settings(page, service_settings, freelancer_id)
    page.get_by_role("button", name="Create a new Stripe account").click()
    page.get_by_role("button", name="Leave incomplete").click()

    # Details were submitted but requirements remain: back on payment settings (through the
    # success page, as Stripe counts the details as submitted), not payable, with a way on.
    expect(page).to_have_url(SETTINGS_URL, timeout=10_000)
    expect(page.get_by_test_id("status")).not_to_have_text("ACTIVE")
    expect(page.get_by_test_id("requirements")).to_be_visible()
    screenshot("01-incomplete")

    page.get_by_role("button", name="Finish onboarding").click()
    page.get_by_role("button", name="Complete onboarding").click()

    expect(page).to_have_url(SUCCESS_URL)
    expect(page).to_have_url(SETTINGS_URL, timeout=10_000)
    expect(page.get_by_test_id("status")).to_have_text("ACTIVE")
    screenshot("02-finished")


def test_denying_consent_explains_and_offers_to_try_again(
    page: Page, companion: str, service_settings: Settings,
    session_factory: sessionmaker[Session], freelancer_id: int, screenshot: Screenshot,
) -> None:
    open_payment_settings(page, service_settings, freelancer_id)
    page.get_by_role("button", name="Connect with Stripe").click()
    page.get_by_role("button", name="Deny").click()

    expect(page).to_have_url(re.compile(r"/freelancer/stripe/error\?reason=access_denied$"))
    expect(page.get_by_text("You denied the authorization request.")).to_be_visible()
    screenshot("01-error")

    page.get_by_role("link", name="Try Again").click()
    expect(page).to_have_url(SETTINGS_URL)
    expect(page.get_by_test_id("status")).to_have_text("NOT_CONNECTED")
    assert account_of(session_factory, freelancer_id) is None


def test_a_new_destination_is_shown_and_confirmed(
    page: Page, companion: str, service_settings: Settings, emulator_server: EmulatorHandle,
    session_factory: sessionmaker[Session], freelancer_id: int, screenshot: Screenshot,
) -> None:
    """Issue 19: whoever completed the consent, the page shows the account as Stripe reports
    it and holds payouts until the freelancer says it is theirs."""
    page.set_viewport_size({"width": 1440, "height": 900})
    open_payment_settings(page, service_settings, freelancer_id)
    page.get_by_role("button", name="Connect with Stripe").click()
    page.get_by_label(re.compile("Turing Translations")).check()  # not Grace's own account
    page.get_by_role("button", name="Connect", exact=True).click()
    expect(page).to_have_url(SETTINGS_URL, timeout=10_000)

    card = page.get_by_test_id("confirm-destination")
    expect(card.get_by_role("heading", name="Is this your Stripe account?")).to_be_visible()
    expect(page.get_by_test_id("confirm-email")).to_have_text("alan@example.com")
    expect(page.get_by_test_id("confirm-business-name")).to_have_text("Turing Translations")
    expect(page.get_by_test_id("confirm-bank")).to_have_text("STRIPE TEST BANK ••••6789")
    screenshot("01-confirm-destination")
    with session_factory() as session:
        held = get_freelancer(session, freelancer_id=freelancer_id).unconfirmed_account_id
    assert held == account_of(session_factory, freelancer_id)

    card.get_by_role("button", name="Yes, this is my account").click()
    expect(page.get_by_text("Thank you: payouts now go to this account.")).to_be_visible()
    expect(page.get_by_test_id("confirm-destination")).to_have_count(0)
    expect(page.get_by_test_id("account-business-name")).to_have_text("Turing Translations")
    screenshot("02-confirmed")
    with session_factory() as session:
        assert get_freelancer(session, freelancer_id=freelancer_id).unconfirmed_account_id is None
