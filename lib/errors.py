"""The project's own error types.

Every error a user can cause or Stripe can return is one of these, with a message fit to show a
person. The HTTP service and the dashboard turn them into a status code or an ``st.error``;
nothing above ``lib/`` needs to know about SQLAlchemy or Stripe exception classes.
"""

from __future__ import annotations

from typing import TypedDict, Unpack


class ConnectOpsError(Exception):
    """Base of every error the domain raises on purpose."""

    #: A stable machine-readable code (used by the HTTP layer and tests).
    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class ConfigurationError(ConnectOpsError):
    """The settings are missing or contradictory; the process must not start."""

    code = "configuration_error"


class ValidationError(ConnectOpsError):
    """User input is malformed; nothing was written."""

    code = "validation_error"


class NotFoundError(ConnectOpsError):
    """The thing asked for does not exist."""

    code = "not_found"


class PermissionDeniedError(ConnectOpsError):
    """The operator's role does not allow this action."""

    code = "permission_denied"


class ConflictError(ConnectOpsError):
    """The action clashes with the current state (already connected, already approved...)."""

    code = "conflict"


class StripeErrorFields(TypedDict, total=False):
    """What a Stripe failure carries besides its message (:class:`StripeGatewayError`'s keywords)."""

    code: str | None
    stripe_code: str | None
    request_id: str | None
    http_status: int | None
    param: str | None


class StripeGatewayError(ConnectOpsError):
    """A Stripe call failed. Carries Stripe's own code and request id for the audit trail."""

    code = "stripe_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        stripe_code: str | None = None,
        request_id: str | None = None,
        http_status: int | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.stripe_code = stripe_code
        self.request_id = request_id
        self.http_status = http_status
        self.param = param


class StripeRequestError(StripeGatewayError):
    """Stripe refused the request (4xx): retrying the same request cannot succeed."""

    code = "stripe_request_error"


class StripeAuthenticationError(StripeGatewayError):
    """The platform key was refused: a configuration problem, not the user's."""

    code = "stripe_authentication_error"


class StripeAccountAccessError(StripeGatewayError):
    """Stripe refused access to one connected account (403 ``account_invalid``).

    The platform's key works; this account's connection was revoked (or it was never connected
    to this platform). Not a key problem: callers confirm the revocation and record it.
    """

    code = "stripe_account_access_revoked"

    def __init__(self, message: str, *, account_id: str | None = None,
                 **fields: Unpack[StripeErrorFields]) -> None:
        super().__init__(message, **fields)
        self.account_id = account_id


class StripeRateLimitError(StripeGatewayError):
    """Stripe throttled us (429), including ``lock_timeout`` contention on one object."""

    code = "stripe_rate_limited"


class StripeUnavailableError(StripeGatewayError):
    """Stripe answered 5xx after the SDK's retries: the outcome of a write is unknown."""

    code = "stripe_unavailable"


class StripeSavedServerError(StripeUnavailableError):
    """Stripe had an internal error and saved it under the request's idempotency key.

    Stripe replays a saved 500 to every retry with that key (``Stripe-Should-Retry: false``,
    ``Idempotent-Replayed: true``): retrying can never settle the request; only the objects at
    Stripe (reconciliation) or a person can.
    """

    code = "stripe_saved_server_error"


class StripeConnectionError(StripeGatewayError):
    """No answer (timeout, dropped connection): the outcome of a write is unknown."""

    code = "stripe_connection_error"


class StripeOAuthError(StripeGatewayError):
    """Stripe's OAuth endpoints refused (``invalid_grant``, ``invalid_request``...)."""

    code = "stripe_oauth_error"


class StripeIdempotencyError(StripeGatewayError):
    """The same idempotency key was used with other parameters: a bug on our side."""

    code = "stripe_idempotency_error"


class WebhookSignatureError(ConnectOpsError):
    """A webhook's signature is missing, wrong or stale, or its body is not JSON."""

    code = "webhook_signature_invalid"
