"""The freelancer's own pages, served by the companion service when there is no frontend (demo).

They mirror the platform's React pages (payment settings, success, error) with three choices
that follow from running without JavaScript (the CSP forbids scripts) and without a frontend:

- **Access through a signed link.** ``/freelancer/login?token=…`` (``python -m server.links``)
  trades a short-lived freelancer JWT for an HttpOnly, SameSite=Lax cookie scoped to
  ``/freelancer`` and 303-redirects, so the token leaves the address bar and history at once.
  Link and session carry the freelancer's page-access generation, checked on every request:
  ``python -m server.links --revoke`` ends them all (``lib.page_access``).
- **Forms, not fetch.** Every state change is a POST carrying a CSRF token (an HMAC of the
  session cookie), so another site cannot make a signed-in browser connect or disconnect. The
  disconnect confirmation is its own page; the success page returns with a meta refresh.
- **No open redirect.** "Connect" redirects only to the URL ``lib`` got back from Stripe.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader
from sqlalchemy.orm import Session

from lib.account_status import (
    ConnectionStatus,
    disabled_reason_label,
    requirement_label,
    summarise_requirements,
)
from lib.connect_flow import (
    CONNECT_METHODS,
    connection_status,
    create_connect_link,
    disconnect,
    express_dashboard_url,
    refresh_connection,
)
from lib.connection_attempts import FailureReason
from lib.destinations import confirm_destination, destination_facts
from lib.errors import (
    ConnectOpsError,
    NotFoundError,
    PermissionDeniedError,
    StripeGatewayError,
)
from lib.freelancers import get_freelancer
from lib.models import ConnectionMethod
from lib.outreach import check_link, spend_link
from lib.page_access import page_access_generation
from lib.roles import Action, Operator, Role, refuse
from lib.tokens import TokenClaims, TokenError, issue_token, sign_value, verify_token
from server.app_context import ServiceContext, context_of
from server.blocking import run_blocking
from server.responses import status_for

logger = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
Context = Annotated[ServiceContext, Depends(context_of)]

SESSION_COOKIE = "connect_ops_freelancer"
SESSION_LIFETIME = timedelta(hours=8)
COOKIE_PATH = "/freelancer"
SETTINGS_PATH = "/freelancer/payment-settings"
_CSRF_PURPOSE = "freelancer-page-csrf"
_ACCOUNT_ID = re.compile(r"^acct_[A-Za-z0-9]{1,64}$")
_HERE = Path(__file__).resolve().parent
_STYLESHEET = _HERE / "static" / "pages.css"
_templates = Environment(loader=FileSystemLoader(_HERE / "templates"), autoescape=True)

#: The platform's own messages (the guide's StripeError page), plus the reason we added.
ERROR_MESSAGES = {
    FailureReason.ACCESS_DENIED.value: "You denied the authorization request.",
    FailureReason.MISSING_PARAMETERS.value: "Invalid request. Please try again.",
    FailureReason.INVALID_STATE.value: "Session expired. Please try again.",
    FailureReason.EXCHANGE_FAILED.value: "Failed to complete the connection. Please try again.",
    FailureReason.SERVER_ERROR.value: "Server error occurred. Please contact support.",
    FailureReason.ACCOUNT_ALREADY_CONNECTED.value:
        "This Stripe account is already connected to another freelancer.",
}
UNKNOWN_ERROR = "An unknown error occurred."

#: Notices chosen by a fixed key in the query string; the text itself never comes from the URL.
NOTICES = {
    "disconnected": ("success", "Your Stripe account was disconnected."),
    "confirmed": ("success", "Thank you: payouts now go to this account."),
}
ONBOARDING_INCOMPLETE = (
    "info",
    "You left Stripe's onboarding before finishing. Your account cannot receive payments "
    "until it is complete: choose \"Finish onboarding\" to continue where you left off.",
)
#: Where a stale onboarding refresh/return URL leads (lib.onboarding_urls): it did nothing.
ONBOARDING_EXPIRED = (
    "info",
    "That onboarding link had expired or was already used, so it did nothing. Continue from "
    "here: \"Finish onboarding\" gets you a new link when your account still needs details.",
)
ONBOARDING_EXPIRED_SIGN_IN = (
    "That onboarding link had expired or was already used, so it did nothing. Sign in to your "
    "payment settings to carry on."
)
STRIPE_TROUBLE = (
    "Stripe could not complete the request just now. Please try again in a moment; "
    "if it keeps happening, contact support."
)
_SUMMARIES = {
    ConnectionStatus.ACTIVE: ("green", "✓", "You're all set to receive payments"),
    ConnectionStatus.PENDING: (
        "amber", "…", "Stripe is still setting up your account; payments start once it is ready."),
    ConnectionStatus.RESTRICTED: (
        "amber", "!", "Stripe needs more information to keep your payments flowing."),
    ConnectionStatus.DISABLED: (
        "red", "!", "Payments are paused until Stripe gets the information it needs."),
    ConnectionStatus.REJECTED: (
        "red", "✕", "Stripe rejected this account. Contact support or connect another account."),
}


# ---- rendering ---------------------------------------------------------------------------------


def render(template: str, *, status_code: int = 200, **values: Any) -> HTMLResponse:
    """A page from ``server/templates`` (autoescaped: every value is treated as text)."""
    html = _templates.get_template(template).render(**values)
    return HTMLResponse(html, status_code=status_code)


def problem_page(status_code: int, title: str, message: str, *, hint: str | None = None,
                 link: tuple[str, str] | None = None, icon: str = "!",
                 tone: str = "amber") -> HTMLResponse:
    href, text = link or (None, None)
    return render("problem.html", status_code=status_code, title=title, message=message,
                  hint=hint, link_href=href, link_text=text, icon=icon, tone=tone)


def sign_in_required(reason: str) -> HTMLResponse:
    return problem_page(
        401, "Please use a new link", reason,
        hint="Ask the platform for a new link to your payment settings.", tone="red",
    )


# ---- session and CSRF ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageSession:
    """The signed-in freelancer of this request."""

    freelancer_id: int
    csrf_token: str

    @property
    def operator(self) -> Operator:
        return Operator(username=f"freelancer:{self.freelancer_id}",
                        roles=frozenset({Role.FREELANCER}))


def _secret(context: ServiceContext) -> str:
    context.settings.require("JWT_SECRET")
    assert context.settings.jwt_secret is not None
    return context.settings.jwt_secret.get_secret_value()


def csrf_token_for(session_token: str, *, secret: str) -> str:
    """The CSRF token of a session: an HMAC bound to that cookie, so it dies with it."""
    digest = hashlib.sha256(session_token.encode()).hexdigest()[:32]
    return sign_value(digest, secret=secret, purpose=_CSRF_PURPOSE)


def _freelancer_claims(token: str, *, context: ServiceContext, secret: str) -> TokenClaims:
    claims = verify_token(token, secret=secret)
    if claims.role is not Role.FREELANCER:
        with context.session_factory() as session:
            raise refuse(claims.operator(), Action.MANAGE_OWN_CONNECTION,
                         "This link is not a freelancer's.", session=session)
    return claims


REVOKED = "This link or session was revoked. Ask the platform for a new link."


def _current_generation(context: ServiceContext, claims: TokenClaims) -> None:
    """TokenError unless the link or session is of the freelancer's current generation."""
    with context.session_factory() as session:
        current = page_access_generation(session, freelancer_id=claims.freelancer_id)
    if claims.page_generation != current:
        raise TokenError(REVOKED)


