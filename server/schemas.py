"""The documented shape of every JSON response the service sends, for ``/openapi.json``.

Handlers build their bodies by hand (the platform's envelope ``{"success", "message", "data"}``,
kept exactly), so these models only describe them; nothing is serialised through them. They are
closed (``additionalProperties: false``): a field added to a response without being documented
here fails the schemathesis run in ``tests/server/test_openapi_fuzz.py``, as does a status code
missing from a route's ``responses``.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from lib.account_status import ConnectionStatus
from lib.models import PayoutStatus, PayoutType, ReversalStatus

#: Ids are PostgreSQL ``integer`` columns; a larger number can name nothing (and overflowed
#: SQLite's driver with a 500 before it was refused).
MAX_ID = 2**31 - 1
#: Printable ASCII: the key is stored (PostgreSQL text refuses NUL) and replayed to Stripe.
IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]+$"


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- errors ------------------------------------------------------------------------------------


class ErrorEnvelope(_Closed):
    """Every refusal of the freelancer and admin API."""

    success: Literal[False]
    message: str = Field(description="A sentence for a person")
    code: str | None = Field(None, description="Stable machine-readable reason, when there is one")


#: A route's ``responses=``: status code -> OpenAPI response (FastAPI's own type).
Responses: TypeAlias = dict[int | str, dict[str, Any]]


def documented(description: str, model: type[BaseModel] = ErrorEnvelope) -> dict[str, Any]:
    """One entry of a route's ``responses=``."""
    return {"model": model, "description": description}


#: What any route can answer whatever it does: the database is down (with ``Retry-After``).
DATABASE_ERRORS: Responses = {503: documented("The database or Stripe is unreachable; try again")}
#: Routes behind ``Authorization: Bearer``.
AUTH_ERRORS: Responses = {
    401: documented("Missing, expired or invalid bearer token"),
    403: documented("The token's role may not use this endpoint"),
}
#: Routes with query, header or body parameters (FastAPI's own 422 has another shape).
VALIDATION_ERRORS: Responses = {422: documented("A parameter or the body is invalid")}
#: Routes that call Stripe: refused (502) or unanswered (503).
STRIPE_ERRORS: Responses = {502: documented("Stripe refused the request"), **DATABASE_ERRORS}


# ---- freelancer API ----------------------------------------------------------------------------


class ConnectUrl(_Closed):
    connectUrl: str = Field(description="Stripe's consent page or hosted onboarding link")
    expiresIn: int = Field(description="Seconds the link stays valid")
    method: Literal["oauth", "onboarding"]


class ConnectUrlEnvelope(_Closed):
    success: Literal[True]
    message: str
    data: ConnectUrl


class AccountDetails(_Closed):
    id: str
    chargesEnabled: bool
    payoutsEnabled: bool
    detailsSubmitted: bool
    requirementsCurrentlyDue: list[str]
    requirementsPastDue: list[str]
    currentDeadline: int | None = Field(description="Unix time Stripe's deadline falls due")
    disabledReason: str | None
    email: str | None = Field(description="The account's email, as Stripe reports it")
    businessName: str | None = Field(description="Business name, as Stripe reports it")
    bankName: str | None = Field(description="The bank payouts go to, as Stripe reports it")
    bankLast4: str | None = Field(description="Last four digits of that bank account")


class ConnectionStatusData(_Closed):
    isConnected: bool
    status: ConnectionStatus
    verified: bool
    accountId: str | None
    destinationConfirmed: bool | None = Field(
        description="false: payouts to this new account are held until the freelancer confirms "
        "it (POST stripe-connect-confirm); null when not connected")
    accountDetails: AccountDetails | None


class ConfirmDestinationBody(_Closed):
    accountId: str = Field(pattern=r"^acct_[A-Za-z0-9]{1,64}$",
                           description="The account the freelancer was shown and confirms")


class ConnectionStatusEnvelope(_Closed):
    success: Literal[True]
    message: str
    data: ConnectionStatusData


class MessageEnvelope(_Closed):
    success: Literal[True]
    message: str


# ---- admin payouts -----------------------------------------------------------------------------


class PayoutErrorDetail(_Closed):
    code: str
    message: str | None


class PayoutView(_Closed):
    payoutId: int
    status: PayoutStatus
    freelancerId: int
    amountMinor: int = Field(description="Integer minor units, as Stripe counts them")
    amountDisplay: str = Field(examples=["$100.50 USD"])
    currency: str
    payoutType: PayoutType
    description: str
    stripeTransferId: str | None
    requestedBy: str
    error: PayoutErrorDetail | None
    createdAt: str = Field(description="ISO 8601")


class PayoutEnvelope(_Closed):
    success: Literal[True]
    message: str
    data: PayoutView


class PreflightCheck(_Closed):
    name: str
    ok: bool
    message: str


class PreflightFailure(_Closed):
    payoutId: int
    checks: list[PreflightCheck]


class DuplicateOf(_Closed):
    """A likely duplicate: repeat the request with ``Confirm-Duplicate-Of: <earlierId>``."""

    earlierId: int = Field(description="The payout (or reversal) this request repeats")


class PayoutErrorEnvelope(_Closed):
    """A refusal; ``data`` is the ledger row when Stripe refused, the checks when preflight did,
    the earlier payout when the request looks like a duplicate."""

    success: Literal[False]
    message: str
    code: str | None = None
    data: PayoutView | PreflightFailure | DuplicateOf | None = None


class ReversalView(_Closed):
    reversalId: int
    payoutId: int
    status: ReversalStatus
    amountMinor: int = Field(description="Integer minor units, as Stripe counts them")
    amountDisplay: str = Field(examples=["$10.00 USD"])
    currency: str
    reason: str
    stripeReversalId: str | None
    requestedBy: str
    approvedBy: str | None
    error: PayoutErrorDetail | None
    createdAt: str = Field(description="ISO 8601")


class ReversalEnvelope(_Closed):
    success: Literal[True]
    message: str
    data: ReversalView


class ReversalErrorEnvelope(_Closed):
    success: Literal[False]
    message: str
    code: str | None = None
    data: ReversalView | DuplicateOf | None = None


# ---- webhooks ----------------------------------------------------------------------------------


class WebhookReceived(_Closed):
    received: Literal[True]
    duplicate: bool = Field(description="The event id was stored before: nothing stored again "
                                        "(it is processed, or queued for the worker)")
    ignored: bool = Field(description="Stored but not for this deployment (e.g. livemode)")


class WebhookRefused(_Closed):
    received: Literal[False]
    error: str


# ---- operations --------------------------------------------------------------------------------


class Health(_Closed):
    status: Literal["ok", "error"]
    database: Literal["ok", "unreachable"]
