"""Builders for the settings and rows tests need (one place, so tests stay short)."""

from __future__ import annotations

from typing import Any

from lib.settings import Settings

TEST_SECRET_KEY = "sk_test_emulator_connectops"
TEST_CLIENT_ID = "ca_emulator_connectops"
TEST_JWT_SECRET = "jwt-secret-for-tests-only-0123456789abcdef"
TEST_WEBHOOK_SECRET = "whsec_platform_tests_only"
TEST_CONNECT_WEBHOOK_SECRET = "whsec_connect_tests_only"
TEST_SMTP_PASSWORD = "smtp-password-for-tests-only-0123456789"
#: A chat incoming webhook's URL is its credential: its last part is what must never show.
TEST_CHAT_WEBHOOK_TOKEN = "chat-webhook-token-for-tests-only-0123"


def make_settings(**overrides: Any) -> Settings:
    """Settings for a test: never read from .env, sensible test values, overrides on top."""
    values: dict[str, Any] = {
        "stripe_secret_key": TEST_SECRET_KEY,
        "stripe_connect_client_id": TEST_CLIENT_ID,
        "stripe_webhook_secret": TEST_WEBHOOK_SECRET,
        "stripe_connect_webhook_secret": TEST_CONNECT_WEBHOOK_SECRET,
        "jwt_secret": TEST_JWT_SECRET,
        "backend_url": "http://127.0.0.1:8000",
        "stripe_max_network_retries": 0,
        "stripe_timeout_seconds": 10,
        # The likely-duplicate guard (lib.payouts.duplicates) is off unless a test turns it on:
        # most tests pay one freelancer the same amount many times on purpose. Its own tests,
        # the page and API tests of the guard and the payout state machine run with it on.
        "payout_duplicate_window_days": 0,
    }
    values.update(overrides)
    # _env_file is pydantic-settings' __init__ argument, not a field, so mypy cannot see it.
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]
