"""Stripe webhook endpoints: verify the raw body, store by event id, answer 200. Nothing else.

A missing or bad signature is refused (400) before the database is touched. A verified event
is stored in one INSERT and one commit and acknowledged at once: no handler runs and Stripe is
never called here (Stripe counts a slow answer as a failed delivery). ``python -m lib.worker``
processes what was stored (``lib.webhooks``), retrying failures itself; a duplicate delivery
is answered 200 like the first one.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from lib.errors import WebhookSignatureError
from lib.stripe_gateway import verify_webhook
from lib.webhooks import Endpoint, Intake, store_event
from server.app_context import ServiceContext, context_of
from server.blocking import run_blocking
from server.schemas import (
    DATABASE_ERRORS,
    Responses,
    WebhookReceived,
    WebhookRefused,
    documented,
)

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/stripe", tags=["webhooks"])
Context = Annotated[ServiceContext, Depends(context_of)]

#: Stripe events are a few KB; anything far larger is not Stripe.
MAX_BODY_BYTES = 512 * 1024

_RESPONSES: Responses = {
    400: documented("Missing/invalid signature, stale timestamp, malformed or oversized body",
                    WebhookRefused),
    **DATABASE_ERRORS,
}
#: The body is read raw (the signature covers its exact bytes), so FastAPI cannot infer it.
_REQUEST = {
    "parameters": [{
        "name": "Stripe-Signature", "in": "header", "required": True,
        "description": "`t=<unix time>,v1=<HMAC-SHA256 of \"{t}.{raw body}\">`",
        "schema": {"type": "string"},
    }],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["id", "object", "type"],
        "description": "A Stripe event, at most 512 KiB",
        "properties": {"id": {"type": "string"}, "object": {"const": "event"},
                       "type": {"type": "string"}, "livemode": {"type": "boolean"},
                       "account": {"type": "string"}, "data": {"type": "object"}},
    }}}},
}


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise WebhookSignatureError("body too large")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise WebhookSignatureError("body too large")
    return body


async def _receive(request: Request, context: ServiceContext, endpoint: Endpoint) -> JSONResponse:
    secret = (context.settings.stripe_connect_webhook_secret if endpoint is Endpoint.CONNECT
              else context.settings.stripe_webhook_secret)
    assert secret is not None  # required at start-up
    try:
        body = await _read_body(request)
        event = verify_webhook(body, request.headers.get("stripe-signature"),
                               secret.get_secret_value())
    except WebhookSignatureError as exc:
        logger.warning("webhook refused on %s endpoint: %s", endpoint.value, exc.message)
        return JSONResponse({"received": False, "error": exc.message}, status_code=400)
    return await run_blocking(_store, context, event.data, endpoint)


def _store(context: ServiceContext, event: dict, endpoint: Endpoint) -> JSONResponse:
    with context.session_factory.begin() as session:
        intake = store_event(session, event=event, endpoint=endpoint, settings=context.settings)
    return JSONResponse({"received": True, "duplicate": intake.intake is Intake.DUPLICATE,
                         "ignored": intake.intake is Intake.IGNORED})


@router.post("/webhooks", summary="Platform events (signed with STRIPE_WEBHOOK_SECRET)",
             response_model=WebhookReceived, responses=_RESPONSES, openapi_extra=_REQUEST)
async def platform_webhook(request: Request, context: Context) -> JSONResponse:
    return await _receive(request, context, Endpoint.PLATFORM)


@router.post("/connect-webhooks",
             summary="Connect events (signed with STRIPE_CONNECT_WEBHOOK_SECRET)",
             response_model=WebhookReceived, responses=_RESPONSES, openapi_extra=_REQUEST)
async def connect_webhook(request: Request, context: Context) -> JSONResponse:
    return await _receive(request, context, Endpoint.CONNECT)
