"""The freelancer API of the platform's existing backend (same paths and response shapes)."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import ValidationError as PydanticValidationError

from lib.connect_flow import (
    ConnectionView,
    ConnectLink,
    connect_method,
    connection_status,
    create_connect_link,
    disconnect,
    handle_oauth_callback,
    handle_onboarding_return,
    refresh_connection,
    refresh_onboarding_link,
)
from lib.connection_attempts import FailureReason
from lib.destinations import confirm_destination
from lib.errors import StripeGatewayError, ValidationError
from lib.onboarding_urls import StaleOnboardingUrl, UrlPurpose, read_signed_attempt
from lib.roles import Action, Role, refuse
from lib.tokens import TokenClaims, TokenError
from server.app_context import ServiceContext, context_of
from server.blocking import run_blocking
from server.responses import ok
from server.schemas import (
    AUTH_ERRORS,
    MAX_ID,
    STRIPE_ERRORS,
    VALIDATION_ERRORS,
    ConfirmDestinationBody,
    ConnectionStatusEnvelope,
    ConnectUrlEnvelope,
    MessageEnvelope,
    Responses,
    documented,
)
from server.security import bearer_claims

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/freelancer", tags=["freelancer"])

#: Longer than any real state or code; cut so an absurd value costs nothing downstream.
_MAX_PARAM = 1024

Claims = Annotated[TokenClaims, Depends(bearer_claims)]
Context = Annotated[ServiceContext, Depends(context_of)]

FREELANCER_ERRORS: Responses = {
    **AUTH_ERRORS,
    403: documented("The token is not a freelancer's"),
    404: documented("The freelancer does not exist"),
    **VALIDATION_ERRORS,
    **STRIPE_ERRORS,
}
#: The browser-facing redirects: a lost database shows a page to a browser, JSON to others.
REDIRECT_RESPONSES: Responses = {
    **VALIDATION_ERRORS,
    503: {**documented("The database is unreachable; reload in a moment"),
          "content": {"text/html": {}}},
}


def freelancer_id_of(claims: TokenClaims, context: ServiceContext) -> int:
    """The token's freelancer id (403, audited, for another role; 401 for an impossible id)."""
    if claims.role is not Role.FREELANCER:
        with context.session_factory() as session:
            raise refuse(claims.operator(), Action.MANAGE_OWN_CONNECTION,
                         "This endpoint is for freelancers.", session=session)
    freelancer_id = claims.freelancer_id
    # int() also reads non-ASCII digits and numbers past the id column, which overflowed
    # SQLite's driver (a 500) for a correctly signed token with an absurd subject.
    if not claims.subject.isascii() or not 1 <= freelancer_id <= MAX_ID:
        raise TokenError("The token's subject is not a freelancer id.")
    return freelancer_id


def frontend_base(context: ServiceContext) -> str:
    """Where freelancers' browsers are sent: the frontend, or this service's own pages."""
    return context.settings.frontend_url or ""


def sign_in_redirect(context: ServiceContext) -> RedirectResponse:
    """An onboarding URL that may not act: to the payment settings, behind the freelancer's login.

    There (the frontend's page, or this service's own) a signed-in freelancer continues with a
    fresh link; nobody else gets one.
    """
    return RedirectResponse(
        f"{frontend_base(context)}/freelancer/payment-settings?onboarding=expired", 302)


def error_redirect(context: ServiceContext, reason: FailureReason) -> RedirectResponse:
    query = urlencode({"reason": reason.value})
    return RedirectResponse(f"{frontend_base(context)}/freelancer/stripe/error?{query}", 302)


@router.get(
    "/stripe-connect-url", summary="Generate a Stripe Connect URL",
    response_model=ConnectUrlEnvelope,
    responses={**FREELANCER_ERRORS, 409: documented("Onboarding asked for an OAuth-connected account")},
    description="`method=oauth` (default): consent URL for an existing Standard account. "
    "`method=onboarding`: hosted onboarding link for a new Express account.",
)
async def get_connect_url(
    claims: Claims, context: Context,
    method: Literal["oauth", "onboarding"] = "oauth",
) -> JSONResponse:
    link = await run_blocking(_connect_link, claims, context, method)
    return ok("Stripe Connect URL generated",
              {"connectUrl": link.url, "expiresIn": link.expires_in, "method": method})


