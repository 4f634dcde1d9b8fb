"""Stripe-shaped errors raised by resource handlers and turned into JSON by the API layer.

Bodies follow Stripe's v1 envelope `{"error": {"type", "code", "message", "param", ...}}`;
OAuth errors use OAuth's own flat `{"error": code, "error_description": text}`, which is how
stripe-python tells the two apart.
"""

from __future__ import annotations

from typing import Any

DOC_URL = "https://stripe.com/docs/error-codes/"


class StripeApiError(Exception):
    """An error Stripe would answer with; `to_body()` is the exact JSON body."""

    def __init__(
        self,
        http_status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}
        self.extra = extra or {}
        # Stripe links a request log only for requests that reached an account (not 401s).
        self.with_log_url = http_status != 401

    def to_body(self, request_id: str | None = None) -> dict[str, Any]:
        """The `{"error": {...}}` body Stripe sends for this error."""
        err: dict[str, Any] = {}
        if self.code:
            err["code"] = self.code
            err["doc_url"] = DOC_URL + self.code.replace("_", "-")
        err["message"] = self.message
        if self.param:
            err["param"] = self.param
        if request_id and self.with_log_url:
            err["request_log_url"] = (
                f"https://dashboard.stripe.com/test/logs/{request_id}?t=0"
            )
        err["type"] = self.type
        err.update(self.extra)
        return {"error": err}


class OAuthError(Exception):
    """An OAuth endpoint error: `{"error": code, "error_description": text}`."""

    def __init__(self, code: str, description: str, http_status: int = 400) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.http_status = http_status

    def to_body(self) -> dict[str, str]:
        """The flat OAuth error body."""
        return {"error": self.code, "error_description": self.description}


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> StripeApiError:
    """A 400 invalid_request_error."""
    return StripeApiError(400, message, code=code, param=param)


def resource_missing(kind: str, object_id: str, param: str | None = "id") -> StripeApiError:
    """404 `No such account: 'acct_x'` as Stripe words it."""
    return StripeApiError(
        404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param
    )


def unrecognized_url(method: str, path: str) -> StripeApiError:
    """404 for a route Stripe does not have."""
    return StripeApiError(
        404,
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
        "or we can help at https://support.stripe.com/.",
    )


def mask_key(key: str) -> str:
    """Mask an API key as Stripe's 401 does: known prefix, one star per hidden char, last four."""
    prefix = ""
    for candidate in ("sk_live_", "sk_test_", "rk_live_", "rk_test_", "pk_live_", "pk_test_"):
        if key.startswith(candidate):
            prefix = candidate
            break
    body = key[len(prefix) :]
    if len(body) <= 8:
        return prefix + "*" * len(body)
    return prefix + "*" * (len(body) - 4) + body[-4:]


def invalid_api_key(key: str) -> StripeApiError:
    """401 for a key that is not a test-mode secret key."""
    if not key:
        message = (
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). "
            "See https://stripe.com/docs/api#authentication for details, or we can help at "
            "https://support.stripe.com/."
        )
    else:
        message = f"Invalid API Key provided: {mask_key(key)}"
    return StripeApiError(401, message)


def account_access_denied(api_key: str, account_id: str) -> StripeApiError:
    """403 ``account_invalid``: the platform has no access to this account (any more).

    Stripe's answer for an account that exists but is not connected to the platform, above all
    one whose OAuth access was revoked; the SDK raises it as ``PermissionError``.
    """
    return StripeApiError(
        403,
        f"The provided key '{mask_key(api_key)}' does not have access to account "
        f"'{account_id}' (or that account does not exist). Application access may have "
        "been revoked.",
        code="account_invalid",
    )


def balance_insufficient(currency: str) -> StripeApiError:
    """400 balance_insufficient, worded like Stripe's transfer error."""
    return StripeApiError(
        400,
        "You have insufficient available funds in your Stripe account. Try adding funds "
        "directly to your available balance by creating Charges using the "
        "4000000000000077 test card. See: https://stripe.com/docs/testing#available-balance",
        code="balance_insufficient",
    )