def current_session(request: Request, context: ServiceContext) -> PageSession:
    """The freelancer signed in by cookie; TokenError/PermissionDeniedError otherwise."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise TokenError("You are not signed in, or your session has ended.")
    secret = _secret(context)
    claims = _freelancer_claims(token, context=context, secret=secret)
    if claims.link_id is not None:
        raise TokenError("You are not signed in, or your session has ended.")
    _current_generation(context, claims)
    return PageSession(freelancer_id=claims.freelancer_id,
                       csrf_token=csrf_token_for(token, secret=secret))


def csrf_ok(page: PageSession, submitted: str) -> bool:
    """True when the form's token is this session's (constant time, any text compares)."""
    # Bytes: compare_digest raises TypeError for a str that is not ASCII (a 500 for "é").
    return bool(submitted) and hmac.compare_digest(page.csrf_token.encode(), submitted.encode())


def form_session(request: Request, context: ServiceContext,
                 csrf_token: str) -> PageSession | HTMLResponse:
    """The signed-in session behind a POSTed form, or the page that refuses it."""
    try:
        page = current_session(request, context)
    except (TokenError, PermissionDeniedError) as exc:
        return sign_in_required(exc.message)
    return page if csrf_ok(page, csrf_token) else csrf_refused()


def csrf_refused() -> HTMLResponse:
    return problem_page(
        403, "This form has expired", "The form was not sent from your payment settings page, "
        "or your session changed since it was opened. Nothing was changed.",
        link=(SETTINGS_PATH, "Back to payment settings"),
    )


# ---- payment settings view ---------------------------------------------------------------------


def _connection_values(session: Session, freelancer_id: int) -> dict[str, Any]:
    """What the payment-settings template shows, from the local mirror."""
    freelancer = get_freelancer(session, freelancer_id=freelancer_id)
    view = connection_status(session, freelancer_id=freelancer_id)
    values: dict[str, Any] = {
        "freelancer_name": freelancer.name, "freelancer_email": freelancer.email,
        "connection": {"connected": view.is_connected, "status": view.status.value},
    }
    if not view.is_connected:
        return values
    account = view.account or {}
    summary = summarise_requirements(account)
    requirements: list[dict[str, Any]] = []
    seen: set[str] = set()
    for code in [*summary.past_due, *summary.currently_due, *summary.future_currently_due]:
        label = requirement_label(code)
        if label not in seen:
            seen.add(label)
            requirements.append({"label": label, "past_due": code in summary.past_due})
    is_express = freelancer.connection_method == ConnectionMethod.ACCOUNT_LINK.value
    unfinished = not account.get("details_submitted") or summary.currently_due or summary.past_due
    tone, icon, text = _SUMMARIES.get(view.status, _SUMMARIES[ConnectionStatus.PENDING])
    if not view.destination_confirmed and view.status is ConnectionStatus.ACTIVE:
        tone, icon, text = "amber", "…", "Payouts start once you confirm this account above."
    facts = destination_facts(view.account_id or "", account)
    values["connection"].update(
        destination_confirmed=view.destination_confirmed, email=facts.email,
        business_name=facts.business_name, bank=facts.bank,
        account_id=view.account_id, verified=view.verified, tone=tone, icon=icon, summary=text,
        requirements=requirements,
        deadline=summary.deadline.strftime("%d %B %Y, %H:%M UTC") if summary.deadline else None,
        disabled_reason=disabled_reason_label(summary.disabled_reason),
        can_finish_onboarding=bool(is_express and unfinished),
        can_open_dashboard=bool(is_express and account.get("type") == "express"
                                and account.get("details_submitted")),
    )
    return values


def settings_page(context: ServiceContext, page: PageSession, *, refresh: bool = False,
                  notice: tuple[str, str] | None = None, error: str | None = None,
                  status_code: int = 200) -> HTMLResponse:
    """Render payment settings; a Stripe failure during a refresh becomes a message."""
    if refresh:
        try:
            refresh_connection(context.session_factory, gateway=context.gateway,
                               freelancer_id=page.freelancer_id)
        except StripeGatewayError as exc:
            logger.warning("payment settings refresh for freelancer %s: %s (request %s)",
                           page.freelancer_id, exc.code, exc.request_id)
            error = STRIPE_TROUBLE
    with context.session_factory() as session:
        values = _connection_values(session, page.freelancer_id)
    kind, text = notice or (None, None)
    return render("payment_settings.html", status_code=status_code, csrf_token=page.csrf_token,
                  notice={"kind": kind, "text": text} if notice else None, error=error, **values)


def friendly_message(exc: ConnectOpsError) -> str:
    """Plain words for a domain error: Stripe's operator-facing text stays in the log."""
    if isinstance(exc, StripeGatewayError):
        return STRIPE_TROUBLE
    return exc.message


