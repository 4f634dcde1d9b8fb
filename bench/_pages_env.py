"""The dashboard's environment for the page benchmark: a benchmark database and the demo users.

Stripe is pointed at a closed loopback port: no page may call Stripe just to render (a page
that did would show its error, and the benchmark reports it). Nothing is read from a
developer's ``.env``: the benchmark runs in a temporary working directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lib.operator_accounts import DEMO_AUTH_PATH

#: The demo users' published password (README, .streamlit/auth.example.yaml), not a secret.
DEMO_PASSWORD = "connect-ops-demo"  # noqa: S105
#: Settings names the dashboard reads; the machine's own values are left out.
_APP_PREFIXES = ("STRIPE_", "AUTH_", "PAYOUT_", "EMULATOR_")
_APP_NAMES = {"DATABASE_URL", "JWT_SECRET", "BACKEND_URL", "FRONTEND_URL", "LOG_LEVEL"}


def dashboard_settings(database_url: str) -> dict[str, str]:
    """The settings the dashboard needs, against ``database_url``."""
    return {
        "DATABASE_URL": database_url,
        "STRIPE_SECRET_KEY": "sk_test_bench_connectops",
        "STRIPE_CONNECT_CLIENT_ID": "ca_bench_connectops",
        "STRIPE_API_BASE": "http://127.0.0.1:9",
        "STRIPE_CONNECT_BASE": "http://127.0.0.1:9",
        "STRIPE_MAX_NETWORK_RETRIES": "0",
        "AUTH_CONFIG_PATH": str(DEMO_AUTH_PATH),
        "AUTH_COOKIE_KEY": "cookie-key-for-the-page-benchmark-0123456789",
        "LOG_LEVEL": "WARNING",
    }


def process_env(database_url: str) -> dict[str, str]:
    """This process's environment minus app settings, plus the dashboard's (for a subprocess)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(_APP_PREFIXES) and k not in _APP_NAMES}
    env.update(dashboard_settings(database_url))
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextmanager
def dashboard_environment(database_url: str, workdir: Path) -> Iterator[None]:
    """Set the dashboard's settings in this process and work in ``workdir``; restore after."""
    saved = dict(os.environ)
    cwd = Path.cwd()
    for name in list(os.environ):
        if name.startswith(_APP_PREFIXES) or name in _APP_NAMES:
            del os.environ[name]
    os.environ.update(dashboard_settings(database_url))
    os.chdir(workdir)
    try:
        yield
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved)
