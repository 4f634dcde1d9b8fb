"""The one door to Stripe: every API call of Connect Ops goes through :class:`StripeGateway`.

Why one module:
- the ``StripeClient`` is built once from settings (base addresses for the emulator, explicit
  retries and timeouts), so no call can forget them;
- Stripe's exceptions become the project's own (``lib.errors``) with Stripe's code and request id
  kept for the audit trail, so callers catch what they name and never import ``stripe``;
- results are plain dicts (``StripeObject`` is not a dict in stripe-python 16), easy to store as
  the raw JSON beside promoted columns.

Writes that move money take an ``idempotency_key`` argument that the caller derives from its
ledger row: the SDK's random per-request key would not protect a double-submitted form.
The OAuth token exchange is sent with retries disabled: Stripe revokes a connection whose code is
exchanged twice, so a network retry must never happen behind our back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Unpack, cast

import stripe
from stripe import oauth_error

from lib import errors
from lib.account_terms import AccountTerms, account_terms
from lib.settings import Settings

if TYPE_CHECKING:
    # The SDK's request parameters are TypedDicts; BaseAddresses has no public name.
    from stripe import OAuth
    from stripe._base_address import BaseAddresses
    from stripe.params import (
        AccountCreateParams,
        AccountCreateParamsCapabilities,
        AccountLinkCreateParams,
        BalanceTransactionListParams,
        TransferCreateParams,
        TransferListParams,
        TransferListParamsCreated,
        TransferReversalCreateParams,
    )

logger = logging.getLogger(__name__)

#: Stripe API version the product is written against (the OpenAPI subset's version).
STRIPE_API_VERSION = "2024-04-10"


@dataclass(frozen=True, slots=True)
class StripeResult:
    """A Stripe object as a dict, with the request id Stripe gave the call."""

    data: dict[str, Any]
    request_id: str | None = None

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    @property
    def id(self) -> str:
        return str(self.data["id"])


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified event: the parsed dict of exactly the bytes that were signed."""

    data: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def type(self) -> str:
        return str(self.data["type"])


def _request_id(obj: Any) -> str | None:
    response = getattr(obj, "last_response", None)
    return getattr(response, "request_id", None) if response is not None else None


def _as_result(obj: Any) -> StripeResult:
    return StripeResult(data=obj.to_dict(), request_id=_request_id(obj))


class StripeRateLimitHintedError(errors.StripeRateLimitError):
    """A 429 with what Stripe said about retrying it (a ``StripeRateLimitError`` to callers).

    ``should_retry`` is the ``Stripe-Should-Retry`` header (None when absent), ``retry_after``
    the ``Retry-After`` header in seconds (None when absent or unreadable): the hints Stripe's
    client libraries honour before retrying.
    """

    def __init__(self, message: str, *, should_retry: bool | None = None,
                 retry_after: float | None = None,
                 **fields: Unpack[errors.StripeErrorFields]) -> None:
        super().__init__(message, **fields)
        self.should_retry = should_retry
        self.retry_after = retry_after


def _retry_hints(exc: stripe.StripeError) -> dict[str, Any]:
    headers = {str(k).lower(): str(v) for k, v in (getattr(exc, "headers", None) or {}).items()}
    should = headers.get("stripe-should-retry")
    after = headers.get("retry-after")
    seconds: float | None = None
    if after:
        try:
            seconds = max(float(after), 0.0)
        except ValueError:
            try:
                seconds = max((parsedate_to_datetime(after) - datetime.now(UTC)).total_seconds(),
                              0.0)
            except (TypeError, ValueError):
                seconds = None
    return {"should_retry": {"true": True, "false": False}.get(should or ""),
            "retry_after": seconds}


def _error_fields(exc: stripe.StripeError) -> errors.StripeErrorFields:
    error = getattr(exc, "error", None)
    # The SDK leaves .code unset on RateLimitError; the parsed error object still has it
    # (rate_limit vs lock_timeout matters to the caller).
    code = getattr(exc, "code", None) or (getattr(error, "code", None) if error else None)
    return {
        "stripe_code": code,
        "request_id": getattr(exc, "request_id", None),
        "http_status": getattr(exc, "http_status", None),
        "param": getattr(error, "param", None) if error is not None else None,
    }


def _message(exc: stripe.StripeError) -> str:
    # user_message is Stripe's own human text; never include headers or the request body.
    text = getattr(exc, "user_message", None) or str(getattr(exc, "_message", "") or "")
    return text or exc.__class__.__name__


def _saved_under_key(exc: stripe.StripeError) -> bool:
    """A 5xx that Stripe saved under the request's idempotency key (and will replay)."""
    headers = {str(k).lower(): str(v) for k, v in (getattr(exc, "headers", None) or {}).items()}
    return (headers.get("idempotent-replayed") == "true"
            or headers.get("stripe-should-retry") == "false")


