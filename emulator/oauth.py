"""OAuth for Standard accounts, as connect.stripe.com serves it.

`GET /oauth/authorize` shows a consent page (pick an unconnected Standard test account or
create one); its form posts a server-side consent id to `/oauth/authorize/decision`, so the
redirect URI always comes from the validated authorize request, never from the form.
Errors in the authorize request are shown on the page and never redirected, as on Stripe;
only `access_denied` goes back to the platform.

`POST /oauth/token` is deliberately NOT idempotent, like Stripe's: a code is single use,
lives five minutes, and exchanging it a second time fails *and revokes the connection*.
`POST /oauth/deauthorize` disconnects an OAuth-connected account.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from emulator import account_state
from emulator.api import DROP_FLAG, authenticate, error_response
from emulator.errors import OAuthError, StripeApiError
from emulator.events import record_event
from emulator.faults import fault_error
from emulator.pages import PLATFORM_NAME, error_page, render_page
from emulator.runtime import Runtime
from emulator.store import Store, new_id, random_token
from emulator.wire import WireError, decode_params

logger = logging.getLogger(__name__)

CODE_LIFETIME = 300
CONSENT_LIFETIME = 3600
SCOPES = ("read_only", "read_write")


def _rt(request: Request) -> Runtime:
    return request.app.state.runtime


def _with_query(uri: str, params: dict[str, str | None]) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return uri + ("&" if "?" in uri else "?") + query


def _available_accounts(store: Store) -> list[dict[str, Any]]:
    out = []
    for acct_id, acct in store.state["accounts"].items():
        conn = store.state["connections"].get(acct_id, {})
        # As on connect.stripe.com, a Standard account already connected to the platform can
        # authorize again (same stripe_user_id): the platform must cope with that.
        if acct["type"] == "standard" and conn.get("via") == "oauth":
            out.append(
                {
                    "id": acct_id,
                    "email": acct.get("email") or "",
                    "name": acct["business_profile"].get("name") or acct.get("email") or acct_id,
                    "connected": bool(conn.get("active")),
                }
            )
    return out


async def authorize(request: Request) -> Response:
    """GET /oauth/authorize: validate, then show the consent page."""
    rt = _rt(request)
    config = rt.store.config
    try:
        params = decode_params(request.url.query)
    except WireError as exc:
        return error_page("invalid_request", exc.message)
    client_id = params.get("client_id")
    if not client_id:
        return error_page("invalid_request", "No client_id provided.")
    if client_id != config.connect_client_id:
        return error_page("invalid_client", f"No such application: '{client_id}'.")
    response_type = params.get("response_type")
    if response_type != "code":
        return error_page(
            "unsupported_response_type",
            f"Invalid response_type: {response_type!r}. Only 'code' is supported.",
        )
    scope = params.get("scope") or "read_only"
    if scope not in SCOPES:
        return error_page("invalid_scope", f"Invalid scope: {scope!r}. Use read_only or read_write.")
    redirect_uri = params.get("redirect_uri") or config.redirect_uris[0]
    if redirect_uri not in config.redirect_uris:
        return error_page(
            "invalid_redirect_uri",
            f"Invalid redirect URI '{redirect_uri}'. Ensure this uri exactly matches one of the "
            "URIs specified in your application settings.",
        )
    given_user = params.get("stripe_user")
    stripe_user: dict[str, Any] = given_user if isinstance(given_user, dict) else {}
    state_value = params.get("state")
    consent_id = "cons_" + random_token(24)
    with rt.store.transaction() as s:
        now = rt.store.now()
        for key in [k for k, v in s["oauth_consents"].items() if v["created"] < now - CONSENT_LIFETIME]:
            del s["oauth_consents"][key]
        s["oauth_consents"][consent_id] = {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "state": state_value if isinstance(state_value, str) else None,
            "scope": scope,
            "stripe_user": stripe_user,
            "created": now,
        }
        rt.store.mark_dirty()
        accounts = _available_accounts(rt.store)
    prefill = {
        "email": stripe_user.get("email", ""),
        "business_name": stripe_user.get("business_name", ""),
        "country": (stripe_user.get("country") or "US").upper(),
    }
    return render_page(
        "consent.html",
        accounts=accounts,
        prefer_new=bool(stripe_user.get("email")),
        prefill=prefill,
        consent_id=consent_id,
        scope=scope,
        redirect_uri=redirect_uri,
        action="/oauth/authorize/decision",
    )


async def decide(request: Request) -> Response:
    """POST /oauth/authorize/decision: Connect (code) or Deny (access_denied) back to the platform."""
    rt = _rt(request)
    try:
        form = decode_params((await request.body()).decode("utf-8", "replace"))
    except WireError as exc:
        return error_page("invalid_request", exc.message)
    consent_id = str(form.get("consent", ""))
    decision = str(form.get("decision", ""))
    with rt.store.transaction() as s:
        consent = s["oauth_consents"].pop(consent_id, None)
        rt.store.mark_dirty()
        if consent is None or consent["created"] < rt.store.now() - CONSENT_LIFETIME:
            return error_page("invalid_request", "This authorization request is no longer valid. Start again.")
        if decision == "deny":
            target = _with_query(
                consent["redirect_uri"],
                {
                    "error": "access_denied",
                    "error_description": "The user denied your request",
                    "state": consent["state"],
                },
            )
            return RedirectResponse(target, status_code=302)
        if decision != "connect":
            return error_page("invalid_request", "Choose Connect or Deny.")
        choice = str(form.get("account", "new"))
        if choice == "new":
            account_id = _create_standard(rt.store, form, consent, incomplete=bool(form.get("incomplete")))
        else:
            if choice not in {a["id"] for a in _available_accounts(rt.store)}:
                return error_page("invalid_request", f"Account {choice} cannot be connected.")
            account_id = choice
        code = "ac_" + random_token(32)
        s["oauth_codes"][code] = {
            "account": account_id,
            "client_id": consent["client_id"],
            "scope": consent["scope"],
            "created": rt.store.now(),
            "used": False,
        }
        rt.store.mark_dirty()
    target = _with_query(
        consent["redirect_uri"], {"scope": consent["scope"], "code": code, "state": consent["state"]}
    )
    return RedirectResponse(target, status_code=302)


def _create_standard(store: Store, form: dict[str, Any], consent: dict[str, Any], *, incomplete: bool) -> str:
    user = consent.get("stripe_user") or {}
    email = str(form.get("email") or user.get("email") or "") or None
    country = str(form.get("country") or user.get("country") or "US").upper()[:2] or "US"
    acct = account_state.build_account(
        store,
        account_type="standard",
        country=country,
        email=email,
        business_type=user.get("business_type") if user.get("business_type") in ("individual", "company") else None,
        capabilities=["card_payments", "transfers"],
        via="oauth",
    )
    if incomplete:
        account_state.leave_onboarding_incomplete(acct)
    else:
        account_state.complete_onboarding(acct)
    name = str(form.get("business_name") or user.get("business_name") or "")
    if name:
        acct["business_profile"]["name"] = name
        acct["settings"]["dashboard"]["display_name"] = name
    account_state.add_account(store, acct, via="oauth", connected=False)
    return str(acct["id"])


def _application(store: Store) -> dict[str, Any]:
    return {"id": store.config.connect_client_id, "object": "application", "name": PLATFORM_NAME}


def _set_connected(store: Store, account_id: str, active: bool, request_id: str) -> None:
    """Connect or revoke an OAuth connection, emitting the application event."""
    conn = store.state["connections"].get(account_id)
    if conn is None or conn["active"] == active:
        return
    conn["active"] = active
    store.mark_dirty()
    record_event(
        store,
        "account.application.authorized" if active else "account.application.deauthorized",
        _application(store),
        account=account_id,
        request_id=request_id,
    )


def _oauth_json(body: dict[str, Any], status: int, request_id: str) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"Request-Id": request_id, "Cache-Control": "no-store"})


def _secret_key(request: Request, params: dict[str, Any]) -> str:
    """The platform key: Bearer/Basic auth, or `client_secret` in the body."""
    secret = params.get("client_secret")
    if isinstance(secret, str) and secret:
        if not secret.startswith("sk_test_"):
            raise StripeApiError(401, "Invalid API Key provided: client_secret")
        return secret
    return authenticate(request)


async def _faulted(request: Request, rt: Runtime, request_id: str) -> Response | None:
    """Apply injected faults to an OAuth POST (no idempotency here: Stripe has none)."""
    faults = {f.kind: f for f in rt.faults.take("POST", request.url.path, None)}
    for kind in faults:
        refusal = fault_error(kind)
        if refusal is not None:
            return error_response(refusal, request_id)
    if "delay" in faults:
        await asyncio.sleep(faults["delay"].seconds)
    if "commit_then_drop" in faults:
        request.scope[DROP_FLAG] = True
    return None


async def _authenticated_params(
    request: Request, rt: Any, request_id: str
) -> dict[str, Any] | Response:
    """Decode the form and check the secret key and armed faults, as both POST endpoints do."""
    try:
        params = decode_params((await request.body()).decode("utf-8", "replace"))
        _secret_key(request, params)
    except WireError as exc:
        return _oauth_json(OAuthError("invalid_request", exc.message).to_body(), 400, request_id)
    except StripeApiError as exc:
        return error_response(exc, request_id)
    refused = await _faulted(request, rt, request_id)
    return refused if refused is not None else params


async def token(request: Request) -> Response:
    """POST /oauth/token: exchange a code (single use, five minutes) for the account id."""
    rt = _rt(request)
    request_id = new_id("req", 14)
    params = await _authenticated_params(request, rt, request_id)
    if isinstance(params, Response):
        return params
    try:
        with rt.store.transaction():
            body = _exchange(rt.store, params, request_id)
    except OAuthError as exc:
        return _oauth_json(exc.to_body(), exc.http_status, request_id)
    return _oauth_json(body, 200, request_id)


def _exchange(store: Store, params: dict[str, Any], request_id: str) -> dict[str, Any]:
    grant_type = params.get("grant_type")
    if grant_type == "refresh_token":
        return _refresh(store, params)
    if grant_type != "authorization_code":
        raise OAuthError("unsupported_grant_type", f"Unsupported grant type: {grant_type}")
    code = params.get("code")
    if not code or not isinstance(code, str):
        raise OAuthError("invalid_request", "No authorization code provided")
    record = store.state["oauth_codes"].get(code)
    if record is None:
        raise OAuthError("invalid_grant", f"Invalid authorization code: {code}")
    if record["used"]:
        _set_connected(store, record["account"], False, request_id)
        raise OAuthError("invalid_grant", f"Authorization code already used: {code}")
    if store.now() - record["created"] > CODE_LIFETIME:
        raise OAuthError("invalid_grant", f"Authorization code expired: {code}")
    record["used"] = True
    store.mark_dirty()
    account_id = record["account"]
    if account_id not in store.state["accounts"]:
        raise OAuthError("invalid_grant", f"Invalid authorization code: {code}")
    _set_connected(store, account_id, True, request_id)
    return _credentials(store, account_id, record["scope"])


def _credentials(store: Store, account_id: str, scope: str) -> dict[str, Any]:
    refresh = "rt_" + random_token(40)
    store.state.setdefault("oauth_refresh", {})[refresh] = {"account": account_id, "scope": scope}
    store.mark_dirty()
    return {
        "access_token": "sk_test_" + random_token(40),
        "livemode": False,
        "refresh_token": refresh,
        "scope": scope,
        "stripe_publishable_key": "pk_test_" + random_token(40),
        "stripe_user_id": account_id,
        "token_type": "bearer",
    }


def _refresh(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    refresh = params.get("refresh_token")
    record = store.state.setdefault("oauth_refresh", {}).get(refresh) if isinstance(refresh, str) else None
    if record is None or not account_state.is_connected(store, record["account"]):
        raise OAuthError("invalid_grant", f"Invalid refresh token: {refresh}")
    return _credentials(store, record["account"], record["scope"])


async def deauthorize(request: Request) -> Response:
    """POST /oauth/deauthorize: disconnect an OAuth-connected account."""
    rt = _rt(request)
    request_id = new_id("req", 14)
    params = await _authenticated_params(request, rt, request_id)
    if isinstance(params, Response):
        return params
    client_id = params.get("client_id")
    account_id = params.get("stripe_user_id")
    config = rt.store.config
    try:
        with rt.store.transaction() as s:
            # One invalid_client (401) per cause, as Stripe's InvalidClientError covers them:
            # a client id that is not the platform's (wrong or rotated), the platform's
            # live-mode id with a test key, or an account this application is not connected to.
            if config.connect_live_client_id and client_id == config.connect_live_client_id:
                raise OAuthError(
                    "invalid_client",
                    f"The client_id '{client_id}' is your application's live mode client ID, "
                    "but this request used a test mode API key. Use the client ID and API key "
                    "of the same mode.",
                    401,
                )
            if client_id != config.connect_client_id:
                raise OAuthError("invalid_client", f"No such application: '{client_id}'", 401)
            if not isinstance(account_id, str) or not account_id:
                raise OAuthError("invalid_request", "No stripe_user_id provided.")
            if not account_state.is_connected(rt.store, account_id):
                raise OAuthError(
                    "invalid_client",
                    f"This application is not connected to stripe account {account_id}, "
                    "or that account does not exist.",
                    401,
                )
            if s["connections"][account_id]["via"] != "oauth":
                raise OAuthError(
                    "invalid_request",
                    f"You cannot deauthorize {account_id}: your platform created this "
                    f"{s['accounts'][account_id]['type']} account and controls it.",
                )
            _set_connected(rt.store, account_id, False, request_id)
    except OAuthError as exc:
        return _oauth_json(exc.to_body(), exc.http_status, request_id)
    return _oauth_json({"stripe_user_id": account_id}, 200, request_id)


ROUTES = [
    Route("/oauth/authorize", authorize, methods=["GET"]),
    Route("/oauth/authorize/decision", decide, methods=["POST"]),
    Route("/oauth/token", token, methods=["POST"]),
    Route("/oauth/deauthorize", deauthorize, methods=["POST"]),
]

__all__ = ["ROUTES"]