def refused_page(context: ServiceContext, page: PageSession, what: str,
                 exc: ConnectOpsError) -> HTMLResponse:
    """Payment settings again, saying in plain words why ``what`` was refused (code logged)."""
    logger.warning("%s for freelancer %s refused: %s", what, page.freelancer_id, exc.code)
    return settings_page(context, page, error=friendly_message(exc), status_code=status_for(exc))


# ---- routes ------------------------------------------------------------------------------------
#
# Every route that reads the database or calls Stripe is ``async`` and hands that work to
# ``server.blocking.run_blocking`` (its docstring says why); the rest only render.


@router.get("/freelancer/assets/pages.css")
async def stylesheet() -> FileResponse:
    return FileResponse(_STYLESHEET, media_type="text/css")


@router.get("/freelancer/login")
async def login(context: Context, token: str = "") -> Response:
    """Trade a signed link's token for a session cookie, then leave the token behind (303).

    A single-use link (an outreach email's) is not spent by this GET: mail scanners and link
    previews fetch links before the freelancer does. It shows a page whose button POSTs it.
    """
    return await run_blocking(_login, context, token)


def _login(context: ServiceContext, token: str) -> Response:
    secret = _secret(context)
    try:
        claims = _freelancer_claims(token, context=context, secret=secret)
        _current_generation(context, claims)  # NotFoundError for an unknown freelancer
    except (TokenError, PermissionDeniedError, NotFoundError) as exc:
        logger.info("freelancer page login refused: %s", exc.code)
        return sign_in_required(f"This link cannot be used: {exc.message}")
    if claims.link_id is not None:
        try:
            check_link(context.session_factory, link_id=claims.link_id,
                       freelancer_id=claims.freelancer_id)
        except TokenError as exc:
            return sign_in_required(f"This link cannot be used: {exc.message}")
        response = render("open_link.html", token=token)
        response.headers["Cache-Control"] = "no-store"
        return response
    return _signed_in(context, claims, secret)


