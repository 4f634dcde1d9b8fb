"""Outreach in real Chromium: an admin emails a freelancer from Requirements due, the worker
delivers it to a local SMTP sink (aiosmtpd), and the freelancer follows the email's single-use
link to their payment settings; the same link used again is refused."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from emulator.testing import EmulatorHandle
from lib.models import OutreachContact
from lib.settings import Settings
from tests.browser.dashboard_server import running_dashboard
from tests.browser.test_dashboard import log_in, open_page, settle
from tests.factories import make_settings
from tests.factories_dashboard import add_freelancer
from tests.support.mail import SmtpSink, running_smtp_sink, text_of
from tests.support.servers import HOST

pytestmark = pytest.mark.browser

Screenshot = Callable[[str], Path]
SETTINGS_URL = re.compile(r"/freelancer/payment-settings$")


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with running_smtp_sink() as running:
        yield running


@pytest.fixture
def service_settings(emulator_server: EmulatorHandle, companion_port: int, sink: SmtpSink) -> Settings:
    """The companion's (and its worker's) settings, email going to the local sink."""
    base = emulator_server.base_url
    return make_settings(stripe_api_base=base, stripe_connect_base=base,
                         backend_url=f"http://{HOST}:{companion_port}", smtp_host=HOST,
                         smtp_port=sink.port, smtp_security="none",
                         smtp_sender="Payments <payments@connect-ops.test>")


@pytest.fixture
def dashboard(companion: str, emulator_server: EmulatorHandle, database_url: str,
              tmp_path: Path) -> Iterator[str]:
    with running_dashboard(database_url=database_url, emulator_url=emulator_server.base_url,
                           backend_url=companion, workdir=tmp_path) as url:
        yield url


def test_admin_emails_a_freelancer_who_follows_the_link_to_payment_settings(
    page: Page, dashboard: str, companion: str, sink: SmtpSink,
    session_factory: sessionmaker[Session], screenshot: Screenshot,
) -> None:
    with session_factory.begin() as session:
        add_freelancer(session, state="restricted", name="Grace Hopper",
                       email="grace@example.com")
        add_freelancer(session, state="disabled", name="Alan Turing", email="alan@example.com")

    page.set_viewport_size({"width": 1440, "height": 900})
    log_in(page, dashboard, "admin")
    open_page(page, "Requirements due")
    picker = page.get_by_test_id("stMultiSelect").filter(has_text="Freelancers to email")
    picker.locator("input").click()
    page.keyboard.type("Grace")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    settle(page)
    page.get_by_role("button", name="Preview emails").click()
    expect(page.get_by_text("1 freelancer(s) will get an email")).to_be_visible()
    settle(page)
    screenshot("01-preview")
    assert sink.messages == []  # nothing leaves before the confirmation
    page.get_by_role("button", name="Confirm and send 1 email").click()
    expect(page.get_by_text("1 email(s) queued")).to_be_visible(timeout=20_000)
    settle(page)
    screenshot("02-queued")

    # The companion's worker delivers it to the local sink.
    [message] = sink.wait_for(1)
    assert str(message["To"]) == "grace@example.com"
    text = text_of(message)
    assert "Identity document (passport, ID card or licence)" in text
    [link] = re.findall(r"http://\S+/freelancer/login\?token=\S+", text)
    assert link.startswith(companion)

    browser = page.context.browser
    assert browser is not None  # a context made by a launched browser has one
    freelancer = browser.new_context(viewport={"width": 1000, "height": 800})
    try:
        mail_page = freelancer.new_page()
        mail_page.goto(link)
        expect(mail_page.get_by_role("heading", name="Open your payment settings")).to_be_visible()
        screenshot_of(mail_page, screenshot, "03-link-opened")
        mail_page.get_by_role("button", name="Continue to payment settings").click()
        expect(mail_page).to_have_url(SETTINGS_URL)
        assert "token=" not in mail_page.url
        expect(mail_page.get_by_text("Identity document (passport, ID card or licence)")
               ).to_be_visible()
        screenshot_of(mail_page, screenshot, "04-payment-settings")
        # The same link again (a forwarded email, another device): refused.
        again = freelancer.new_page()
        again.goto(link)
        expect(again.get_by_text("This link was already used.", exact=False)).to_be_visible()
    finally:
        freelancer.close()
    with session_factory() as session:
        contact = session.scalars(select(OutreachContact)).one()
    assert contact.link_opened_at is not None

    # The desk shows it: contacted once, the link opened.
    open_page(page, "Requirements due")
    table = page.get_by_test_id("stDataFrame").last
    expect(table).to_contain_text("opened the link", timeout=20_000)
    screenshot("05-desk-after")


def screenshot_of(page: Page, screenshot: Screenshot, step: str) -> None:
    """The freelancer's page, saved under the test's screenshot name."""
    path = screenshot(step)  # the admin's page first, then overwrite with the freelancer's
    page.screenshot(path=str(path), full_page=True)
