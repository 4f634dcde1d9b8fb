"""The admin payout endpoint of the platform's existing API, on the payout engine.

The body is parsed by hand, handing every JSON number with a fraction or exponent to the money
parser as the exact text it was written as (``100.50`` stays ``"100.50"``): never a float, and
``1e3`` is refused like any exponent notation.

Retries and duplicates (issue 17)
    ``Idempotency-Key`` becomes the ledger's client request token: a retried request returns the
    same ledger row and can never pay twice. The guide's request shape has no such header, so a
    client that omits it is still protected: a request for the same freelancer, amount, currency
    and description as a payout of the last ``PAYOUT_DUPLICATE_WINDOW_DAYS`` is refused with
    409 ``likely_duplicate`` naming the earlier payout (``data.earlierId``), unless the request
    says it is intended with ``Confirm-Duplicate-Of: <that id>``. Reversals work the same way.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.responses import JSONResponse

from lib.errors import ValidationError
from lib.models import Payout, PayoutReversal, PayoutStatus, PayoutType, ReversalStatus
from lib.money import Money, format_money
from lib.payouts.duplicates import LikelyDuplicateError
from lib.payouts.execution import SAVED_SERVER_ERROR, PreflightFailedError, execute_payout
from lib.payouts.ledger import get_payout, request_payout, scoped_token
from lib.payouts.reversal import reverse_payout
from lib.roles import Action, Role, refuse
from lib.tokens import TokenClaims
from server.app_context import ServiceContext, context_of
from server.blocking import run_blocking
from server.responses import fail, ok
from server.schemas import (
    AUTH_ERRORS,
    IDEMPOTENCY_KEY_PATTERN,
    MAX_ID,
    STRIPE_ERRORS,
    PayoutEnvelope,
    PayoutErrorEnvelope,
    ReversalEnvelope,
    ReversalErrorEnvelope,
    documented,
)
from server.security import bearer_claims

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

MAX_BODY_BYTES = 16 * 1024
_FIELDS = {"freelancerId", "amount", "currency", "payoutType", "description"}
_DIGITS = re.compile(r"[0-9]{1,10}")

PAYOUT_BODY_SCHEMA = {
    "type": "object",
    "required": ["freelancerId", "amount", "currency"],
    "additionalProperties": False,
    "properties": {
        "freelancerId": {"description": "Freelancer id", "oneOf": [
            {"type": "integer", "minimum": 1, "maximum": MAX_ID},
            {"type": "string", "pattern": "^[0-9]{1,10}$"}]},
        "amount": {"type": ["number", "string"],
                   "description": "Major units, e.g. 100.50 (parsed exactly, never as a float)"},
        "currency": {"type": "string", "pattern": r"^\s*[A-Za-z]{3}\s*$", "example": "usd"},
        # null is taken as "not given" (JSON clients send it for an empty optional field).
        "payoutType": {"enum": ["MANUAL", "BULK", None], "default": "MANUAL"},
        "description": {"type": ["string", "null"], "maxLength": 500},
    },
}
#: The guide's example request (the fuzz test's examples phase sends it as a real payout).
PAYOUT_EXAMPLE = {"freelancerId": 1, "amount": 100.50, "currency": "usd", "payoutType": "MANUAL",
                  "description": "Payment for completed work"}


def _json_object(raw: bytes, fields: set[str]) -> dict[str, Any]:
    """The body as a JSON object of known fields; fractions stay the text they were written as."""
    if len(raw) > MAX_BODY_BYTES:
        raise ValidationError("The request body is too large.")
    try:
        body = json.loads(raw, parse_float=str)
    except (ValueError, UnicodeDecodeError):
        raise ValidationError("The body must be a JSON object.") from None
    if not isinstance(body, dict):
        raise ValidationError("The body must be a JSON object.")
    unknown = sorted(set(body) - fields)
    if unknown:
        raise ValidationError(f"Unknown field(s): {', '.join(unknown)}.")
    return body


def _parse_body(raw: bytes) -> dict[str, Any]:
    body = _json_object(raw, _FIELDS)
    for name in ("freelancerId", "amount", "currency"):
        if body.get(name) in (None, ""):
            raise ValidationError(f"{name} is required.")
    freelancer = body["freelancerId"]
    # ASCII digits only ("²".isdigit() is true and int() then raised: a 500), and within the id
    # column (a larger int overflowed SQLite's driver: another 500).
    if isinstance(freelancer, str) and _DIGITS.fullmatch(freelancer):
        freelancer = int(freelancer)
    if isinstance(freelancer, bool) or not isinstance(freelancer, int) or not (
        1 <= freelancer <= MAX_ID
    ):
        raise ValidationError("freelancerId must be a freelancer's numeric id.")
    amount = body["amount"]
    if isinstance(amount, bool) or not isinstance(amount, int | str):
        raise ValidationError("amount must be a number such as 100.50.")
    for name in ("currency", "payoutType", "description"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise ValidationError(f"{name} must be a string.")
    payout_type = body.get("payoutType") or PayoutType.MANUAL.value
    if payout_type not in {t.value for t in PayoutType}:
        raise ValidationError("payoutType must be MANUAL or BULK.")
    return {"freelancer_id": freelancer, "amount": amount, "currency": body["currency"],
            "payout_type": payout_type, "description": body.get("description") or ""}


def payout_view(payout: Payout) -> dict[str, Any]:
    """The ledger row as the API reports it."""
    return {
        "payoutId": payout.id,
        "status": payout.status,
        "freelancerId": payout.freelancer_id,
        "amountMinor": payout.amount_minor,
        "amountDisplay": format_money(Money(payout.amount_minor, payout.currency)),
        "currency": payout.currency,
        "payoutType": payout.payout_type,
        "description": payout.description,
        "stripeTransferId": payout.stripe_transfer_id,
        "requestedBy": payout.requested_by,
        "error": ({"code": payout.error_code, "message": payout.error_message}
                  if payout.error_code else None),
        "createdAt": payout.created_at.isoformat(),
    }


#: ``Confirm-Duplicate-Of``: the id of the earlier payout or reversal a request knowingly repeats.
ConfirmDuplicateOf = Annotated[str | None, Header(pattern=r"^[0-9]{1,10}$", description=(
    "The id of the earlier payout (or reversal) this request knowingly repeats, as named by a "
    "409 likely_duplicate answer"))]


def _earlier_id(header: str | None) -> int | None:
    """The ``Confirm-Duplicate-Of`` header's id (digits only, checked by its pattern)."""
    return int(header) if header else None