def _connect_link(claims: TokenClaims, context: ServiceContext, method: str) -> ConnectLink:
    return create_connect_link(
        context.session_factory, gateway=context.gateway, settings=context.settings,
        operator=claims.operator(), freelancer_id=freelancer_id_of(claims, context),
        method=connect_method(method),
    )


@router.get(
    "/stripe-connect-callback", summary="OAuth redirect callback (Stripe calls this)",
    response_class=RedirectResponse, status_code=302, responses=REDIRECT_RESPONSES,
    description="Public. Redirects to `/freelancer/stripe/success?accountId=…` or "
    "`/freelancer/stripe/error?reason=…` on FRONTEND_URL (or on this service when unset). "
    "Reasons: access_denied, missing_parameters, invalid_state, exchange_failed, server_error, "
    "account_already_connected.",
)
async def oauth_callback(
    context: Context,
    state: str | None = None,
    code: str | None = None,
    error: str | None = None,
) -> RedirectResponse:
    # No length limits here: a browser must always be redirected to a page, never shown JSON.
    # Overlong values are refused by lib (an unknown state; a code Stripe will not accept).
    params = {k: v[:_MAX_PARAM] for k, v in {"state": state, "code": code, "error": error}.items()
              if v}
    result = await run_blocking(handle_oauth_callback, context.session_factory,
                                gateway=context.gateway, params=params)
    if not result.success:
        assert result.reason is not None
        return error_redirect(context, result.reason)
    query = urlencode({"accountId": result.account_id})
    return RedirectResponse(f"{frontend_base(context)}/freelancer/stripe/success?{query}", 302)


@router.get(
    "/stripe-connect-status", summary="Connection status",
    response_model=ConnectionStatusEnvelope, responses=FREELANCER_ERRORS,
    description="From the local mirror; `refresh=true` re-reads the account from Stripe.",
)
async def get_status(claims: Claims, context: Context, refresh: bool = False) -> JSONResponse:
    view = await run_blocking(_status_view, claims, context, refresh=refresh)
    return ok("Stripe Connect status retrieved", view.to_api())


def _status_view(claims: TokenClaims, context: ServiceContext, *,
                 refresh: bool) -> ConnectionView:
    freelancer_id = freelancer_id_of(claims, context)
    if refresh:
        return refresh_connection(context.session_factory, gateway=context.gateway,
                                  freelancer_id=freelancer_id)
    with context.session_factory() as session:
        return connection_status(session, freelancer_id=freelancer_id)


@router.delete(
    "/stripe-connect", summary="Disconnect the Stripe account", response_model=MessageEnvelope,
    responses={**FREELANCER_ERRORS, 409: documented("Not connected")},
)
async def delete_connection(claims: Claims, context: Context) -> JSONResponse:
    await run_blocking(_disconnect, claims, context)
    return ok("Stripe account disconnected successfully")


def _disconnect(claims: TokenClaims, context: ServiceContext) -> None:
    disconnect(context.session_factory, gateway=context.gateway, operator=claims.operator(),
               freelancer_id=freelancer_id_of(claims, context))


#: What the two onboarding redirects say about a URL that may not act.
_STALE_URL = (
    "A URL that is expired (an hour after issue), already used, forged, or issued before the "
    "freelancer disconnected acts on nothing and redirects to "
    "`/freelancer/payment-settings?onboarding=expired` (the freelancer signs in there)."
)


def _confirmation_body(raw: bytes) -> ConfirmDestinationBody:
    try:
        body = json.loads(raw) if len(raw) <= 4096 else None
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise ValidationError('The body must be a JSON object: {"accountId": "acct_…"}.')
    try:
        return ConfirmDestinationBody.model_validate(body)
    except PydanticValidationError:
        raise ValidationError("accountId must be the Stripe account id (acct_…) you were shown, "
                              "and nothing else.") from None


