"""Emulator configuration: one frozen object read from the environment (and `.env`).

The emulator stands in for Stripe, so its settings mirror what a Stripe account holds: the
platform's OAuth client id, the redirect URIs registered in the Dashboard, the webhook
endpoints and their signing secrets, and the platform's starting balance.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CALLBACK_PATH = "/api/v1/freelancer/stripe-connect-callback"
DEFAULT_BALANCE = "usd:5000000,eur:2000000,gbp:1000000,jpy:50000000"
DEFAULT_API_VERSION = "2024-04-10"

# Fields `POST /_emulator/config` may change at runtime (tests re-point one emulator).
RUNTIME_FIELDS = frozenset(
    {
        "webhook_url",
        "webhook_secret",
        "connect_webhook_url",
        "connect_webhook_secret",
        "extra_redirect_uris",
        "backend_url",
        "connect_client_id",
        "public_url",
        "webhook_max_attempts",
        "webhook_retry_delay",
        "payout_settle_seconds",
        "platform_country",
        "connect_live_client_id",
    }
)


class ConfigError(ValueError):
    """A setting has a value the emulator cannot run with (reported as one line, exit 2)."""


def parse_balance(text: str) -> tuple[tuple[str, int], ...]:
    """Parse `usd:5000000,eur:2000000` (minor units) into ((currency, amount), ...)."""
    out: dict[str, int] = {}
    for chunk in text.split(","):
        chunk = chunk.strip()
        if not chunk:
            continue
        currency, sep, amount = chunk.partition(":")
        currency = currency.strip().lower()
        if not sep or len(currency) != 3 or not currency.isalpha():
            raise ConfigError(f"EMULATOR_INITIAL_BALANCE: bad entry {chunk!r} (want cur:amount)")
        try:
            value = int(amount.strip())
        except ValueError:
            raise ConfigError(f"EMULATOR_INITIAL_BALANCE: amount {amount!r} is not an integer") from None
        if value < 0:
            raise ConfigError(f"EMULATOR_INITIAL_BALANCE: negative amount for {currency}")
        out[currency] = value
    return tuple(out.items())


def _url(name: str, value: str | None) -> str | None:
    """Return a stripped http(s) URL or None; anything else is a configuration error."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{name}: {value!r} is not an http(s) URL")
    return value


def _country(name: str, value: str | None) -> str:
    """A two-letter country code in upper case (default US)."""
    text = (value or "").strip().upper() or "US"
    if len(text) != 2 or not text.isalpha():
        raise ConfigError(f"{name}: {value!r} is not a two-letter country code")
    return text


def _split_uris(text: str | None) -> tuple[str, ...]:
    """Comma-separated redirect URIs, each checked to be an http(s) URL."""
    uris = []
    for part in (text or "").split(","):
        checked = _url("EMULATOR_REDIRECT_URIS", part)
        if checked:
            uris.append(checked)
    return tuple(uris)


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything the emulator needs to behave like one Stripe platform account."""

    host: str = "127.0.0.1"
    port: int = 12111
    connect_client_id: str = "ca_emulator_connectops"
    backend_url: str = "http://localhost:8000"
    extra_redirect_uris: tuple[str, ...] = ()
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    connect_webhook_url: str | None = None
    connect_webhook_secret: str | None = field(default=None, repr=False)
    initial_balance: tuple[tuple[str, int], ...] = parse_balance(DEFAULT_BALANCE)
    state_file: str | None = None
    public_url: str | None = None
    api_version: str = DEFAULT_API_VERSION
    webhook_max_attempts: int = 4
    webhook_retry_delay: float = 0.2
    payout_settle_seconds: int = 0
    #: Where the platform's own Stripe account is: decides which accounts are cross-border.
    platform_country: str = "US"
    #: The platform's live-mode OAuth client id, if a test wants a live/test mismatch answered.
    connect_live_client_id: str | None = None

    @property
    def redirect_uris(self) -> tuple[str, ...]:
        """Registered OAuth redirect URIs: the backend callback first, then the extras."""
        first = self.backend_url.rstrip("/") + CALLBACK_PATH
        return (first, *(u for u in self.extra_redirect_uris if u != first))

    def replace(self, **changes: Any) -> EmulatorConfig:
        """A copy with `changes` applied (used by the runtime config route and tests).

        Values come from JSON and flags (``Any``): names are checked here, the URIs and the
        country normalised.
        """
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        uris = changes.get("extra_redirect_uris")
        if isinstance(uris, str):
            changes["extra_redirect_uris"] = _split_uris(uris)
        elif isinstance(uris, list):
            changes["extra_redirect_uris"] = tuple(uris)
        if "platform_country" in changes:
            changes["platform_country"] = _country("platform_country",
                                                   str(changes["platform_country"] or ""))
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, load_dotenv_file: bool = True
    ) -> EmulatorConfig:
        """Read the configuration from `environ` (default os.environ, after loading `.env`)."""
        if environ is None:
            if load_dotenv_file:
                from dotenv import load_dotenv

                load_dotenv(os.path.join(os.getcwd(), ".env"), override=False)
            environ = os.environ
        env = environ
        port_text = env.get("EMULATOR_PORT", "12111")
        try:
            port = int(port_text)
        except ValueError:
            raise ConfigError(f"EMULATOR_PORT: {port_text!r} is not a port number") from None
        if not 0 <= port <= 65535:
            raise ConfigError(f"EMULATOR_PORT: {port} is out of range")
        client_id = env.get("STRIPE_CONNECT_CLIENT_ID", "").strip() or "ca_emulator_connectops"
        if not client_id.startswith("ca_"):
            raise ConfigError(f"STRIPE_CONNECT_CLIENT_ID: {client_id!r} must start with ca_")
        return cls(
            host=env.get("EMULATOR_HOST", "127.0.0.1").strip() or "127.0.0.1",
            port=port,
            connect_client_id=client_id,
            backend_url=_url("BACKEND_URL", env.get("BACKEND_URL")) or "http://localhost:8000",
            extra_redirect_uris=_split_uris(env.get("EMULATOR_REDIRECT_URIS")),
            webhook_url=_url("EMULATOR_WEBHOOK_URL", env.get("EMULATOR_WEBHOOK_URL")),
            webhook_secret=env.get("STRIPE_WEBHOOK_SECRET") or None,
            connect_webhook_url=_url(
                "EMULATOR_CONNECT_WEBHOOK_URL", env.get("EMULATOR_CONNECT_WEBHOOK_URL")
            ),
            connect_webhook_secret=env.get("STRIPE_CONNECT_WEBHOOK_SECRET") or None,
            initial_balance=parse_balance(env.get("EMULATOR_INITIAL_BALANCE") or DEFAULT_BALANCE),
            state_file=env.get("EMULATOR_STATE_FILE") or None,
            public_url=_url("EMULATOR_PUBLIC_URL", env.get("EMULATOR_PUBLIC_URL")),
            # The emulator stands for the platform's Stripe account: by default in the country
            # the product is configured with.
            platform_country=_country(
                "EMULATOR_PLATFORM_COUNTRY",
                env.get("EMULATOR_PLATFORM_COUNTRY") or env.get("STRIPE_PLATFORM_COUNTRY")),
        )