IdempotencyKey = Annotated[str | None, Header(max_length=255, pattern=IDEMPOTENCY_KEY_PATTERN,
                                              description="Makes retries of this request safe")]


def _duplicate_answer(exc: LikelyDuplicateError) -> JSONResponse:
    return JSONResponse({"success": False, "message": exc.message, "code": exc.code,
                         "data": {"earlierId": exc.earlier_id}}, 409)


_MESSAGES = {
    PayoutStatus.PAID.value: (200, "Payout sent"),
    PayoutStatus.PENDING_APPROVAL.value: (202, "Payout recorded; it needs a second approver"),
    PayoutStatus.UNKNOWN.value: (202, "Stripe did not answer; the payout will be settled by "
                                      "retry or reconciliation (never sent twice)"),
    PayoutStatus.SUBMITTED.value: (202, "Payout is being sent"),
    PayoutStatus.FAILED.value: (422, "Stripe refused the payout"),
}


SAVED_ERROR_MESSAGE = (
    "Stripe had an internal error and will replay it to every retry of this payout: "
    "reconciliation settles it from Stripe's transfers, or a person decides (never sent twice)"
)


@router.post(
    "/payouts", summary="Request (and send) a payout", response_model=PayoutEnvelope,
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": PAYOUT_BODY_SCHEMA, "example": PAYOUT_EXAMPLE}}}},
    responses={202: documented("Awaiting approval, or outcome unknown", PayoutEnvelope),
               **AUTH_ERRORS,
               403: documented("Only admins request payouts"),
               404: documented("The freelancer does not exist"),
               409: documented("Preflight failed, token reused, or a likely duplicate "
                               "(data.earlierId; repeat with Confirm-Duplicate-Of)",
                               PayoutErrorEnvelope),
               422: documented("Invalid body or refused by Stripe", PayoutErrorEnvelope),
               **STRIPE_ERRORS},
)
async def create_payout(
    request: Request,
    claims: Annotated[TokenClaims, Depends(bearer_claims)],
    context: Annotated[ServiceContext, Depends(context_of)],
    idempotency_key: IdempotencyKey = None,
    confirm_duplicate_of: ConfirmDuplicateOf = None,
) -> JSONResponse:
    raw = await request.body()
    return await run_blocking(_create_payout, raw, claims, context, idempotency_key,
                              _earlier_id(confirm_duplicate_of))


