"""``streamlit run dashboard/app.py`` as a subprocess for the browser tests.

A real server (not AppTest) so the browser exercises the websocket, the login form, widget
state across reruns and real double clicks. Its environment points at the test database, the
emulator and the companion; nothing is read from a developer's ``.env`` (it runs in a temporary
working directory). The process is always terminated, then killed if it lingers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lib.operator_accounts import DEMO_AUTH_PATH
from lib.settings import PROJECT_ROOT
from scripts.processes import wait_until_healthy
from tests.factories import TEST_CLIENT_ID, TEST_JWT_SECRET, TEST_SECRET_KEY
from tests.support.servers import HOST, free_port

APP = PROJECT_ROOT / "dashboard" / "app.py"
START_TIMEOUT = 60.0


def dashboard_env(*, database_url: str, emulator_url: str, backend_url: str) -> dict[str, str]:
    """The process environment: this machine's, minus app settings, plus the test's."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STRIPE_", "AUTH_", "PAYOUT_", "EMULATOR_"))
           and not k.startswith(("OIDC_", "PLATFORM_", "CORS_"))
           and k not in {"DATABASE_URL", "JWT_SECRET", "BACKEND_URL", "FRONTEND_URL",
                         "DASHBOARD_SIGN_IN"}}
    env.update({
        "DATABASE_URL": database_url,
        "STRIPE_SECRET_KEY": TEST_SECRET_KEY,
        "STRIPE_CONNECT_CLIENT_ID": TEST_CLIENT_ID,
        "STRIPE_API_BASE": emulator_url,
        "STRIPE_CONNECT_BASE": emulator_url,
        "STRIPE_MAX_NETWORK_RETRIES": "0",
        "BACKEND_URL": backend_url,
        "JWT_SECRET": TEST_JWT_SECRET,
        "AUTH_CONFIG_PATH": str(DEMO_AUTH_PATH),
        "AUTH_COOKIE_KEY": "cookie-key-for-browser-tests-0123456789",
        "PYTHONUNBUFFERED": "1",
    })
    return env


@contextmanager
def running_dashboard(*, database_url: str, emulator_url: str, backend_url: str,
                      workdir: Path, port: int | None = None,
                      extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """Start the dashboard (on ``port`` or a free one), wait for ``/_stcore/health``, yield its
    URL. ``extra_env`` adds settings (the OIDC sign-in); ``workdir/.streamlit/`` is where it
    reads ``secrets.toml`` from."""
    port = port or free_port()
    url = f"http://{HOST}:{port}"
    env = dashboard_env(database_url=database_url, emulator_url=emulator_url,
                        backend_url=backend_url)
    env.update(extra_env or {})
    # Streamlit reads .streamlit/config.toml from its working directory: the project's (theme,
    # the operators' toolbar) applies here as in `make demo`.
    (workdir / ".streamlit").mkdir(exist_ok=True)
    (workdir / ".streamlit" / "config.toml").write_bytes(
        (PROJECT_ROOT / ".streamlit" / "config.toml").read_bytes())
    log = (workdir / "streamlit.log").open("wb")
    process = subprocess.Popen(  # a fixed argv, no shell
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
         "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
         "--server.port", str(port), "--server.address", HOST],
        cwd=workdir, env=env,
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_until_healthy(f"{url}/_stcore/health", process=process, timeout=START_TIMEOUT,
                           name="streamlit", log=workdir / "streamlit.log")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()