@contextmanager
def translate_errors(action: str, *, account_id: str | None = None) -> Iterator[None]:
    """Turn Stripe's exceptions into ``lib.errors`` types, keeping code and request id.

    ``account_id`` names the connected account the call is about, for the error that says
    Stripe no longer gives this platform access to it.
    """
    try:
        yield
    except oauth_error.OAuthError as exc:
        fields = _error_fields(exc)
        raise errors.StripeOAuthError(
            f"Stripe refused the OAuth request ({exc.code}): {_message(exc)}", **fields
        ) from None
    except stripe.IdempotencyError as exc:
        raise errors.StripeIdempotencyError(
            f"{action}: idempotency key reused with other parameters", **_error_fields(exc)
        ) from None
    except stripe.PermissionError as exc:
        fields = _error_fields(exc)
        if fields["stripe_code"] == "account_invalid":
            # 403 on one account: its connection is gone, the key is fine. Not a key problem.
            raise errors.StripeAccountAccessError(
                f"{action}: Stripe no longer gives this platform access to "
                f"{account_id or 'the connected account'} (the connection was revoked)",
                account_id=account_id, **fields,
            ) from None
        raise errors.StripeAuthenticationError(
            f"{action}: Stripe refused the platform's API key ({_message(exc)})", **fields
        ) from None
    except stripe.AuthenticationError as exc:
        raise errors.StripeAuthenticationError(
            f"{action}: Stripe refused the platform's API key ({_message(exc)})",
            **_error_fields(exc),
        ) from None
    except stripe.RateLimitError as exc:
        fields = _error_fields(exc)
        reason = ("another request is using the same Stripe object"
                  if fields["stripe_code"] == "lock_timeout" else "Stripe is rate limiting us")
        raise StripeRateLimitHintedError(
            f"{action}: {reason}; try again shortly", **fields, **_retry_hints(exc)
        ) from None
    except (stripe.InvalidRequestError, stripe.CardError) as exc:
        raise errors.StripeRequestError(f"{action}: {_message(exc)}", **_error_fields(exc)) from None
    except stripe.APIConnectionError as exc:
        raise errors.StripeConnectionError(
            f"{action}: no answer from Stripe (timeout or connection lost); the outcome is unknown",
            **_error_fields(exc),
        ) from None
    except stripe.APIError as exc:
        fields = _error_fields(exc)
        if (fields["http_status"] or 0) >= 500 and _saved_under_key(exc):
            raise errors.StripeSavedServerError(
                f"{action}: Stripe had an internal error and saved it under this request's "
                "idempotency key; retrying with the same key replays it, so the outcome must be "
                "settled from Stripe's records (reconciliation) or by a person", **fields
            ) from None
        # The SDK files every 409 under APIError; idempotency_key_in_use is not an outage but
        # an earlier attempt with the same key that Stripe has not finished.
        reason = ("Stripe is still processing an earlier attempt of this request"
                  if fields["stripe_code"] == "idempotency_key_in_use"
                  else "Stripe had an internal error")
        raise errors.StripeUnavailableError(
            f"{action}: {reason}; the outcome is unknown", **fields
        ) from None
    except stripe.StripeError as exc:
        raise errors.StripeGatewayError(f"{action}: {_message(exc)}", **_error_fields(exc)) from None


def build_client(settings: Settings) -> stripe.StripeClient:
    """A ``StripeClient`` configured from settings (base addresses, retries, timeouts)."""
    settings.require("STRIPE_SECRET_KEY")
    assert settings.stripe_secret_key is not None
    base_addresses: BaseAddresses = {}
    if settings.stripe_api_base:
        base_addresses["api"] = settings.stripe_api_base
    if settings.stripe_connect_base:
        base_addresses["connect"] = settings.stripe_connect_base
    http_client = stripe.RequestsClient(
        timeout=(settings.stripe_connect_timeout_seconds, settings.stripe_timeout_seconds)
    )
    return stripe.StripeClient(
        settings.stripe_secret_key.get_secret_value(),
        client_id=settings.stripe_connect_client_id,
        base_addresses=base_addresses,
        max_network_retries=settings.stripe_max_network_retries,
        http_client=http_client,
        stripe_version=STRIPE_API_VERSION,
    )