def _create_payout(
    raw: bytes, claims: TokenClaims, context: ServiceContext, idempotency_key: str | None,
    confirm_duplicate_of: int | None,
) -> JSONResponse:
    if claims.role is Role.FREELANCER:
        with context.session_factory() as session:
            refusal = refuse(claims.operator(), Action.REQUEST_PAYOUT,
                             "This endpoint is for operators.", session=session)
        return fail(403, refusal.message, refusal.code)
    body = _parse_body(raw)
    operator = claims.operator()
    try:
        with context.session_factory.begin() as session:
            payout = request_payout(
                session, operator=operator, settings=context.settings,
                client_request_token=scoped_token("api", operator.username, idempotency_key),
                confirm_duplicate_of=confirm_duplicate_of,
                audit_refusals_with=context.session_factory, **body,
            )
            payout_id = payout.id
    except LikelyDuplicateError as exc:
        return _duplicate_answer(exc)
    # A 500 Stripe saved under the payout's key is replayed to every retry: not retried here.
    saved_error = (payout.status == PayoutStatus.UNKNOWN.value
                   and payout.error_code == SAVED_SERVER_ERROR)
    if payout.status in (PayoutStatus.PENDING.value, PayoutStatus.UNKNOWN.value) and (
        not saved_error
    ):
        try:
            payout = execute_payout(context.session_factory, gateway=context.gateway,
                                    payout_id=payout_id, operator=operator)
        except PreflightFailedError as exc:
            checks = [{"name": c.name, "ok": c.ok, "message": c.message}
                      for c in exc.result.checks]
            return JSONResponse({"success": False, "message": exc.message,
                                 "code": exc.code, "data": {"payoutId": payout_id,
                                                            "checks": checks}}, 409)
    status_code, message = _MESSAGES.get(payout.status, (200, "Payout recorded"))
    if payout.status == PayoutStatus.UNKNOWN.value and payout.error_code == SAVED_SERVER_ERROR:
        message = SAVED_ERROR_MESSAGE
    if status_code >= 400:
        return JSONResponse({"success": False, "message": message,
                             "data": payout_view(payout)}, status_code)
    return ok(message, payout_view(payout), status_code=status_code)


# ---- reversals -----------------------------------------------------------------------------------

_REVERSAL_FIELDS = {"amount", "reason"}
_REVERSAL_MESSAGES = {
    ReversalStatus.SUCCEEDED.value: (200, "Reversal made"),
    ReversalStatus.PENDING_APPROVAL.value: (202, "Reversal recorded; it needs a second approver"),
    ReversalStatus.UNKNOWN.value: (202, "Stripe did not answer; the reversal will be settled by "
                                        "retry or reconciliation (never made twice)"),
    ReversalStatus.SUBMITTED.value: (202, "Reversal is being sent"),
    ReversalStatus.FAILED.value: (422, "Stripe refused the reversal"),
}
REVERSAL_BODY_SCHEMA = {
    "type": "object", "required": ["reason"], "additionalProperties": False,
    "properties": {
        "amount": {"type": ["number", "string", "null"],
                   "description": "Major units; omitted or null reverses all that remains"},
        "reason": {"type": "string", "minLength": 1, "maxLength": 500},
    },
}


