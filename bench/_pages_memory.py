"""The Streamlit server's peak memory while a real browser logs in and opens every page.

``streamlit run dashboard/app.py`` runs headless on a free loopback port against the benchmark
database; Debian's chromium, driven by Playwright (never a downloaded browser), logs in as the
demo admin through the form and clicks every page in the sidebar, waiting for each run to end.
The figure is the server's ``VmHWM`` (peak resident set) from ``/proc/PID/status``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect, sync_playwright

from bench._pages_env import DEMO_PASSWORD, process_env
from dashboard.navigation import PAGES
from lib.settings import PROJECT_ROOT
from scripts.processes import ServerNotHealthy, wait_until_healthy

APP = PROJECT_ROOT / "dashboard" / "app.py"
HOST = "127.0.0.1"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
START_TIMEOUT = 60.0
PAGE_TIMEOUT_MS = 120_000


class MemoryRunFailed(RuntimeError):
    """The server or the browser could not complete the visit."""


@dataclass(frozen=True, slots=True)
class MemoryResult:
    peak_rss_mb: float
    rss_after_login_mb: float
    pages_visited: list[str]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise MemoryRunFailed(f"/proc/{pid}/status has no {field}")


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    try:
        wait_until_healthy(f"{url}/_stcore/health", process=process, timeout=START_TIMEOUT,
                           name="streamlit", log=log)
    except ServerNotHealthy as exc:
        raise MemoryRunFailed(str(exc)) from exc


def _settle(page: Page) -> None:
    """Until Streamlit has finished the current script run."""
    page.wait_for_timeout(300)
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=PAGE_TIMEOUT_MS)


def _visit(url: str, pid: int, progress: Callable[[str], None]) -> tuple[float, list[str]]:
    if not CHROMIUM.exists():
        raise MemoryRunFailed("Debian chromium is not installed (/usr/bin/chromium)")
    visited: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 900})
            context.set_default_timeout(PAGE_TIMEOUT_MS)
            page = context.new_page()
            page.goto(url)
            page.get_by_role("textbox", name="Username").fill("admin")
            page.get_by_role("textbox", name="Password").fill(DEMO_PASSWORD)
            page.get_by_role("button", name="Login").click()
            expect(page.get_by_test_id("stSidebar").get_by_text("Signed in as")).to_be_visible()
            _settle(page)
            after_login = _status_kb(pid, "VmRSS") / 1024
            for index, spec in enumerate(PAGES):
                started = time.perf_counter()
                page.get_by_test_id("stSidebarNav").get_by_role("link", name=spec.title, exact=True).click()
                if index:  # the first page is the default one, served at "/"
                    page.wait_for_url(f"**/{spec.file.removesuffix('.py')}*")
                _settle(page)
                progress(f"  browser: {spec.title:<22} {time.perf_counter() - started:6.2f} s, "
                         f"server RSS {_status_kb(pid, 'VmRSS') / 1024:6.1f} MB")
                visited.append(spec.title)
        except PlaywrightError as exc:
            raise MemoryRunFailed(f"the browser run failed after {visited}: {exc}") from exc
        finally:
            browser.close()
    return after_login, visited


def peak_memory(database_url: str, *, progress: Callable[[str], None]) -> MemoryResult:
    """Start the dashboard on ``database_url``, visit every page, read the server's VmHWM."""
    port = _free_port()
    url = f"http://{HOST}:{port}"
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as workdir:
        log_path = Path(workdir) / "streamlit.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(  # a fixed argv, no shell
                [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless",
                 "true", "--server.fileWatcherType", "none", "--browser.gatherUsageStats",
                 "false", "--server.port", str(port), "--server.address", HOST],
                cwd=workdir, env=process_env(database_url), stdout=log,
                stderr=subprocess.STDOUT)
            try:
                _wait_healthy(url, process, log_path)
                after_login, visited = _visit(url, process.pid, progress)
                peak = _status_kb(process.pid, "VmHWM") / 1024
            finally:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
    return MemoryResult(peak_rss_mb=peak, rss_after_login_mb=after_login, pages_visited=visited)