@router.post("/freelancer/login")
async def open_single_use_link(context: Context,
                               token: Annotated[str, Form()] = "") -> Response:
    """Spend a single-use link (once, committed first) and sign the freelancer in."""
    return await run_blocking(_open_single_use_link, context, token)


def _open_single_use_link(context: ServiceContext, token: str) -> Response:
    secret = _secret(context)
    try:
        claims = _freelancer_claims(token, context=context, secret=secret)
        _current_generation(context, claims)
        if claims.link_id is None:
            raise TokenError("This link is not a single-use link.")
        spend_link(context.session_factory, link_id=claims.link_id,
                   freelancer_id=claims.freelancer_id)
    except (TokenError, PermissionDeniedError, NotFoundError) as exc:
        logger.info("freelancer single-use link refused: %s", exc.code)
        return sign_in_required(f"This link cannot be used: {exc.message}")
    return _signed_in(context, claims, secret)


def _signed_in(context: ServiceContext, claims: TokenClaims, secret: str) -> Response:
    session_token = issue_token(secret=secret, subject=claims.subject, role=Role.FREELANCER,
                                lifetime=SESSION_LIFETIME, page_generation=claims.page_generation)
    response = RedirectResponse(SETTINGS_PATH, status_code=303)
    response.set_cookie(
        SESSION_COOKIE, session_token, max_age=int(SESSION_LIFETIME.total_seconds()),
        path=COOKIE_PATH, httponly=True, samesite="lax",
        secure=context.settings.backend_url.startswith("https://"),
    )
    logger.info("freelancer %s signed in to the payment pages", claims.subject)
    return response


@router.post("/freelancer/logout")
async def logout(request: Request, context: Context,
                 csrf_token: Annotated[str, Form()] = "") -> Response:
    return await run_blocking(_logout, request, context, csrf_token)


def _logout(request: Request, context: ServiceContext, csrf_token: str) -> Response:
    page = form_session(request, context, csrf_token)
    if isinstance(page, Response):
        return page
    response = problem_page(200, "Signed out", "You are signed out of your payment settings.",
                            hint="Use a new link from the platform to come back.", icon="✓",
                            tone="green")
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax")
    return response


@router.get("/freelancer/payment-settings")
async def payment_settings(request: Request, context: Context, onboarding: str = "",
                           notice: str = "", refresh: str = "") -> Response:
    return await run_blocking(_payment_settings, request, context, onboarding=onboarding,
                              notice=notice, refresh=refresh == "1")


def _payment_settings(request: Request, context: ServiceContext, *, onboarding: str,
                      notice: str, refresh: bool) -> Response:
    try:
        page = current_session(request, context)
        shown = NOTICES.get(notice)
        if onboarding == "incomplete":
            shown = ONBOARDING_INCOMPLETE
        elif onboarding == "expired":
            shown = ONBOARDING_EXPIRED
        return settings_page(context, page, refresh=refresh, notice=shown)
    except (TokenError, PermissionDeniedError, NotFoundError) as exc:
        return sign_in_required(ONBOARDING_EXPIRED_SIGN_IN if onboarding == "expired"
                                else exc.message)


@router.post("/freelancer/connect")
async def connect(request: Request, context: Context, method: Annotated[str, Form()] = "",
                  csrf_token: Annotated[str, Form()] = "") -> Response:
    """Start OAuth or hosted onboarding; redirect only to the URL Stripe gave ``lib``."""
    return await run_blocking(_connect, request, context, method, csrf_token)