class StripeGateway:
    """Typed access to the Stripe calls Connect Ops makes."""

    def __init__(self, settings: Settings, *, client: stripe.StripeClient | None = None) -> None:
        self.settings = settings
        self._client = client or build_client(settings)

    # ---- accounts --------------------------------------------------------------------------

    def create_express_account(
        self, *, email: str, country: str | None, metadata: Mapping[str, str],
        idempotency_key: str, terms: AccountTerms | None = None,
    ) -> StripeResult:
        """Create an Express account on the terms Stripe accepts for it (once per key).

        ``terms`` default to :func:`lib.account_terms.account_terms` of ``country`` against
        ``STRIPE_PLATFORM_COUNTRY`` (which refuses an unsupported country before any call).
        """
        if terms is None:
            terms = account_terms(platform_country=self.settings.stripe_platform_country,
                                  freelancer_country=country)
        # Named at run time by the terms; the SDK's TypedDict spells out every capability.
        capabilities = cast("AccountCreateParamsCapabilities",
                            {name: {"requested": True} for name in terms.capabilities})
        params: AccountCreateParams = {
            "type": "express",
            "email": email,
            # Passed even in the platform's own country: a cross-border account needs it.
            "country": terms.country,
            "capabilities": capabilities,
            "tos_acceptance": {"service_agreement": terms.service_agreement},
            "metadata": dict(metadata),
        }
        with translate_errors("Creating the Stripe account"):
            account = self._client.v1.accounts.create(
                params, {"idempotency_key": idempotency_key},
            )
        return _as_result(account)

    def retrieve_account(self, account_id: str) -> StripeResult:
        """Read one connected account as Stripe has it now."""
        with translate_errors(f"Reading account {account_id}", account_id=account_id):
            return _as_result(self._client.v1.accounts.retrieve(account_id))

    def list_accounts_page(
        self, *, starting_after: str | None = None, limit: int = 100
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of connected accounts and whether more follow."""
        params: dict[str, Any] = {"limit": limit}
        if starting_after:
            params["starting_after"] = starting_after
        # The raw JSON, not StripeObjects: building then flattening them cost ~4 ms per account,
        # more than the request itself (bench/sync.py), and callers want plain dicts anyway.
        with translate_errors("Listing connected accounts"):
            page = self._client.raw_request("get", "/v1/accounts", **params).data
        return [dict(a) for a in page["data"]], bool(page["has_more"])

    def iter_accounts(self, *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every connected account of the platform, paging ``page_size`` at a time."""
        with translate_errors("Listing connected accounts"):
            page = self._client.v1.accounts.list({"limit": page_size})
            for account in page.auto_paging_iter():
                yield account.to_dict()

    def create_account_link(
        self, *, account_id: str, refresh_url: str, return_url: str
    ) -> StripeResult:
        """A single-use hosted onboarding link (``account_onboarding``; never ``account_update``)."""
        params: AccountLinkCreateParams = {
            "account": account_id,
            "type": "account_onboarding",
            "refresh_url": refresh_url,
            "return_url": return_url,
        }
        with translate_errors("Creating the onboarding link", account_id=account_id):
            return _as_result(self._client.v1.account_links.create(params))

    def create_login_link(self, account_id: str) -> StripeResult:
        """A link into the Express dashboard of ``account_id``."""
        with translate_errors("Creating the Express dashboard link", account_id=account_id):
            return _as_result(self._client.v1.accounts.login_links.create(account_id))

    # ---- money -----------------------------------------------------------------------------

    def retrieve_balance(self) -> StripeResult:
        """The platform's balance (available and pending per currency)."""
        with translate_errors("Reading the platform balance"):
            return _as_result(self._client.v1.balance.retrieve())

    def iter_balance_transactions(
        self, *, created_gte: int | None = None, page_size: int = 100,
    ) -> Iterator[dict[str, Any]]:
        """The platform's balance transactions, newest first (``available_on`` dates pending
        funds: the balance itself says how much is pending, not when it becomes available)."""
        params: BalanceTransactionListParams = {"limit": page_size}
        if created_gte is not None:
            params["created"] = {"gte": created_gte}
        with translate_errors("Listing balance transactions"):
            page = self._client.v1.balance_transactions.list(params)
            for txn in page.auto_paging_iter():
                yield txn.to_dict()

    def create_transfer(
        self,
        *,
        amount_minor: int,
        currency: str,
        destination: str,
        idempotency_key: str,
        description: str | None = None,
        metadata: Mapping[str, str] | None = None,
        transfer_group: str | None = None,
    ) -> StripeResult:
        """Move ``amount_minor`` from the platform balance to a connected account."""
        if type(amount_minor) is not int:
            raise TypeError("amount_minor must be an int of minor units")
        params: TransferCreateParams = {
            "amount": amount_minor,
            "currency": currency,
            "destination": destination,
            "metadata": dict(metadata or {}),
        }
        if description:
            params["description"] = description
        if transfer_group:
            params["transfer_group"] = transfer_group
        with translate_errors("Sending the transfer", account_id=destination):
            transfer = self._client.v1.transfers.create(
                params, {"idempotency_key": idempotency_key},
            )
        return _as_result(transfer)

    def retrieve_transfer(self, transfer_id: str) -> StripeResult:
        """One transfer as Stripe has it."""
        with translate_errors(f"Reading transfer {transfer_id}"):
            return _as_result(self._client.v1.transfers.retrieve(transfer_id))

    def iter_transfers(
        self, *, created_gte: int | None = None, created_lt: int | None = None,
        destination: str | None = None, page_size: int = 100,
    ) -> Iterator[dict[str, Any]]:
        """Transfers in a period (unix seconds), newest first."""
        params: TransferListParams = {"limit": page_size}
        created: TransferListParamsCreated = {}
        if created_gte is not None:
            created["gte"] = created_gte
        if created_lt is not None:
            created["lt"] = created_lt
        if created:
            params["created"] = created
        if destination:
            params["destination"] = destination
        with translate_errors("Listing transfers"):
            page = self._client.v1.transfers.list(params)
            for transfer in page.auto_paging_iter():
                yield transfer.to_dict()

    def create_transfer_reversal(
        self, *, transfer_id: str, amount_minor: int, idempotency_key: str,
        metadata: Mapping[str, str] | None = None,
    ) -> StripeResult:
        """Reverse (part of) a transfer back to the platform balance."""
        if type(amount_minor) is not int:
            raise TypeError("amount_minor must be an int of minor units")
        params: TransferReversalCreateParams = {"amount": amount_minor,
                                                "metadata": dict(metadata or {})}
        with translate_errors("Reversing the transfer"):
            reversal = self._client.v1.transfers.reversals.create(
                transfer_id, params, {"idempotency_key": idempotency_key}
            )
        return _as_result(reversal)

    def iter_transfer_reversals(self, transfer_id: str, *, page_size: int = 100
                                ) -> Iterator[dict[str, Any]]:
        """Every reversal of one transfer, newest first (reconciliation of reversals)."""
        with translate_errors(f"Listing the reversals of transfer {transfer_id}"):
            page = self._client.v1.transfers.reversals.list(
                transfer_id, {"limit": page_size})
            for reversal in page.auto_paging_iter():
                yield reversal.to_dict()

    # ---- OAuth -----------------------------------------------------------------------------

    def oauth_authorize_url(
        self, *, state: str, redirect_uri: str, stripe_user: Mapping[str, str] | None = None
    ) -> str:
        """The connect.stripe.com consent URL for an existing (Standard) account."""
        self.settings.require("STRIPE_CONNECT_CLIENT_ID")
        params: OAuth.OAuthAuthorizeUrlParams = {
            "response_type": "code",
            "scope": "read_write",
            "state": state,
            "redirect_uri": redirect_uri,
        }
        prefill = {k: v for k, v in (stripe_user or {}).items() if v}
        if prefill:
            # The caller names Stripe's prefill fields (email, country, …): the TypedDict's keys.
            params["stripe_user"] = cast("OAuth.OAuthAuthorizeUrlParamsStripeUser", prefill)
        return self._client.oauth.authorize_url(params)

    def oauth_token(self, code: str) -> StripeResult:
        """Exchange an authorization code. Never retried: a second exchange revokes the connection."""
        with translate_errors("Completing the Stripe connection"):
            token = self._client.oauth.token(
                {"grant_type": "authorization_code", "code": code},
                {"max_network_retries": 0},
            )
        return _as_result(token)

    def oauth_deauthorize(self, stripe_user_id: str) -> StripeResult:
        """Revoke the platform's access to a Standard account connected through OAuth."""
        self.settings.require("STRIPE_CONNECT_CLIENT_ID")
        with translate_errors("Disconnecting the Stripe account"):
            return _as_result(
                self._client.oauth.deauthorize({"stripe_user_id": stripe_user_id})
            )


def verify_webhook(payload: bytes, signature_header: str | None, secret: str) -> WebhookEvent:
    """Verify a webhook on its raw body with the SDK; raise ``WebhookSignatureError`` if forged.

    The signature is checked on the exact bytes received (tolerance 300 s) before the body is
    parsed; only a JSON object with a string ``id`` and ``type`` counts as an event.
    """
    if not signature_header:
        raise errors.WebhookSignatureError("missing Stripe-Signature header")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.WebhookSignatureError("the body is not UTF-8") from None
    try:
        stripe.WebhookSignature.verify_header(
            text, signature_header, secret, stripe.Webhook.DEFAULT_TOLERANCE
        )
    except stripe.SignatureVerificationError:
        raise errors.WebhookSignatureError("invalid or stale Stripe-Signature") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise errors.WebhookSignatureError("the body is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not isinstance(
        data.get("type"), str
    ):
        raise errors.WebhookSignatureError("the body is not a Stripe event")
    return WebhookEvent(data=data)
