"""No configured secret reaches a page (issue 8): every page, rendered for the admin (who sees all
of them) on seeded data, with every secret configured and Stripe unreachable, so the pages that
talk to Stripe render their error paths too. The whole element tree is scanned, not only text."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard.navigation import PAGES
from tests.factories import (
    TEST_CHAT_WEBHOOK_TOKEN,
    TEST_CONNECT_WEBHOOK_SECRET,
    TEST_JWT_SECRET,
    TEST_SMTP_PASSWORD,
    TEST_WEBHOOK_SECRET,
)
from tests.factories_dashboard import open_page, seed_many
from tests.secret_scan import SECRETS  # the same secrets the log scan looks for


def _rendered(node: Any) -> list[str]:
    """Every element's protobuf as text: labels, values, help, dataframes, exceptions."""
    found = [str(node.proto)] if getattr(node, "proto", None) is not None else []
    for child in getattr(node, "children", {}).values():
        found.extend(_rendered(child))
    return found


@pytest.fixture
def every_secret_configured(dashboard_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", TEST_WEBHOOK_SECRET)
    monkeypatch.setenv("STRIPE_CONNECT_WEBHOOK_SECRET", TEST_CONNECT_WEBHOOK_SECRET)
    monkeypatch.setenv("JWT_SECRET", TEST_JWT_SECRET)
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_USERNAME", "ops")
    monkeypatch.setenv("SMTP_PASSWORD", TEST_SMTP_PASSWORD)
    monkeypatch.setenv("SMTP_SENDER", "ops@connect-ops.test")
    monkeypatch.setenv("ALERT_CHAT_WEBHOOK_URL",
                       f"http://127.0.0.1:9/hooks/{TEST_CHAT_WEBHOOK_TOKEN}")


@pytest.mark.parametrize("page", [spec.file for spec in PAGES])
def test_no_secret_on_any_page(app, session_factory, every_secret_configured, page) -> None:
    seed_many(session_factory, 14)
    at = open_page(app, page, "admin")
    for button in at.button:  # the actions a page offers without a form to fill
        if button.label in ("Run reconciliation", "Sync all accounts from Stripe"):
            button.click().run()
    rendered = "\n".join(_rendered(at._tree))
    assert len(rendered) > 200, "nothing rendered: the scan would prove nothing"
    leaked = [secret[:6] + "…" for secret in SECRETS if secret in rendered]
    assert leaked == [], f"{page} shows a configured secret"