def _connect(request: Request, context: ServiceContext, method: str,
             csrf_token: str) -> Response:
    page = form_session(request, context, csrf_token)
    if isinstance(page, Response):
        return page
    chosen = CONNECT_METHODS.get(method)
    if chosen is None:
        return settings_page(context, page, error="Choose how to connect your account.",
                             status_code=400)
    try:
        link = create_connect_link(
            context.session_factory, gateway=context.gateway, settings=context.settings,
            operator=page.operator, freelancer_id=page.freelancer_id, method=chosen)
    except ConnectOpsError as exc:
        return refused_page(context, page, f"connect ({method})", exc)
    logger.info("freelancer %s sent to Stripe (%s, attempt %s)", page.freelancer_id, method,
                link.attempt_id)
    return RedirectResponse(link.url, status_code=303)


@router.post("/freelancer/confirm-destination")
async def do_confirm_destination(request: Request, context: Context,
                                 account_id: Annotated[str, Form()] = "",
                                 csrf_token: Annotated[str, Form()] = "") -> Response:
    """The freelancer confirms the account their page showed is theirs: payouts may go to it."""
    return await run_blocking(_confirm_destination, request, context, account_id, csrf_token)


def _confirm_destination(request: Request, context: ServiceContext, account_id: str,
                         csrf_token: str) -> Response:
    page = form_session(request, context, csrf_token)
    if isinstance(page, Response):
        return page
    try:
        with context.session_factory.begin() as session:
            confirm_destination(session, operator=page.operator,
                                freelancer_id=page.freelancer_id, account_id=account_id[:300])
    except ConnectOpsError as exc:
        return refused_page(context, page, "destination confirmation", exc)
    logger.info("freelancer %s confirmed %s as their payout destination", page.freelancer_id,
                account_id)
    return RedirectResponse(f"{SETTINGS_PATH}?notice=confirmed", status_code=303)


@router.get("/freelancer/disconnect")
async def confirm_disconnect(request: Request, context: Context) -> Response:
    """The confirmation the React page asked with ``confirm()``: a page of its own here."""
    return await run_blocking(_confirm_disconnect, request, context)


def _confirm_disconnect(request: Request, context: ServiceContext) -> Response:
    try:
        page = current_session(request, context)
        with context.session_factory() as session:
            view = connection_status(session, freelancer_id=page.freelancer_id)
    except (TokenError, PermissionDeniedError, NotFoundError) as exc:
        return sign_in_required(exc.message)
    if not view.is_connected:
        return RedirectResponse(SETTINGS_PATH, status_code=303)
    return render("confirm_disconnect.html", csrf_token=page.csrf_token,
                  account_id=view.account_id)


@router.post("/freelancer/disconnect")
async def do_disconnect(request: Request, context: Context,
                        csrf_token: Annotated[str, Form()] = "") -> Response:
    return await run_blocking(_disconnect, request, context, csrf_token)


def _disconnect(request: Request, context: ServiceContext, csrf_token: str) -> Response:
    page = form_session(request, context, csrf_token)
    if isinstance(page, Response):
        return page
    try:
        account_id = disconnect(context.session_factory, gateway=context.gateway,
                                operator=page.operator, freelancer_id=page.freelancer_id)
    except ConnectOpsError as exc:
        return refused_page(context, page, "disconnect", exc)
    logger.info("freelancer %s disconnected %s from the payment pages", page.freelancer_id,
                account_id)
    return RedirectResponse(f"{SETTINGS_PATH}?notice=disconnected", status_code=303)


@router.post("/freelancer/express-dashboard")
async def open_express_dashboard(request: Request, context: Context,
                                 csrf_token: Annotated[str, Form()] = "") -> Response:
    """Mint a single-use Express Dashboard login link on demand and send the browser there."""
    return await run_blocking(_express_dashboard, request, context, csrf_token)


def _express_dashboard(request: Request, context: ServiceContext, csrf_token: str) -> Response:
    page = form_session(request, context, csrf_token)
    if isinstance(page, Response):
        return page
    try:
        url = express_dashboard_url(context.session_factory, gateway=context.gateway,
                                    operator=page.operator, freelancer_id=page.freelancer_id)
    except ConnectOpsError as exc:
        return refused_page(context, page, "express dashboard", exc)
    return RedirectResponse(url, status_code=303)


@router.get("/freelancer/stripe/success")
async def stripe_success(
    account_id: Annotated[str, Query(alias="accountId")] = "",
) -> HTMLResponse:
    """Public: the callback lands here; an id that is not an account id is not shown."""
    shown = account_id if _ACCOUNT_ID.fullmatch(account_id) else None
    return render("stripe_success.html", account_id=shown)


@router.get("/freelancer/stripe/error")
async def stripe_error(reason: str = "") -> HTMLResponse:
    """Public: the reason in plain words; the raw value is never shown."""
    return render("stripe_error.html", message=ERROR_MESSAGES.get(reason, UNKNOWN_ERROR))
