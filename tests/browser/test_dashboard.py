"""The dashboard in real Chromium against ``streamlit run``, the emulator and the companion.

What AppTest cannot show: the login form in a browser, the OAuth redirect dance from a link the
dashboard issued (emulator consent page → companion callback), a real double click on the
payout button (exactly one transfer at the emulator), the manager's sidebar, and logging out.
Screenshots of every page land in ``test-artifacts/screenshots/`` (git-ignored).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from emulator.testing import EmulatorHandle
from lib.destinations import confirm_destination
from lib.freelancers import create_freelancer, get_freelancer
from lib.models import Payout, PayoutStatus
from lib.roles import Operator, Role
from tests.browser.dashboard_server import running_dashboard
from tests.dashboard.conftest import DEMO_PASSWORD

pytestmark = pytest.mark.browser

Screenshot = Callable[[str], Path]
#: Streamlit marks these once the data has rendered; wait for one before a screenshot.
RENDERED = '[data-testid="stDataFrame"], [data-testid="stMetric"], .vega-embed'


@pytest.fixture
def dashboard(companion: str, emulator_server: EmulatorHandle, database_url: str,
              tmp_path: Path) -> Iterator[str]:
    with running_dashboard(database_url=database_url, emulator_url=emulator_server.base_url,
                           backend_url=companion, workdir=tmp_path) as url:
        yield url


def settle(page: Page) -> None:
    """Wait until Streamlit has finished the current script run."""
    page.wait_for_timeout(300)
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=20_000)


def log_in(page: Page, url: str, username: str) -> None:
    page.goto(url)
    page.get_by_role("textbox", name="Username").fill(username)
    page.get_by_role("textbox", name="Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Login").click()
    expect(page.get_by_test_id("stSidebar").get_by_text("Signed in as")).to_be_visible()
    settle(page)


def log_out(page: Page) -> None:
    page.get_by_test_id("stSidebar").get_by_role("button", name="Log out").click()
    expect(page.get_by_role("textbox", name="Username")).to_be_visible()


def open_page(page: Page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    expect(page.get_by_role("heading", name=title, level=1).first).to_be_visible()
    settle(page)


def sidebar_titles(page: Page) -> list[str]:
    # Each link's text is its material icon's ligature, then the title.
    return [t.strip().splitlines()[-1].strip()
            for t in page.get_by_test_id("stSidebarNavLink").all_inner_texts()]


def shoot(page: Page, screenshot: Screenshot, step: str, *, rendered: bool = True) -> None:
    if rendered:
        page.locator(RENDERED).first.wait_for(state="visible", timeout=20_000)
    screenshot(step)


def payouts(session_factory: sessionmaker[Session]) -> list[Payout]:
    with session_factory() as session:
        return list(session.scalars(select(Payout)))


def test_admin_connects_pays_once_and_manager_sees_two_pages(
    page: Page, dashboard: str, emulator_server: EmulatorHandle, session_factory: sessionmaker[Session],
    screenshot: Screenshot,
) -> None:
    with session_factory.begin() as session:
        grace = create_freelancer(session, name="Grace Hopper", email="grace@example.com",
                                  country="US")
        session.flush()
        grace_id = grace.id

    log_in(page, dashboard, "admin")
    screenshot("01-admin-signed-in")

    # Issue an OAuth link on Onboarding links and follow it as the freelancer would.
    open_page(page, "Onboarding links")
    page.get_by_text("OAuth link: connect an existing Standard account").click()
    settle(page)
    page.get_by_role("button", name="Generate link").click()
    code = page.get_by_test_id("stCode").first
    expect(code).to_contain_text("/oauth/authorize")
    settle(page)
    link = code.inner_text().strip()
    shoot(page, screenshot, "02-onboarding-link")

    consent = page.context.new_page()
    consent.goto(link)
    consent.get_by_role("button", name="Connect", exact=True).click()
    expect(consent).to_have_url(re.compile(r"/freelancer/stripe/success\?accountId=acct_"))
    with session_factory() as session:
        account_id = get_freelancer(session, freelancer_id=grace_id).stripe_account_id
    assert account_id and account_id.startswith("acct_")
    consent.close()
    # A new destination is paid once confirmed (issue 19): Grace confirms on her payment
    # settings (tests/browser/test_freelancer_connect.py shows that page).
    with session_factory.begin() as session:
        confirm_destination(session, operator=Operator(f"freelancer:{grace_id}",
                                                       frozenset({Role.FREELANCER})),
                            freelancer_id=grace_id, account_id=account_id)

    # The account shows as connected: on Accounts when that page lists it, and as a succeeded
    # link on Onboarding links either way.
    open_page(page, "Onboarding links")
    table = page.get_by_test_id("stDataFrame").first
    expect(table).to_contain_text("Succeeded")
    shoot(page, screenshot, "03-link-succeeded")
    open_page(page, "Accounts")
    if page.get_by_text("This page is being built.").count() == 0:
        # The accounts table: the first table not in the unconfirmed-destinations expander.
        accounts_table = page.locator('xpath=//*[@data-testid="stDataFrame"]'
                                      '[not(ancestor::*[@data-testid="stExpander"])]').first
        expect(accounts_table).to_contain_text(account_id, timeout=20_000)
    shoot(page, screenshot, "04-accounts", rendered=False)

    # Pay Grace, double-clicking the confirm button: exactly one transfer.
    open_page(page, "Payouts")
    page.get_by_role("textbox", name="Amount").fill("25.00")
    page.get_by_role("textbox", name="Description").fill("Browser test invoice")
    page.get_by_role("button", name="Check payout").click()
    submit = page.get_by_role("button", name="Confirm and send payout")
    expect(submit).to_be_enabled()
    settle(page)
    shoot(page, screenshot, "05-payout-preflight")
    submit.dblclick()
    expect(page.get_by_text("paid to Grace Hopper")).to_be_visible(timeout=20_000)
    settle(page)
    shoot(page, screenshot, "06-payout-paid", rendered=False)
    assert emulator_server.state()["counts"]["transfers"] == 1
    rows = payouts(session_factory)
    assert [(p.status, p.amount_minor) for p in rows] == [(PayoutStatus.PAID.value, 2500)]
    expect(page.get_by_text(rows[0].stripe_transfer_id or "-").first).to_be_visible()

    # Every other admin page renders (screenshots for a person to look at).
    for n, title in enumerate(["Approvals", "Reconciliation", "Webhooks and sync", "Audit log",
                               "Overview", "Requirements due", "Connection metrics",
                               "Alerts", "Outbox"], start=7):
        open_page(page, title)
        if title == "Reconciliation":
            page.get_by_role("button", name="Run reconciliation").click()
            settle(page)
        if title == "Alerts":  # issue 20: the recommended rules, then a check
            page.get_by_role("button", name="Add the recommended rules").click()
            settle(page)
        wait = title in {"Reconciliation", "Audit log", "Alerts", "Outbox"}
        shoot(page, screenshot, f"{n:02d}-{title.lower().replace(' ', '-')}", rendered=wait)
        assert page.get_by_test_id("stException").count() == 0, title
    log_out(page)
    # A reload is a new Streamlit session: the old cookie must not sign the admin back in.
    page.reload()
    expect(page.get_by_role("textbox", name="Username")).to_be_visible()
    screenshot("16-logged-out")

    # The manager sees only Overview and Connection metrics.
    log_in(page, dashboard, "manager")
    assert sidebar_titles(page) == ["Overview", "Connection metrics"]
    screenshot("17-manager")
    log_out(page)
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Payout)) == 1
