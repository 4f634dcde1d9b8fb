"""Every page, for each role, at 1440×900 on the demo data: the screenshots a person looks at.

The demo seed (``scripts.seed_demo``) runs against the emulator and the companion, so every
state the pages can show is there: accounts in every status, requirements past due, failed and
fixed bank payouts, a currency short until pending funds arrive and one that needs funds,
payouts awaiting approval. Screenshots land in ``test-artifacts/screenshots/tour-*.png``.

Checked in the browser on the way: no page raises, no metric label is cut off at this width,
the developer toolbar is hidden, Funding says which currency is short and until when, and the
account detail shows a freelancer's timeline.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from dashboard.navigation import PAGES
from emulator.testing import EmulatorHandle
from lib.roles import Operator
from lib.settings import Settings
from scripts.seed_demo import seed
from tests.browser.conftest import SCREENSHOTS
from tests.browser.dashboard_server import running_dashboard
from tests.browser.test_dashboard import RENDERED, log_in, log_out, settle, sidebar_titles
from tests.factories import make_settings

pytestmark = pytest.mark.browser

VIEWPORT: ViewportSize = {"width": 1440, "height": 900}
#: Pages that show nothing rendered until acted on (their info box is what a person sees).
NO_DATA_UNTIL_ACTED = {"Reconciliation", "Onboarding links"}


@pytest.fixture
def wide(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(20_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def demo(companion: str, emulator_server: EmulatorHandle, database_url: str, tmp_path: Path,
         service_settings: Settings) -> Iterator[str]:
    settings = make_settings(stripe_api_base=emulator_server.base_url,
                             stripe_connect_base=emulator_server.base_url,
                             backend_url=service_settings.backend_url,
                             database_url=database_url, stripe_max_network_retries=2)
    assert seed(settings) is True
    with running_dashboard(database_url=database_url,
                           emulator_url=emulator_server.base_url,
                           backend_url=companion, workdir=tmp_path) as url:
        yield url


def shot(page: Page, name: str) -> Path:
    """The page as a person first sees it at 1440×900, and (``-full``) all of it.

    Streamlit scrolls inside its main container, so a "full page" screenshot of the window is
    only the viewport: the full one is taken with the window as tall as the content.
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # Charts draw after the script run ends: wait until each has its canvas or svg.
    page.wait_for_function("""() => [...document.querySelectorAll(
        '[data-testid="stVegaLiteChart"]')].every(el => el.querySelector('canvas, svg'))""",
                           timeout=20_000)
    path = SCREENSHOTS / f"tour-{name}.png"
    page.screenshot(path=str(path))
    height = page.evaluate("""() => {
        const main = document.querySelector('[data-testid="stMain"]');
        return main ? main.scrollHeight : document.body.scrollHeight; }""")
    if height > VIEWPORT["height"]:
        page.set_viewport_size({"width": VIEWPORT["width"], "height": min(int(height), 8_000)})
        page.wait_for_timeout(400)
        page.screenshot(path=str(SCREENSHOTS / f"tour-{name}-full.png"))
        page.set_viewport_size(VIEWPORT)
        page.wait_for_timeout(200)
    return path


def open_titled(page: Page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    expect(page.get_by_role("heading", name=title, level=1).first).to_be_visible()
    settle(page)


def cut_off_metric_labels(page: Page) -> list[str]:
    """Metric labels, values and deltas whose text does not fit their box (an ellipsis a
    person cannot read)."""
    return page.evaluate("""() => [...document.querySelectorAll(
            '[data-testid="stMetricLabel"], [data-testid="stMetricValue"], ' +
            '[data-testid="stMetricDelta"]')]
        .filter(el => [el, ...el.querySelectorAll('*')].some(
            node => node.clientWidth > 0 && node.scrollWidth > node.clientWidth + 1))
        .map(el => el.innerText)""")


def slug(title: str) -> str:
    return title.lower().replace(" ", "-")


@pytest.mark.parametrize("role", ["admin", "finance", "manager"])
def test_every_page_for_each_role(wide: Page, demo: str, role: str) -> None:
    page = wide
    log_in(page, demo, role)
    operator = Operator.from_role_names(role, [role])
    expected = [p.title for p in PAGES if any(operator.can(a) for a in p.needs)]
    assert sidebar_titles(page) == expected
    # Operators get no developer menu.
    assert page.get_by_test_id("stMainMenu").count() == 0
    for number, title in enumerate(expected, start=1):
        open_titled(page, title)
        if title not in NO_DATA_UNTIL_ACTED | {"Payouts"}:
            page.locator(RENDERED).filter(visible=True).first.wait_for(state="visible",
                                                                       timeout=20_000)
        if title == "Reconciliation":
            page.get_by_role("button", name="Run reconciliation").click()
            settle(page)
        if title == "Payouts" and page.get_by_role("tab", name="Ledger").count():
            shot(page, f"{role}-{number:02d}-{slug(title)}-new-payout")
            page.get_by_role("tab", name="Ledger").click()
            settle(page)
        assert page.get_by_test_id("stException").count() == 0, (role, title)
        assert cut_off_metric_labels(page) == [], (role, title)
        shot(page, f"{role}-{number:02d}-{slug(title)}")
    log_out(page)


def test_funding_and_the_timeline_for_finance(wide: Page, demo: str) -> None:
    page = wide
    log_in(page, demo, "finance")

    open_titled(page, "Funding")
    expect(page.get_by_text("pending funds cover it on").first).to_be_visible()
    expect(page.get_by_text("beyond the pending funds").first).to_be_visible()
    expect(page.get_by_text("When pending funds become available")).to_be_visible()
    shot(page, "finance-funding-short-currencies")

    open_titled(page, "Failed bank payouts")
    expect(page.get_by_text("Still to fix their bank details")).to_be_visible()
    shot(page, "finance-failed-bank-payouts")

    # The first freelancer of the Accounts table: connected, paid, a bank payout refused.
    open_titled(page, "Accounts")
    chooser = page.get_by_role("combobox", name="Freelancer (from this page of the table)")
    chooser.click()
    chooser.fill("ada.lovelace.0@")   # the first payee: connected, paid, bank payouts refused
    page.keyboard.press("Enter")
    settle(page)
    expect(page.get_by_text("Timeline", exact=True)).to_be_visible()
    expect(page.get_by_text("entries, newest first").first).to_contain_text("bank payouts")
    page.get_by_text("Timeline", exact=True).scroll_into_view_if_needed()
    assert page.get_by_test_id("stException").count() == 0
    shot(page, "finance-account-timeline")


def test_a_charts_table_is_made_when_its_expander_opens(wide: Page, demo: str) -> None:
    """Connection metrics' "Table and CSV" expanders are lazy (their tables are made only
    while open): opening one in a real browser reruns the page and shows the table and its
    CSV button; closed ones still hold nothing."""
    page = wide
    log_in(page, demo, "manager")
    open_titled(page, "Connection metrics")
    main = page.get_by_test_id("stMain")
    expanders = main.get_by_test_id("stExpander")
    expect(expanders.first).to_be_visible()
    assert main.get_by_test_id("stDataFrame").count() == 0
    funnel = expanders.nth(1)
    funnel.get_by_text("Table and CSV").click()
    settle(page)
    expect(funnel.get_by_test_id("stDataFrame")).to_be_visible()
    expect(funnel.get_by_role("button", name="Download CSV")).to_be_visible()
    assert main.get_by_test_id("stDataFrame").count() == 1
    assert page.get_by_test_id("stException").count() == 0
    funnel.scroll_into_view_if_needed()
    shot(page, "manager-metrics-funnel-table")
    log_out(page)
