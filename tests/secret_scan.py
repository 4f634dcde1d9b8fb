"""A pytest plugin: every log record of the whole run is scanned for the test secrets.

Issue 8: "a test scans the logs of a full test run for every configured secret value and fails
on a hit". The handler sits on the root logger at DEBUG for the entire session, formats each
record as a handler would, and remembers where a secret appeared; the session fails at the end
(exit status 1) with the places listed and the secret itself masked.
"""

from __future__ import annotations

import logging

import pytest

from tests.factories import (
    TEST_CHAT_WEBHOOK_TOKEN,
    TEST_CONNECT_WEBHOOK_SECRET,
    TEST_JWT_SECRET,
    TEST_SECRET_KEY,
    TEST_SMTP_PASSWORD,
    TEST_WEBHOOK_SECRET,
)

#: Also the dashboard tests' cookie key (tests/dashboard/conftest.py).
TEST_COOKIE_KEY = "cookie-key-for-tests-only-0123456789"
SECRETS = (TEST_SECRET_KEY, TEST_WEBHOOK_SECRET, TEST_CONNECT_WEBHOOK_SECRET, TEST_JWT_SECRET,
           TEST_COOKIE_KEY, TEST_SMTP_PASSWORD, TEST_CHAT_WEBHOOK_TOKEN)


class SecretScanHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.hits: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except (TypeError, ValueError):
            return  # a malformed record is not ours to judge
        for secret in SECRETS:
            if secret in text:
                self.hits.append(f"{record.name}:{record.lineno}: "
                                 + text.replace(secret, "<SECRET>")[:300])


_handler = SecretScanHandler()


def pytest_configure(config: pytest.Config) -> None:
    root = logging.getLogger()
    root.addHandler(_handler)
    root.setLevel(logging.DEBUG)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    logging.getLogger().removeHandler(_handler)
    if _handler.hits:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = ["A configured secret appeared in the logs of this run:", *_handler.hits[:20]]
        if reporter is not None:
            reporter.write_line("\n".join(lines), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
