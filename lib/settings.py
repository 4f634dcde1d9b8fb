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
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from lib.errors import ConfigurationError
from lib.money import SUPPORTED_CURRENCIES

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
    #: Where the platform's Stripe account is (ISO 3166 alpha-2): decides each new Express
    #: account's service agreement and capabilities (lib.account_terms).
    stripe_platform_country: str = "US"

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

    # The platform's own tokens (its login), accepted beside the companion's (lib.platform_tokens)
    platform_jwt_issuer: str | None = None
    platform_jwt_audience: str | None = None
    platform_jwt_algorithm: Literal["HS256", "RS256", "ES256"] | None = None
    platform_jwt_secret: SecretStr | None = None
    platform_jwks_url: str | None = None
    platform_jwks_cache_seconds: int = Field(default=300, ge=0, le=86_400)
    #: Dotted path of the claim holding the freelancer's id, and of the role claim.
    platform_jwt_freelancer_id_claim: str = "sub"
    platform_jwt_role_claim: str = "role"
    #: ``platform value=our role`` pairs, comma separated.
    platform_jwt_roles: str = "freelancer=freelancer,admin=admin"

    # CORS for the platform's frontend (unset: FRONTEND_URL's origin)
    cors_allowed_origins: str | None = None
    cors_allow_credentials: bool = False

    # Dashboard sign-in: the users file (default) or the company's OpenID Connect provider
    # (Streamlit's st.login; the provider itself is configured in .streamlit/secrets.toml)
    dashboard_sign_in: Literal["password", "oidc"] = "password"
    #: A named provider ([auth.NAME] in secrets.toml); unset: the [auth] section itself.
    oidc_provider: str | None = None
    oidc_username_claim: str = "email"
    oidc_roles_claim: str = "groups"
    #: ``provider value=our role`` pairs, comma separated (e.g. connect-ops-admins=admin).
    oidc_role_map: str = ""

    # Payout policy (integer minor units; see lib.money and lib.payouts.limits)
    #: Both in ``payout_base_currency``'s minor units; other currencies get derived defaults.
    payout_approval_threshold_minor: int = Field(default=100_000, ge=0)
    payout_max_minor: int = Field(default=5_000_000, gt=0)
    payout_base_currency: str = "usd"
    #: Exact per-currency limits in that currency's minor units: ``jpy=150000,gbp=80000``.
    payout_approval_thresholds: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict)
    payout_maxima: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict)
    #: A payout (or reversal) like one made within this many days asks for confirmation.
    payout_duplicate_window_days: int = Field(default=7, ge=0, le=366)

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

    # Outgoing messages: outreach emails and alerts (lib.outbox, lib.outreach, lib.alerts)
    #: The SMTP server that sends every email (unset: email is not configured; messages wait).
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65_535)
    #: ``starttls`` (port 587), ``ssl`` (implicit TLS, port 465) or ``none`` (local relays only).
    smtp_security: Literal["starttls", "ssl", "none"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    #: The From address of every email, e.g. ``Payments team <payments@example.com>``.
    smtp_sender: str | None = None
    smtp_timeout_seconds: float = Field(default=20.0, gt=0, le=300)
    #: A Slack-compatible incoming webhook (its URL carries a token: a secret).
    alert_chat_webhook_url: SecretStr | None = None
    #: How often the worker evaluates the alert rules, and sends the digests.
    alert_check_interval_seconds: int = Field(default=60, ge=5, le=86_400)
    alert_digest_interval_seconds: int = Field(default=86_400, ge=60, le=7 * 86_400)
    #: Delivery attempts of one message before it is dead (a person retries it).
    outbox_max_attempts: int = Field(default=8, ge=1, le=100)
    outbox_retry_base_seconds: float = Field(default=30.0, gt=0, le=86_400)
    outbox_retry_max_seconds: float = Field(default=3600.0, gt=0, le=7 * 86_400)
    #: At most this many messages per minute from one worker (SMTP providers throttle bursts).
    outbox_rate_per_minute: int = Field(default=120, ge=1, le=100_000)
    #: How long an outreach email's single-use payment-settings link works.
    outreach_link_hours: int = Field(default=72, ge=1, le=168)

    # Logging
    log_level: str = "INFO"

    @field_validator("stripe_platform_country", mode="before")
    @classmethod
    def _country_code(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return "US"
        text = str(value).strip().upper()
        if len(text) != 2 or not text.isalpha():
            raise ValueError("must be a two-letter country code such as US, GB or FR")
        return text

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str) -> str:
        return normalise_database_url(value)

    @field_validator("payout_base_currency", mode="before")
    @classmethod
    def _currency_code(cls, value: object) -> object:
        if isinstance(value, str):
            code = value.strip().lower()
            if code not in SUPPORTED_CURRENCIES:
                raise ValueError(f"{value!r} is not a currency Stripe supports")
            return code
        return value

    @field_validator("payout_approval_thresholds", "payout_maxima", mode="before")
    @classmethod
    def _currency_amounts(cls, value: object) -> object:
        """``"jpy=150000, gbp=80000"`` (minor units) from the environment, or a mapping."""
        if isinstance(value, str):
            pairs = [part.strip() for part in value.split(",") if part.strip()]
            parsed: dict[str, int] = {}
            for pair in pairs:
                code, sep, amount = pair.partition("=")
                code = code.strip().lower()
                if not sep or code not in SUPPORTED_CURRENCIES or not amount.strip().isdigit():
                    raise ValueError(
                        f"{pair!r} is not CURRENCY=MINOR_UNITS (for example jpy=150000)")
                parsed[code] = int(amount.strip())
            return parsed
        if isinstance(value, dict):
            return {str(k).strip().lower(): v for k, v in value.items()}
        return value

    @field_validator(
        "stripe_api_base", "stripe_connect_base", "frontend_url", "stripe_publishable_key",
        "stripe_connect_client_id", "platform_jwks_url", "cors_allowed_origins", "smtp_host",
        "smtp_username", "smtp_sender", mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip().rstrip("/") if isinstance(value, str) else value

    @field_validator("platform_jwt_issuer", "platform_jwt_audience", "platform_jwt_algorithm",
                     mode="before")
    @classmethod
    def _blank_claim_is_unset(cls, value: object) -> object:
        # Compared exactly with the token's claims: a trailing slash is kept.
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator(
        "stripe_secret_key", "stripe_webhook_secret", "stripe_connect_webhook_secret",
        "jwt_secret", "auth_cookie_key", "platform_jwt_secret", "smtp_password",
        "alert_chat_webhook_url", mode="before",
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
    def cors_origins(self) -> list[str]:
        """The origins the API answers cross-origin requests from (CORS); may be empty."""
        if self.cors_allowed_origins is not None:
            return [o.strip().rstrip("/") for o in self.cors_allowed_origins.split(",")
                    if o.strip()]
        if self.frontend_url:
            parts = urlsplit(self.frontend_url)
            return [f"{parts.scheme}://{parts.netloc}"]
        return []

    @property
    def platform_role_map(self) -> dict[str, str]:
        """``PLATFORM_JWT_ROLES`` as {platform value: our role name} (checked at start-up)."""
        pairs = [p.partition("=") for p in self.platform_jwt_roles.split(",") if p.strip()]
        return {value.strip(): role.strip() for value, _, role in pairs}

    @property
    def oidc_roles(self) -> dict[str, str]:
        """``OIDC_ROLE_MAP`` as {provider value: our role name} (checked at start-up)."""
        pairs = [p.partition("=") for p in self.oidc_role_map.split(",") if p.strip()]
        return {value.strip(): role.strip() for value, _, role in pairs}

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
        self._check_platform_tokens()
        self._check_cors()
        if self.dashboard_sign_in == "oidc":
            operators = {"admin", "finance", "manager"}
            roles = self.oidc_roles
            if not roles or not all(value and role in operators for value, role in roles.items()):
                raise ConfigurationError(
                    "OIDC_ROLE_MAP must map the provider's values to roles, e.g. "
                    "'connect-ops-admins=admin,connect-ops-finance=finance' (roles: admin, "
                    "finance, manager).")

    def _check_platform_tokens(self) -> None:
        """The platform's token settings are complete and cannot be confused with ours."""
        others = {"PLATFORM_JWT_AUDIENCE": self.platform_jwt_audience,
                  "PLATFORM_JWT_ALGORITHM": self.platform_jwt_algorithm,
                  "PLATFORM_JWT_SECRET": self.platform_jwt_secret,
                  "PLATFORM_JWKS_URL": self.platform_jwks_url}
        if self.platform_jwt_issuer is None:
            given = [name for name, value in others.items() if value is not None]
            if given:
                raise ConfigurationError(
                    f"{given[0]} is set but PLATFORM_JWT_ISSUER is not: set the issuer of the "
                    "platform's tokens too, or unset the platform token settings.")
            return
        if self.platform_jwt_issuer == "connect-ops":
            raise ConfigurationError("PLATFORM_JWT_ISSUER must not be connect-ops: that is the "
                                     "issuer of the companion's own tokens.")
        for name in ("PLATFORM_JWT_AUDIENCE", "PLATFORM_JWT_ALGORITHM"):
            if others[name] is None:
                raise ConfigurationError(f"{name} is not set: the platform's tokens are checked "
                                         "against it (see README.md → Frontend).")
        if self.platform_jwt_algorithm == "HS256":
            secret = self.platform_jwt_secret.get_secret_value() if self.platform_jwt_secret else ""
            if len(secret) < 32:
                raise ConfigurationError("PLATFORM_JWT_SECRET must be the platform's HS256 "
                                         "shared secret, at least 32 characters.")
            if self.platform_jwks_url is not None:
                raise ConfigurationError("PLATFORM_JWKS_URL is for RS256/ES256: with HS256 the "
                                         "platform's tokens are checked with PLATFORM_JWT_SECRET.")
            if self.jwt_secret is not None and secret == self.jwt_secret.get_secret_value():
                raise ConfigurationError("PLATFORM_JWT_SECRET must differ from JWT_SECRET.")
        else:
            if self.platform_jwks_url is None:
                raise ConfigurationError(f"PLATFORM_JWKS_URL is not set: {self.platform_jwt_algorithm} "
                                         "tokens are checked with the platform's published keys.")
            if self.platform_jwt_secret is not None:
                raise ConfigurationError("PLATFORM_JWT_SECRET is for HS256 only: an RS256/ES256 "
                                         "key is never used as an HMAC secret.")
            url = self.platform_jwks_url
            if not (url.startswith("https://") or (url.startswith("http://") and _is_local_url(url))):
                raise ConfigurationError("PLATFORM_JWKS_URL must be https:// (plain http only "
                                         "for a server on this machine).")
        known = {"freelancer", "admin", "finance", "manager"}
        mapping = self.platform_role_map
        if not mapping or not all(value and role in known for value, role in mapping.items()):
            raise ConfigurationError("PLATFORM_JWT_ROLES must be pairs like "
                                     "'freelancer=freelancer,ADMIN=admin' (roles: "
                                     f"{', '.join(sorted(known))}).")

    def _check_cors(self) -> None:
        for origin in self.cors_origins:
            parts = urlsplit(origin)
            if (parts.scheme not in ("http", "https") or not parts.hostname
                    or parts.path or parts.query or parts.fragment):
                raise ConfigurationError(
                    f"CORS_ALLOWED_ORIGINS: {origin!r} is not an origin (scheme://host[:port]); "
                    "'*' is never accepted.")
            if self.livemode and parts.scheme != "https" and not _is_local_url(origin):
                raise ConfigurationError(f"CORS_ALLOWED_ORIGINS: {origin} must be https:// in "
                                         "live mode.")


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment; a malformed value becomes one clear line.

    ``overrides`` (tests, tools) are validated like the environment's values, hence ``Any``.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first.get("loc") else "a setting"
        # Never echo the input: it may be a secret.
        raise ConfigurationError(f"{name} is invalid: {first['msg']}.") from None
