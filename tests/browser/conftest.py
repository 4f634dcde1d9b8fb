"""Real processes for the browser tests: the Stripe emulator, the companion service, Chromium.

The connect flow is a dance of redirects between three origins (the freelancer pages, the
consent/onboarding pages, the callback), so these tests run real HTTP servers on free
127.0.0.1 ports in threads, and drive Debian's chromium through Playwright. Playwright is never
allowed to download a browser: a missing ``/usr/bin/chromium`` skips these tests on a developer
machine and fails them in CI (``CONNECT_OPS_REQUIRE_BROWSER=1``), where a skip would hide a gap.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy.orm import Session, sessionmaker

from lib.settings import PROJECT_ROOT, Settings
from tests.factories import make_settings
from tests.support.servers import HOST, free_port, running_companion

if TYPE_CHECKING:  # the emulator is imported when its fixture first runs
    from emulator.testing import EmulatorHandle

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
SCREENSHOTS = PROJECT_ROOT / "test-artifacts" / "screenshots"
#: The ``screenshot`` fixture: saves the page as ``<test>-<step>.png``, returns its path.
Screenshot = Callable[[str], Path]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless; skipped (or failed in CI) when it is not installed."""
    if not CHROMIUM.exists():
        message = "Debian chromium not installed: apt-get install -y chromium"
        if os.environ.get("CONNECT_OPS_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (its own cookies) per test."""
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def screenshot(request: pytest.FixtureRequest, page: Page) -> Screenshot:
    """``screenshot("03-success")`` saves the current page under test-artifacts/screenshots."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    prefix = request.node.name.removeprefix("test_")

    def take(step: str) -> Path:
        path = SCREENSHOTS / f"{prefix}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorHandle]:
    """One local Stripe emulator for the session; each test resets and re-points it."""
    from emulator.testing import running_emulator

    with running_emulator() as running:
        yield running


@pytest.fixture
def companion_port() -> int:
    return free_port()


@pytest.fixture
def service_settings(emulator_server: EmulatorHandle, companion_port: int) -> Settings:
    """The companion's settings: every Stripe call to the emulator, callbacks to this port."""
    base = emulator_server.base_url
    return make_settings(stripe_api_base=base, stripe_connect_base=base,
                         backend_url=f"http://{HOST}:{companion_port}")


@pytest.fixture
def companion(
    emulator_server: EmulatorHandle, service_settings: Settings, companion_port: int,
    session_factory: sessionmaker[Session],
) -> Iterator[str]:
    """The companion service on the test database, with the emulator pointed back at it."""
    emulator_server.reset()
    with running_companion(emulator_server, service_settings, companion_port,
                           session_factory) as url:
        yield url
