"""bench.pages' memory run at a tiny size: a real browser logs in and opens every page."""

from __future__ import annotations

import os

import pytest

from bench._pages_memory import CHROMIUM, peak_memory
from bench.generate import Sizes, ensure_database
from dashboard.navigation import PAGES

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_the_server_is_measured_after_visiting_every_page(bench_location) -> None:
    if not CHROMIUM.exists():
        message = "Debian chromium not installed: apt-get install -y chromium"
        if os.environ.get("CONNECT_OPS_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    url = ensure_database(bench_location, "memory", Sizes.scaled(20), seed=3)
    lines: list[str] = []

    result = peak_memory(url, progress=lines.append)

    assert result.pages_visited == [spec.title for spec in PAGES]
    assert len(lines) == len(PAGES)
    # A Python process running Streamlit, SQLAlchemy and pandas: tens of MB at least, and the
    # peak is never below what was resident after the login.
    assert result.peak_rss_mb >= result.rss_after_login_mb > 50