def _parse_reversal_body(raw: bytes) -> dict[str, Any]:
    body = _json_object(raw, _REVERSAL_FIELDS)
    amount = body.get("amount")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int | str)):
        raise ValidationError("amount must be a number such as 10.50.")
    if not isinstance(body.get("reason"), str):
        raise ValidationError("reason is required.")
    return {"amount": amount, "reason": body["reason"]}


def reversal_view(reversal: PayoutReversal, currency: str) -> dict[str, Any]:
    """The reversal row as the API reports it."""
    return {
        "reversalId": reversal.id, "payoutId": reversal.payout_id, "status": reversal.status,
        "amountMinor": reversal.amount_minor,
        "amountDisplay": format_money(Money(reversal.amount_minor, currency)),
        "currency": currency, "reason": reversal.reason,
        "stripeReversalId": reversal.stripe_reversal_id, "requestedBy": reversal.requested_by,
        "approvedBy": reversal.approved_by,
        "error": ({"code": reversal.error_code, "message": reversal.error_message}
                  if reversal.error_code else None),
        "createdAt": reversal.created_at.isoformat(),
    }


@router.post(
    "/payouts/{payout_id}/reversals", summary="Reverse (part of) a paid payout",
    response_model=ReversalEnvelope,
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": REVERSAL_BODY_SCHEMA,
        "example": {"amount": "10.00", "reason": "Invoice paid twice"}}}}},
    responses={202: documented("Awaiting approval, or outcome unknown", ReversalEnvelope),
               **AUTH_ERRORS,
               403: documented("Only admins reverse payouts"),
               404: documented("The payout does not exist"),
               409: documented("Not a paid payout, nothing left to reverse, token reused, or a "
                               "likely duplicate (data.earlierId)", ReversalErrorEnvelope),
               422: documented("Invalid body or refused by Stripe", ReversalErrorEnvelope),
               **STRIPE_ERRORS},
)
async def create_reversal(
    payout_id: Annotated[int, Path(ge=1, le=MAX_ID, examples=[1])],
    request: Request,
    claims: Annotated[TokenClaims, Depends(bearer_claims)],
    context: Annotated[ServiceContext, Depends(context_of)],
    idempotency_key: IdempotencyKey = None,
    confirm_duplicate_of: ConfirmDuplicateOf = None,
) -> JSONResponse:
    raw = await request.body()
    return await run_blocking(_create_reversal, payout_id, raw, claims, context,
                              idempotency_key, _earlier_id(confirm_duplicate_of))


def _create_reversal(
    payout_id: int, raw: bytes, claims: TokenClaims, context: ServiceContext,
    idempotency_key: str | None, confirm_duplicate_of: int | None,
) -> JSONResponse:
    operator = claims.operator()
    if claims.role is Role.FREELANCER:
        with context.session_factory() as session:
            refusal = refuse(operator, Action.REVERSE_PAYOUT, "This endpoint is for operators.",
                             session=session)
        return fail(403, refusal.message, refusal.code)
    body = _parse_reversal_body(raw)
    try:
        reversal = reverse_payout(
            context.session_factory, gateway=context.gateway, operator=operator,
            payout_id=payout_id, settings=context.settings,
            client_request_token=scoped_token("api", operator.username, idempotency_key),
            confirm_duplicate_of=confirm_duplicate_of, **body)
    except LikelyDuplicateError as exc:
        return _duplicate_answer(exc)
    with context.session_factory() as session:
        currency = get_payout(session, payout_id=reversal.payout_id).currency
    view = reversal_view(reversal, currency)
    status_code, message = _REVERSAL_MESSAGES.get(reversal.status, (200, "Reversal recorded"))
    if status_code >= 400:
        return JSONResponse({"success": False, "message": message, "data": view}, status_code)
    return ok(message, view, status_code=status_code)
