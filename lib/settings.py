"""One typed settings object for every Connect Ops process.

Values come from the environment and, for a developer's convenience, a ``.env`` file in the
working directory (the environment wins). Variable names follow the platform's existing
deployment (``STRIPE_SECRET_KEY``, ``STRIPE_CONNECT_CLIENT_ID``, ``FRONTEND_URL`` ...).

Every field is optional at the type level because each process needs a different subset: the
migration command needs only ``DATABASE_URL``, the companion service also needs the Stripe key and
``JWT_SECRET``. Each entry point calls :meth:`Settings.require` with what it needs, which fails
with one clear line naming the variable and where to get it. Secrets are ``SecretStr`` so a repr,
a log line or a traceback shows ``**********``, never the value.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lib.errors import ConfigurationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SQLITE_PATH = PROJECT_ROOT / "data" / "connect_ops.db"
CALLBACK_PATH = "/api/v1/freelancer/stripe-connect-callback"

#: Where an operator finds each required value. Shown in the start-up error.
WHERE_TO_GET = {
    "STRIPE_SECRET_KEY": "Stripe Dashboard → Developers → API keys (sk_test_… for test mode)",
    "STRIPE_PUBLISHABLE_KEY": "Stripe Dashboard → Developers → API keys (pk_test_…)",
    "STRIPE_CONNECT_CLIENT_ID": "Stripe Dashboard → Settings → Connect → OAuth (ca_…)",
    "STRIPE_WEBHOOK_SECRET": "Stripe Dashboard → Developers → Webhooks → your platform endpoint → Signing secret (whsec_…)",
    "STRIPE_CONNECT_WEBHOOK_SECRET": "Stripe Dashboard → Developers → Webhooks → your Connect endpoint → Signing secret (whsec_…)",
    "JWT_SECRET": "any long random string, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`",
    "AUTH_COOKIE_KEY": "any long random string; it signs the dashboard's login cookie",
    "AUTH_CONFIG_PATH": "a YAML file of dashboard users (copy .streamlit/auth.example.yaml)",
    "BACKEND_URL": "the public base URL of the companion service, e.g. https://ops.example.com",
}


def normalise_database_url(url: str) -> str:
    """Accept Heroku-style ``postgres://`` URLs (psycopg 3 driver); anchor relative SQLite paths.

    ``sqlite:///data/x.db`` means the project's ``data/`` folder wherever the process starts,
    so the dashboard and the companion always open the same file.
    """
    url = url.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    sqlite_prefix = "sqlite:///"
    if url.startswith(sqlite_prefix):
        path = url[len(sqlite_prefix):]
        if path and path != ":memory:" and not path.startswith("/"):
            return sqlite_prefix + str(PROJECT_ROOT / path)
    return url


def _is_local_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Configuration shared by the dashboard, the companion service and the commands."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # Stripe
    stripe_secret_key: SecretStr | None = None
    stripe_publishable_key: str | None = None
    stripe_connect_client_id: str | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_connect_webhook_secret: SecretStr | None = None
    #: Unset means real Stripe. Set (e.g. to the emulator) to send every API call there.
    stripe_api_base: str | None = None
    #: Unset means connect.stripe.com. Set to send OAuth calls and links there.
    stripe_connect_base: str | None = None
    stripe_max_network_retries: int = Field(default=2, ge=0, le=10)
    stripe_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    stripe_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=120)

    # URLs
    frontend_url: str | None = None
    backend_url: str = "http://localhost:8000"

    # Storage and auth
    database_url: str = f"sqlite:///{DEFAULT_SQLITE_PATH}"
    jwt_secret: SecretStr | None = None
    auth_config_path: Path = PROJECT_ROOT / ".streamlit" / "auth.yaml"
    auth_cookie_key: SecretStr | None = None
    auth_cookie_name: str = "connect_ops_auth"
    auth_cookie_expiry_days: float = Field(default=1.0, gt=0, le=30)

    # Payout policy (integer minor units; see lib.money)
    payout_approval_threshold_minor: int = Field(default=100_000, ge=0)
    payout_max_minor: int = Field(default=5_000_000, gt=0)

    # The background worker (python -m lib.worker; see lib/worker.py)
    #: How long a claimed event or job is held before another worker may take it over. The
    #: worker renews its leases while it runs, so only a dead worker's lease expires.
    worker_lease_seconds: float = Field(default=120.0, ge=1, le=3600)
    #: How often the worker writes its heartbeat (and renews its leases).
    worker_heartbeat_seconds: float = Field(default=5.0, gt=0, le=300)
    #: How long an idle worker waits before looking for due events again.
    worker_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    #: Processing attempts of one event before it is dead-lettered (a person replays it).
    webhook_max_attempts: int = Field(default=10, ge=1, le=100)
    #: Backoff of a failed event: base × 2^(attempt-1), capped, plus up to 50 % jitter.
    webhook_retry_base_seconds: float = Field(default=30.0, gt=0, le=86_400)
    webhook_retry_max_seconds: float = Field(default=3600.0, gt=0, le=7 * 86_400)
    #: How often the worker syncs every connected account from Stripe.
    sync_interval_seconds: int = Field(default=6 * 3600, ge=60, le=7 * 86_400)

    # Logging
    log_level: str = "INFO"

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str) -> str:
        return normalise_database_url(value)

    @field_validator(
        "stripe_api_base", "stripe_connect_base", "frontend_url", "stripe_publishable_key",
        "stripe_connect_client_id", mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip().rstrip("/") if isinstance(value, str) else value

    @field_validator(
        "stripe_secret_key", "stripe_webhook_secret", "stripe_connect_webhook_secret",
        "jwt_secret", "auth_cookie_key", mode="before",
    )
    @classmethod
    def _blank_secret_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    # ---- derived facts -------------------------------------------------------------------

    @property
    def livemode(self) -> bool:
        """True when the secret key is a live-mode key."""
        key = self.stripe_secret_key.get_secret_value() if self.stripe_secret_key else ""
        return key.startswith(("sk_live_", "rk_live_"))

    @property
    def uses_local_stripe(self) -> bool:
        """True when Stripe calls go to a server on this machine (the emulator)."""
        return any(
            base is not None and _is_local_url(base)
            for base in (self.stripe_api_base, self.stripe_connect_base)
        )

    @property
    def stripe_mode_label(self) -> str:
        """'emulator', 'live' or 'test': what the dashboard banner shows."""
        if self.uses_local_stripe:
            return "emulator"
        return "live" if self.livemode else "test"

    @property
    def oauth_redirect_uri(self) -> str:
        """The callback Stripe redirects to; must be registered in the Stripe Dashboard."""
        return self.backend_url.rstrip("/") + CALLBACK_PATH

    # ---- start-up checks -----------------------------------------------------------------

    def require(self, *env_names: str) -> Settings:
        """Fail with one line naming the first missing variable, then check coherence."""
        for name in env_names:
            value = getattr(self, name.lower())
            if value is None or (isinstance(value, str) and not value):
                hint = WHERE_TO_GET.get(name, "see README.md → Configuration")
                raise ConfigurationError(f"{name} is not set: get it from {hint}.")
        self.check_coherence()
        return self

    def check_coherence(self) -> None:
        """Refuse combinations that would move real money somewhere it must not go."""
        key = self.stripe_secret_key.get_secret_value() if self.stripe_secret_key else None
        if key is not None and not key.startswith(("sk_test_", "sk_live_", "rk_test_", "rk_live_")):
            raise ConfigurationError(
                "STRIPE_SECRET_KEY does not look like a Stripe secret key "
                "(expected sk_test_… or sk_live_…)."
            )
        if self.livemode and self.uses_local_stripe:
            raise ConfigurationError(
                "STRIPE_SECRET_KEY is a live key but STRIPE_API_BASE/STRIPE_CONNECT_BASE point at a "
                "local server: unset them to use Stripe, or use an sk_test_ key with the emulator."
            )
        pk = self.stripe_publishable_key
        if key is not None and pk is not None:
            if self.livemode != pk.startswith("pk_live_"):
                raise ConfigurationError(
                    "STRIPE_SECRET_KEY and STRIPE_PUBLISHABLE_KEY are from different modes "
                    "(one live, one test)."
                )
        client_id = self.stripe_connect_client_id
        if client_id is not None and not client_id.startswith("ca_"):
            raise ConfigurationError(
                "STRIPE_CONNECT_CLIENT_ID must start with ca_: get it from "
                + WHERE_TO_GET["STRIPE_CONNECT_CLIENT_ID"] + "."
            )
        if self.livemode and client_id is not None and "emulator" in client_id:
            raise ConfigurationError(
                "STRIPE_CONNECT_CLIENT_ID is the emulator's client id but STRIPE_SECRET_KEY is live."
            )
        if self.livemode and not self.backend_url.startswith("https://"):
            raise ConfigurationError(
                "BACKEND_URL must be https:// in live mode (Stripe refuses plain-HTTP redirect URIs)."
            )


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; a malformed value becomes one clear line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first.get("loc") else "a setting"
        # Never echo the input: it may be a secret.
        raise ConfigurationError(f"{name} is invalid: {first['msg']}.") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
