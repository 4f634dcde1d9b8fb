"""The admin payout endpoint of the platform's existing API, on the payout engine.

The body is parsed by hand, handing every JSON number with a fraction or exponent to the money
parser as the exact text it was written as (``100.50`` stays ``"100.50"``): never a float, and
``1e3`` is refused like any exponent notation. ``Idempotency-Key`` becomes the ledger's client request
token: a retried request returns the same ledger row and can never pay twice.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from lib.errors import ValidationError
from lib.models import Payout, PayoutStatus, PayoutType
from lib.money import Money, format_money
from lib.payouts.execution import PreflightFailedError, execute_payout
from lib.payouts.ledger import request_payout
from lib.roles import Action, Role, refuse
from lib.tokens import TokenClaims
from server.app_context import ServiceContext, context_of
from server.responses import Envelope, fail, ok
from server.security import bearer_claims

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

MAX_BODY_BYTES = 16 * 1024
_FIELDS = {"freelancerId", "amount", "currency", "payoutType", "description"}

PAYOUT_BODY_SCHEMA = {
    "type": "object",
    "required": ["freelancerId", "amount", "currency"],
    "additionalProperties": False,
    "properties": {
        "freelancerId": {"type": ["integer", "string"], "description": "Freelancer id"},
        "amount": {"type": ["number", "string"],
                   "description": "Major units, e.g. 100.50 (parsed exactly, never as a float)"},
        "currency": {"type": "string", "minLength": 3, "maxLength": 3, "example": "usd"},
        "payoutType": {"type": "string", "enum": ["MANUAL", "BULK"], "default": "MANUAL"},
        "description": {"type": "string", "maxLength": 500},
    },
}


def _parse_body(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_BODY_BYTES:
        raise ValidationError("The request body is too large.")
    try:
        body = json.loads(raw, parse_float=str)
    except (ValueError, UnicodeDecodeError):
        raise ValidationError("The body must be a JSON object.") from None
    if not isinstance(body, dict):
        raise ValidationError("The body must be a JSON object.")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise ValidationError(f"Unknown field(s): {', '.join(unknown)}.")
    for name in ("freelancerId", "amount", "currency"):
        if body.get(name) in (None, ""):
            raise ValidationError(f"{name} is required.")
    freelancer = body["freelancerId"]
    if isinstance(freelancer, bool) or not (
        isinstance(freelancer, int) or (isinstance(freelancer, str) and freelancer.isdigit())
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
    return {"freelancer_id": int(freelancer), "amount": amount, "currency": body["currency"],
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


_MESSAGES = {
    PayoutStatus.PAID.value: (200, "Payout sent"),
    PayoutStatus.PENDING_APPROVAL.value: (202, "Payout recorded; it needs a second approver"),
    PayoutStatus.UNKNOWN.value: (202, "Stripe did not answer; the payout will be settled by "
                                      "retry or reconciliation (never sent twice)"),
    PayoutStatus.SUBMITTED.value: (202, "Payout is being sent"),
    PayoutStatus.FAILED.value: (422, "Stripe refused the payout"),
}


@router.post(
    "/payouts", summary="Request (and send) a payout", response_model=Envelope,
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": PAYOUT_BODY_SCHEMA}}}},
    responses={202: {"model": Envelope, "description": "Awaiting approval, or outcome unknown"},
               401: {"model": Envelope}, 403: {"model": Envelope}, 404: {"model": Envelope},
               409: {"model": Envelope, "description": "Preflight failed or token reused"},
               422: {"model": Envelope, "description": "Invalid body or refused by Stripe"}},
)
async def create_payout(
    request: Request,
    claims: Annotated[TokenClaims, Depends(bearer_claims)],
    context: Annotated[ServiceContext, Depends(context_of)],
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JSONResponse:
    raw = await request.body()
    return await run_in_threadpool(_create_payout, raw, claims, context, idempotency_key)


def _create_payout(
    raw: bytes, claims: TokenClaims, context: ServiceContext, idempotency_key: str | None,
) -> JSONResponse:
    if claims.role is Role.FREELANCER:
        refusal = refuse(claims.operator(), Action.REQUEST_PAYOUT,
                         "This endpoint is for operators.", session=context.session_factory)
        return fail(403, refusal.message, refusal.code)
    body = _parse_body(raw)
    operator = claims.operator()
    with context.session_factory.begin() as session:
        payout = request_payout(
            session, operator=operator, settings=context.settings,
            client_request_token=f"api:{operator.username}:{idempotency_key}"
            if idempotency_key else None,
            audit_refusals_with=context.session_factory, **body,
        )
        payout_id = payout.id
    if payout.status in (PayoutStatus.PENDING.value, PayoutStatus.UNKNOWN.value):
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
    if status_code >= 400:
        return JSONResponse({"success": False, "message": message,
                             "data": payout_view(payout)}, status_code)
    return ok(message, payout_view(payout), status_code=status_code)
