"""Real processes for the browser tests: the Stripe emulator, the companion service, Chromium.

The connect flow is a dance of redirects between three origins (the freelancer pages, the
consent/onboarding pages, the callback), so these tests run real HTTP servers on free
127.0.0.1 ports in threads, and drive Debian's chromium through Playwright. Playwright is never
allowed to download a browser: a missing ``/usr/bin/chromium`` skips these tests on a developer
machine and fails them in CI (``CONNECT_OPS_REQUIRE_BROWSER=1``), where a skip would hide a gap.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy.orm import Session, sessionmaker

from lib.settings import PROJECT_ROOT, Settings
from server.app import create_app
from tests.factories import TEST_CONNECT_WEBHOOK_SECRET, TEST_WEBHOOK_SECRET, make_settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
SCREENSHOTS = PROJECT_ROOT / "test-artifacts" / "screenshots"
HOST = "127.0.0.1"


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """uvicorn serving an app in a daemon thread; ``stop()`` asks it to exit and waits."""

    def __init__(self, app: FastAPI, port: int) -> None:
        config = uvicorn.Config(app, host=HOST, port=port, log_level="warning",
                                lifespan="on", access_log=False)
        self.server = uvicorn.Server(config)
        self.url = f"http://{HOST}:{port}"
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{port}",
                                       daemon=True)

    def start(self, timeout: float = 15.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the companion service did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


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
def screenshot(request: pytest.FixtureRequest, page: Page):  # type: ignore[no-untyped-def]
    """``screenshot("03-success")`` saves the current page under test-artifacts/screenshots."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    prefix = request.node.name.removeprefix("test_")

    def take(step: str) -> Path:
        path = SCREENSHOTS / f"{prefix}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[object]:
    """One local Stripe emulator for the session; each test resets and re-points it."""
    from emulator.testing import running_emulator

    with running_emulator() as running:
        yield running


@pytest.fixture
def companion_port() -> int:
    return free_port()


@pytest.fixture
def service_settings(emulator_server: object, companion_port: int) -> Settings:
    """The companion's settings: every Stripe call to the emulator, callbacks to this port."""
    base = emulator_server.base_url  # type: ignore[attr-defined]
    return make_settings(stripe_api_base=base, stripe_connect_base=base,
                         backend_url=f"http://{HOST}:{companion_port}")


@pytest.fixture
def companion(
    emulator_server: object, service_settings: Settings, companion_port: int,
    session_factory: sessionmaker[Session],
) -> Iterator[str]:
    """The companion service on the test database, with the emulator pointed back at it."""
    backend = service_settings.backend_url
    emulator_server.reset()  # type: ignore[attr-defined]
    emulator_server.configure(  # type: ignore[attr-defined]
        backend_url=backend,
        webhook_url=f"{backend}/api/v1/stripe/webhooks", webhook_secret=TEST_WEBHOOK_SECRET,
        connect_webhook_url=f"{backend}/api/v1/stripe/connect-webhooks",
        connect_webhook_secret=TEST_CONNECT_WEBHOOK_SECRET,
    )
    app = create_app(service_settings, session_factory=session_factory)
    server = ServerThread(app, companion_port).start()
    try:
        yield server.url
    finally:
        server.stop()