@router.post(
    "/stripe-connect-confirm", summary="Confirm the connected account as the payout destination",
    response_model=MessageEnvelope,
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": ConfirmDestinationBody.model_json_schema()}}}},
    responses={**FREELANCER_ERRORS,
               409: documented("The account named is not the connected one any more")},
    description="After a new connection (or a change of account) payouts to it are held until "
    "the freelancer confirms it is theirs, having been shown `accountDetails.email`, "
    "`businessName`, `bankName` and `bankLast4` from stripe-connect-status. `accountId` is the "
    "account that was shown. Confirming an already confirmed account is a no-op.",
)
async def confirm_connection(request: Request, claims: Claims,
                             context: Context) -> JSONResponse:
    # The body is read after the token is checked: an anonymous caller gets its 401 whatever
    # it sent (FastAPI validates a declared body before any dependency).
    raw = await request.body()
    return await run_blocking(_confirm_connection, raw, claims, context)


def _confirm_connection(raw: bytes, claims: TokenClaims, context: ServiceContext) -> JSONResponse:
    freelancer_id = freelancer_id_of(claims, context)
    account_id = _confirmation_body(raw).accountId
    with context.session_factory.begin() as session:
        changed = confirm_destination(session, operator=claims.operator(),
                                      freelancer_id=freelancer_id, account_id=account_id)
    return ok("Payout destination confirmed" if changed
              else "Payout destination was already confirmed")


@router.get(
    "/stripe-connect-return", summary="Return from hosted onboarding (Stripe redirects here)",
    response_class=RedirectResponse, status_code=302, responses=REDIRECT_RESPONSES,
    description="Public, single use. Reads the account: redirects to "
    "`/freelancer/stripe/success?accountId=…` when onboarding is complete, else to "
    "`/freelancer/payment-settings?onboarding=incomplete`. " + _STALE_URL,
)
async def onboarding_return(
    context: Context, attempt: str | None = None,
) -> RedirectResponse:
    return await run_blocking(_onboarding_return, context, attempt)


def _onboarding_return(context: ServiceContext, attempt: str | None) -> RedirectResponse:
    url = read_signed_attempt(context.settings, attempt, purpose=UrlPurpose.RETURN)
    if url is None:
        return sign_in_redirect(context)
    try:
        result = handle_onboarding_return(context.session_factory, gateway=context.gateway,
                                          url=url)
    except StaleOnboardingUrl:
        return sign_in_redirect(context)
    except StripeGatewayError as exc:
        logger.error("onboarding return: Stripe error %s (request %s)", exc.code, exc.request_id)
        return error_redirect(context, FailureReason.SERVER_ERROR)
    base = frontend_base(context)
    if result.completed and result.account_id:
        return RedirectResponse(
            f"{base}/freelancer/stripe/success?{urlencode({'accountId': result.account_id})}", 302
        )
    return RedirectResponse(f"{base}/freelancer/payment-settings?onboarding=incomplete", 302)


@router.get(
    "/stripe-connect-refresh", summary="Expired onboarding link (Stripe redirects here)",
    response_class=RedirectResponse, status_code=302, responses=REDIRECT_RESPONSES,
    description="Public, single use. Mints a fresh onboarding link for the same account and "
    "redirects to it; never creates an account. " + _STALE_URL,
)
async def onboarding_refresh(
    context: Context, attempt: str | None = None,
) -> RedirectResponse:
    return await run_blocking(_onboarding_refresh, context, attempt)


def _onboarding_refresh(context: ServiceContext, attempt: str | None) -> RedirectResponse:
    url = read_signed_attempt(context.settings, attempt, purpose=UrlPurpose.REFRESH)
    if url is None:
        return sign_in_redirect(context)
    try:
        link = refresh_onboarding_link(context.session_factory, gateway=context.gateway,
                                       settings=context.settings, url=url)
    except StaleOnboardingUrl:
        return sign_in_redirect(context)
    except StripeGatewayError as exc:
        logger.error("onboarding refresh: Stripe error %s (request %s)", exc.code, exc.request_id)
        return error_redirect(context, FailureReason.SERVER_ERROR)
    # The URL comes from Stripe's API response, never from the request: no open redirect.
    return RedirectResponse(link.url, 302)
