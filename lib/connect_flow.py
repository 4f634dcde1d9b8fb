"""Connecting a freelancer's Stripe account: OAuth (existing Standard accounts) and hosted
onboarding (new Express accounts), the callback, status and disconnect.

Functions that call Stripe between database writes take a ``session_factory`` and frame their
own short transactions, because a Stripe call must never run inside an open write transaction
(SQLite would hold its single writer lock for the whole network round trip) and because some
writes must be committed *before* the call: the OAuth state is spent before the code exchange.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lib import audit
from lib.account_status import ConnectionStatus, derive_status, is_verified
from lib.account_terms import account_terms
from lib.accounts import get_account, mark_deauthorized, upsert_account
from lib.connection_attempts import (
    FailureReason,
    finish_attempt,
    mark_returned,
    start_attempt,
)
from lib.db import utcnow
from lib.destinations import clear_destination, destination_facts, mark_new_destination
from lib.errors import (
    ConflictError,
    NotFoundError,
    StripeAccountAccessError,
    StripeGatewayError,
    StripeOAuthError,
)
from lib.freelancers import find_by_account, get_freelancer
from lib.models import (
    AttemptOutcome,
    ConnectedAccount,
    ConnectionMethod,
    Freelancer,
)
from lib.oauth_states import STATE_LIFETIME, consume_state, issue_state
from lib.onboarding_urls import (
    SignedAttempt,
    UrlPurpose,
    connection_generation,
    release,
    sign_attempt,
    spend,
)
from lib.roles import Action, Operator, Role, authorize, refuse
from lib.settings import Settings
from lib.stripe_gateway import StripeGateway

logger = logging.getLogger(__name__)

ONBOARDING_RETURN_PATH = "/api/v1/freelancer/stripe-connect-return"
ONBOARDING_REFRESH_PATH = "/api/v1/freelancer/stripe-connect-refresh"
#: Stripe's Account Links live about five minutes.
ACCOUNT_LINK_LIFETIME = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class ConnectLink:
    url: str
    expires_in: int
    method: ConnectionMethod
    attempt_id: int


def _authorize_for(
    operator: Operator, freelancer_id: int, action: Action, *,
    session: Session | sessionmaker[Session],
) -> None:
    """Operators need ``action``; a freelancer may act only on their own connection."""
    target = f"freelancer:{freelancer_id}"
    if operator is not None and Role.FREELANCER in operator.roles:
        authorize(operator, Action.MANAGE_OWN_CONNECTION, session=session, target=target)
        if operator.username != target:
            raise refuse(operator, Action.MANAGE_OWN_CONNECTION,
                         "A freelancer can only manage their own connection.",
                         session=session, target=target)
        return
    authorize(operator, action, session=session, target=target)


# ---- OAuth ------------------------------------------------------------------------------------


def create_oauth_link(
    session: Session, *, gateway: StripeGateway, settings: Settings, operator: Operator,
    freelancer_id: int,
) -> ConnectLink:
    """An OAuth consent URL for an existing Standard account, with a fresh single-use state.

    Older unused states of the same freelancer stay valid until they expire: two tabs must not
    invalidate each other.
    """
    _authorize_for(operator, freelancer_id, Action.GENERATE_LINK, session=session)
    freelancer = get_freelancer(session, freelancer_id=freelancer_id)
    attempt = start_attempt(
        session, freelancer_id=freelancer.id, method=ConnectionMethod.OAUTH,
        issued_by=operator.username, link_expires_at=utcnow() + STATE_LIFETIME,
    )
    token = issue_state(session, freelancer_id=freelancer.id, issued_by=operator.username,
                        attempt_id=attempt.id)
    prefill = {"email": freelancer.email, "country": freelancer.country or ""}
    first, _, last = freelancer.name.partition(" ")
    prefill.update({"first_name": first, "last_name": last})
    url = gateway.oauth_authorize_url(
        state=token, redirect_uri=settings.oauth_redirect_uri, stripe_user=prefill
    )
    audit.record(session, actor=operator, action="connect.oauth_link", result="issued",
                 target=f"freelancer:{freelancer.id}", input={"attempt_id": attempt.id})
    return ConnectLink(url=url, expires_in=int(STATE_LIFETIME.total_seconds()),
                       method=ConnectionMethod.OAUTH, attempt_id=attempt.id)


@dataclass(frozen=True, slots=True)
class CallbackResult:
    """What the callback did; ``reason`` is one of ``FailureReason`` when it failed."""

    success: bool
    reason: FailureReason | None = None
    account_id: str | None = None
    freelancer_id: int | None = None


def _record_failure(
    session: Session, reason: FailureReason, *, attempt_id: int | None,
    freelancer_id: int | None, detail: str | None = None,
) -> CallbackResult:
    finish_attempt(session, attempt_id=attempt_id, outcome=AttemptOutcome.FAILED, reason=reason)
    audit.record(session, actor="stripe-oauth-callback", action="connect.oauth_callback",
                 result=reason.value, target=f"freelancer:{freelancer_id}" if freelancer_id else None,
                 detail=detail)
    return CallbackResult(success=False, reason=reason, freelancer_id=freelancer_id)


def _fail(
    session_factory: sessionmaker[Session], reason: FailureReason, *, attempt_id: int | None,
    freelancer_id: int | None, detail: str | None = None,
) -> CallbackResult:
    with session_factory.begin() as session:
        return _record_failure(session, reason, attempt_id=attempt_id,
                               freelancer_id=freelancer_id, detail=detail)


def handle_oauth_callback(
    session_factory: sessionmaker[Session], *, gateway: StripeGateway,
    params: Mapping[str, str],
) -> CallbackResult:
    """Complete (or refuse) an OAuth connection from the redirect's query parameters."""
    state, code, error = params.get("state"), params.get("code"), params.get("error")
    if not state or (not code and not error):
        return _fail(session_factory, FailureReason.MISSING_PARAMETERS, attempt_id=None,
                     freelancer_id=None)

    # Spend the state in its own committed transaction before anything else happens. A callback
    # that ends here (unknown state, or Stripe's error) records its failure in that transaction;
    # one that goes on to the code exchange commits the spent state first.
    with session_factory.begin() as session:
        consumed = consume_state(session, token=state)
        if consumed is None:
            return _record_failure(session, FailureReason.INVALID_STATE, attempt_id=None,
                                   freelancer_id=None)
        if error:
            reason = (FailureReason.ACCESS_DENIED if error == "access_denied"
                      else FailureReason.EXCHANGE_FAILED)
            return _record_failure(session, reason, attempt_id=consumed.attempt_id,
                                   freelancer_id=consumed.freelancer_id,
                                   detail=f"Stripe returned error={error[:100]}")
    attempt_id, freelancer_id = consumed.attempt_id, consumed.freelancer_id
    assert code is not None

    try:
        token = gateway.oauth_token(code)
    except StripeOAuthError as exc:
        return _fail(session_factory, FailureReason.EXCHANGE_FAILED, attempt_id=attempt_id,
                     freelancer_id=freelancer_id, detail=f"{exc.stripe_code}: {exc.message}")
    except StripeGatewayError as exc:
        logger.error("OAuth code exchange failed for freelancer %s: %s (request %s)",
                     freelancer_id, exc.code, exc.request_id)
        return _fail(session_factory, FailureReason.SERVER_ERROR, attempt_id=attempt_id,
                     freelancer_id=freelancer_id, detail=exc.message)

    account_id = str(token.data.get("stripe_user_id") or "")
    if not account_id.startswith("acct_"):
        logger.error("OAuth exchange for freelancer %s returned no account id", freelancer_id)
        return _fail(session_factory, FailureReason.SERVER_ERROR, attempt_id=attempt_id,
                     freelancer_id=freelancer_id, detail="no stripe_user_id in token response")

    fetched_at = utcnow()
    account: dict[str, Any] | None
    try:
        account = gateway.retrieve_account(account_id).data
    except StripeGatewayError as exc:
        # The connection exists at Stripe; the mirror fills in on the next webhook or sync.
        logger.warning("connected %s but could not read it yet: %s", account_id, exc.code)
        account = None

    with session_factory.begin() as session:
        other = find_by_account(session, stripe_account_id=account_id)
        if other is not None and other.id != freelancer_id:
            finish_attempt(session, attempt_id=attempt_id, outcome=AttemptOutcome.FAILED,
                           reason=FailureReason.ACCOUNT_ALREADY_CONNECTED,
                           stripe_account_id=account_id)
            audit.record(session, actor="stripe-oauth-callback", action="connect.oauth_callback",
                         result=FailureReason.ACCOUNT_ALREADY_CONNECTED.value,
                         target=f"freelancer:{freelancer_id}",
                         detail=f"{account_id} already belongs to freelancer {other.id}")
            return CallbackResult(success=False, reason=FailureReason.ACCOUNT_ALREADY_CONNECTED,
                                  account_id=account_id, freelancer_id=freelancer_id)
        freelancer = get_freelancer(session, freelancer_id=freelancer_id)
        _attach(freelancer, account_id=account_id, method=ConnectionMethod.OAUTH)
        if account is not None:
            upsert_account(session, account=account, fetched_at=fetched_at)
        mirror = get_account(session, stripe_id=account_id)
        if mirror is not None:
            mirror.deauthorized_at = None
        finish_attempt(session, attempt_id=attempt_id, outcome=AttemptOutcome.SUCCEEDED,
                       stripe_account_id=account_id)
        audit.record(session, actor="stripe-oauth-callback", action="connect.oauth_callback",
                     result="connected", target=f"freelancer:{freelancer_id}",
                     input={"account": account_id}, stripe_request_id=token.request_id)
    return CallbackResult(success=True, account_id=account_id, freelancer_id=freelancer_id)


def _attach(freelancer: Freelancer, *, account_id: str, method: ConnectionMethod) -> None:
    if freelancer.stripe_account_id != account_id:
        freelancer.stripe_account_id = account_id
        freelancer.connected_at = utcnow()
        # A new destination: payouts to it wait for the freelancer's (or an admin's) confirmation.
        mark_new_destination(freelancer, account_id=account_id)
    freelancer.connection_method = method.value


# ---- hosted onboarding (Express) --------------------------------------------------------------


def _account_idempotency_key(freelancer: Freelancer) -> str:
    # One Express account per freelancer per "connection generation": a double click reuses it,
    # a reconnect after a disconnect creates a new one.
    generation = int(freelancer.disconnected_at.timestamp()) if freelancer.disconnected_at else 0
    return f"connectops-express-account-{freelancer.id}-{generation}"


def _onboarding_urls(settings: Settings, attempt_id: int, *, generation: int,
                     now: datetime | None = None) -> tuple[str, str]:
    """(refresh_url, return_url) of one link: each signed for its own purpose (lib.onboarding_urls)."""
    base = settings.backend_url.rstrip("/")
    urls = []
    for path, purpose in ((ONBOARDING_REFRESH_PATH, UrlPurpose.REFRESH),
                          (ONBOARDING_RETURN_PATH, UrlPurpose.RETURN)):
        signed = sign_attempt(settings, attempt_id=attempt_id, generation=generation,
                              purpose=purpose, now=now)
        urls.append(f"{base}{path}?{urlencode({'attempt': signed})}")
    return urls[0], urls[1]


def create_onboarding_link(
    session_factory: sessionmaker[Session], *, gateway: StripeGateway, settings: Settings,
    operator: Operator, freelancer_id: int,
) -> ConnectLink:
    """A hosted onboarding link; creates the freelancer's Express account first if needed."""
    settings.require("JWT_SECRET")
    _authorize_for(operator, freelancer_id, Action.GENERATE_LINK, session=session_factory)
    with session_factory() as session:
        freelancer = get_freelancer(session, freelancer_id=freelancer_id)
        account_id = freelancer.stripe_account_id
        if freelancer.connection_method == ConnectionMethod.OAUTH.value and account_id:
            raise ConflictError(
                "This freelancer is connected through OAuth (a Standard account); Stripe offers "
                "no onboarding link for it. Disconnect first to onboard a new Express account."
            )
        key = _account_idempotency_key(freelancer)
        email, country = freelancer.email, freelancer.country

    if account_id is None:
        # Refused here, before Stripe is called, when Stripe could not pay this country.
        terms = account_terms(platform_country=settings.stripe_platform_country,
                              freelancer_country=country)
        created = gateway.create_express_account(
            email=email, country=country,
            metadata={"freelancer_id": str(freelancer_id), "created_by": "connect-ops"},
            idempotency_key=key, terms=terms,
        )
        account_id = created.id
        with session_factory.begin() as session:
            freelancer = get_freelancer(session, freelancer_id=freelancer_id)
            if freelancer.stripe_account_id is None:
                _attach(freelancer, account_id=account_id, method=ConnectionMethod.ACCOUNT_LINK)
            upsert_account(session, account=created.data)
            audit.record(session, actor=operator, action="connect.express_account",
                         result="created", target=f"freelancer:{freelancer_id}",
                         input={"account": account_id}, idempotency_key=key,
                         stripe_request_id=created.request_id)

    return _issue_account_link(session_factory, gateway=gateway, settings=settings,
                               operator=operator, freelancer_id=freelancer_id,
                               account_id=account_id)


def _issue_account_link(
    session_factory: sessionmaker[Session], *, gateway: StripeGateway, settings: Settings,
    operator: Operator, freelancer_id: int, account_id: str,
) -> ConnectLink:
    """A new Account Link for ``account_id``, recorded as an attempt (the caller authorized)."""
    with session_factory.begin() as session:
        attempt = start_attempt(
            session, freelancer_id=freelancer_id, method=ConnectionMethod.ACCOUNT_LINK,
            issued_by=operator.username, stripe_account_id=account_id,
            link_expires_at=utcnow() + ACCOUNT_LINK_LIFETIME,
        )
        attempt_id = attempt.id
        generation = connection_generation(get_freelancer(session, freelancer_id=freelancer_id))
    refresh_url, return_url = _onboarding_urls(settings, attempt_id, generation=generation)
    try:
        link = gateway.create_account_link(account_id=account_id, refresh_url=refresh_url,
                                           return_url=return_url)
    except StripeGatewayError as exc:
        # The freelancer never got this link: left pending it would later be counted as
        # abandoned, or as succeeded once another link completes onboarding.
        with session_factory.begin() as session:
            finish_attempt(session, attempt_id=attempt_id, outcome=AttemptOutcome.FAILED,
                           reason=FailureReason.SERVER_ERROR)
            audit.record(session, actor=operator, action="connect.onboarding_link",
                         result=f"failed:{exc.code}", target=f"freelancer:{freelancer_id}",
                         input={"account": account_id, "attempt_id": attempt_id},
                         stripe_request_id=exc.request_id, detail=exc.message)
        raise
    expires_at = link.data.get("expires_at")
    with session_factory.begin() as session:
        audit.record(session, actor=operator, action="connect.onboarding_link", result="issued",
                     target=f"freelancer:{freelancer_id}",
                     input={"account": account_id, "attempt_id": attempt_id},
                     stripe_request_id=link.request_id)
    expires_in = (int(expires_at) - int(utcnow().timestamp())) if expires_at else 300
    return ConnectLink(url=str(link.data["url"]), expires_in=max(expires_in, 0),
                       method=ConnectionMethod.ACCOUNT_LINK, attempt_id=attempt_id)


@dataclass(frozen=True, slots=True)
class ReturnResult:
    freelancer_id: int
    account_id: str | None
    status: ConnectionStatus
    completed: bool


def handle_onboarding_return(
    session_factory: sessionmaker[Session], *, gateway: StripeGateway, url: SignedAttempt,
) -> ReturnResult:
    """The freelancer came back: read the account (returning is not completing) and record it.

    The return URL is spent first (``StaleOnboardingUrl`` when it may not act; see
    ``lib.onboarding_urls``) and given back if Stripe cannot be read, so a reload works.
    """
    spent = spend(session_factory, url, now=utcnow())
    attempt_id, freelancer_id, account_id = spent.attempt_id, spent.freelancer_id, spent.account_id
    with session_factory.begin() as session:
        mark_returned(session, attempt_id=attempt_id)
    fetched_at = utcnow()
    try:
        account = gateway.retrieve_account(account_id).data
    except StripeGatewayError:
        release(session_factory, spent)
        raise
    completed = onboarding_complete(account)
    with session_factory.begin() as session:
        upsert_account(session, account=account, fetched_at=fetched_at)
        if completed:
            finish_attempt(session, attempt_id=attempt_id, outcome=AttemptOutcome.SUCCEEDED)
        audit.record(session, actor=f"freelancer:{freelancer_id}",
                     action="connect.onboarding_return",
                     result="completed" if completed else "incomplete",
                     target=f"freelancer:{freelancer_id}", input={"account": account_id})
    return ReturnResult(freelancer_id=freelancer_id, account_id=account_id,
                        status=derive_status(account), completed=completed)


def onboarding_complete(account: Mapping[str, Any]) -> bool:
    """Details submitted and nothing due now: returning from Stripe alone proves nothing."""
    requirements = account.get("requirements") or {}
    return bool(account.get("details_submitted")) and not (
        requirements.get("currently_due") or requirements.get("past_due")
    )


def refresh_onboarding_link(
    session_factory: sessionmaker[Session], *, gateway: StripeGateway, settings: Settings,
    url: SignedAttempt,
) -> ConnectLink:
    """Stripe sent the freelancer to ``refresh_url`` (link expired or reused): mint a new one.

    Only for the account the spent URL's link was for, while it is still the freelancer's
    current one in the same connection generation: never a new account, never after a
    disconnect (``StaleOnboardingUrl``, see ``lib.onboarding_urls``).
    """
    spent = spend(session_factory, url, now=utcnow())
    operator = Operator(username=f"freelancer:{spent.freelancer_id}",
                        roles=frozenset({Role.FREELANCER}))
    try:
        return _issue_account_link(session_factory, gateway=gateway, settings=settings,
                                   operator=operator, freelancer_id=spent.freelancer_id,
                                   account_id=spent.account_id)
    except StripeGatewayError:
        release(session_factory, spent)
        raise


# ---- status and disconnect -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionView:
    freelancer_id: int
    account_id: str | None
    status: ConnectionStatus
    verified: bool
    account: dict[str, Any] | None
    #: False while payouts to a new destination wait for confirmation (lib.destinations).
    destination_confirmed: bool = True

    @property
    def is_connected(self) -> bool:
        return self.account_id is not None

    def to_api(self) -> dict[str, Any]:
        """The platform's existing response shape (``data`` of stripe-connect-status)."""
        details = None
        if self.account_id is not None:
            account = self.account or {}
            requirements = account.get("requirements") or {}
            deadline = requirements.get("current_deadline")
            facts = destination_facts(self.account_id, account)
            details = {
                "id": self.account_id,
                "chargesEnabled": bool(account.get("charges_enabled")),
                "payoutsEnabled": bool(account.get("payouts_enabled")),
                "detailsSubmitted": bool(account.get("details_submitted")),
                "requirementsCurrentlyDue": list(requirements.get("currently_due") or []),
                "requirementsPastDue": list(requirements.get("past_due") or []),
                "currentDeadline": int(deadline) if deadline else None,
                "disabledReason": requirements.get("disabled_reason") or None,
                # What the freelancer checks before confirming the destination is theirs.
                "email": facts.email,
                "businessName": facts.business_name,
                "bankName": facts.bank_name,
                "bankLast4": facts.bank_last4,
            }
        return {
            "isConnected": self.is_connected,
            "status": self.status.value,
            "verified": self.verified,
            "accountId": self.account_id,
            "destinationConfirmed": self.destination_confirmed if self.is_connected else None,
            "accountDetails": details,
        }


def connection_status(session: Session, *, freelancer_id: int) -> ConnectionView:
    """The freelancer's connection as the mirror knows it.

    One narrow query (the account id and the mirror's JSON), not two ORM loads: the freelancer
    API's status endpoint serves this on every poll of a freelancer's page.
    """
    row = session.execute(
        select(Freelancer.stripe_account_id, ConnectedAccount.raw, Freelancer.unconfirmed_account_id)
        .outerjoin(ConnectedAccount, ConnectedAccount.stripe_id == Freelancer.stripe_account_id)
        .where(Freelancer.id == freelancer_id)
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"Freelancer {freelancer_id} does not exist.")
    account_id, mirrored, unconfirmed = row
    if account_id is None:
        return ConnectionView(freelancer_id, None, ConnectionStatus.NOT_CONNECTED, False, None)
    raw = dict(mirrored) if mirrored is not None else None
    # Connected but not mirrored yet: we cannot say it is payable, so it is pending.
    status = derive_status(raw) if raw else ConnectionStatus.PENDING
    return ConnectionView(freelancer_id, account_id, status, is_verified(raw), raw,
                          destination_confirmed=unconfirmed is None)


def refresh_connection(
    session_factory: sessionmaker[Session], *, gateway: StripeGateway, freelancer_id: int,
) -> ConnectionView:
    """Re-read the freelancer's account from Stripe, update the mirror, return the view.

    An account Stripe no longer lets the platform read (403 ``account_invalid``) is recorded as
    revoked once a second read confirms it; the view then says the freelancer is not connected.
    """
    with session_factory() as session:
        account_id = get_freelancer(session, freelancer_id=freelancer_id).stripe_account_id
    if account_id is not None:
        fetched_at = utcnow()
        try:
            account = gateway.retrieve_account(account_id).data
        except StripeAccountAccessError:
            if not record_revoked_connection(session_factory, gateway=gateway,
                                             account_id=account_id,
                                             actor=f"freelancer:{freelancer_id}",
                                             source="status refresh"):
                raise
        else:
            with session_factory.begin() as session:
                upsert_account(session, account=account, fetched_at=fetched_at)
    with session_factory() as session:
        return connection_status(session, freelancer_id=freelancer_id)


def confirm_revoked(gateway: StripeGateway, account_id: str) -> bool:
    """Ask Stripe: True only when it refuses this platform access to the account (403).

    The same check as the deauthorization webhook's: an account the platform can still read is
    still connected, whatever an earlier error suggested. Other Stripe errors propagate (the
    question stays open).
    """
    try:
        gateway.retrieve_account(account_id)
    except StripeAccountAccessError:
        return True
    return False


def record_revoked_connection(
    session_factory: sessionmaker[Session], *, gateway: StripeGateway, account_id: str,
    actor: Operator | str, source: str,
) -> bool:
    """Confirm with Stripe that access to ``account_id`` is gone, then record it.

    The mirror is marked deauthorized and the freelancer still attached to the account is
    detached (history kept), as the ``account.application.deauthorized`` webhook does; False
    (nothing written) when Stripe still grants access.
    """
    if not confirm_revoked(gateway, account_id):
        logger.warning("%s: Stripe refused %s once but grants access again; not revoked",
                       source, account_id)
        return False
    with session_factory.begin() as session:
        mark_deauthorized(session, stripe_id=account_id)
        freelancer = find_by_account(session, stripe_account_id=account_id)
        if freelancer is not None:
            detach(session, freelancer=freelancer)
        audit.record(session, actor=actor, action="connect.revoked", result="disconnected",
                     target=f"freelancer:{freelancer.id}" if freelancer else None,
                     input={"account": account_id, "source": source},
                     detail="Stripe refuses this platform access to the account (403 "
                            "account_invalid), confirmed by a second read")
    logger.info("%s: access to %s was revoked at Stripe; recorded", source, account_id)
    return True


def disconnect(
    session_factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    freelancer_id: int,
) -> str:
    """Disconnect the freelancer's account; returns the account id that was detached.

    OAuth (Standard) connections are deauthorized at Stripe; Express accounts the platform
    created cannot be (Stripe refuses), so they are detached locally. The mirror and the
    history stay; reconnecting later works with the same or another account.

    Stripe answers ``invalid_client`` both when the account is already disconnected and when
    the request itself is wrong (a wrong or rotated client id, a live/test mismatch): only a
    revocation Stripe confirms (the account can no longer be read, 403) detaches locally.
    Otherwise the platform still has access at Stripe, so nothing changes here and the error
    says what to check.
    """
    _authorize_for(operator, freelancer_id, Action.DISCONNECT, session=session_factory)
    with session_factory() as session:
        freelancer = get_freelancer(session, freelancer_id=freelancer_id)
        account_id, method = freelancer.stripe_account_id, freelancer.connection_method
    if account_id is None:
        raise ConflictError("This freelancer has no connected Stripe account.")
    request_id = None
    if method == ConnectionMethod.OAUTH.value:
        try:
            request_id = gateway.oauth_deauthorize(account_id).request_id
        except StripeOAuthError as exc:
            if not confirm_revoked(gateway, account_id):
                logger.error("deauthorize %s refused (%s) while Stripe still grants access; "
                             "nothing changed", account_id, exc.stripe_code)
                audit.record_now(session_factory, actor=operator, action="connect.disconnect",
                                 result=f"refused:{exc.stripe_code or exc.code}",
                                 target=f"freelancer:{freelancer_id}",
                                 input={"account": account_id, "method": method},
                                 stripe_request_id=exc.request_id, detail=exc.message)
                raise StripeOAuthError(
                    f"Stripe refused to disconnect {account_id} ({exc.stripe_code}) and still "
                    "gives the platform access to it, so nothing was changed. Check "
                    "STRIPE_CONNECT_CLIENT_ID: it must be this platform's client id of the same "
                    "mode (test or live) as STRIPE_SECRET_KEY.",
                    stripe_code=exc.stripe_code, request_id=exc.request_id,
                    http_status=exc.http_status,
                ) from None
            # Already revoked at Stripe (by the freelancer, or a twice-used code), confirmed.
            logger.info("deauthorize %s: Stripe says %s and confirms access is gone; detaching",
                        account_id, exc.stripe_code)
    with session_factory.begin() as session:
        freelancer = get_freelancer(session, freelancer_id=freelancer_id)
        if freelancer.stripe_account_id == account_id:
            detach(session, freelancer=freelancer)
        if method == ConnectionMethod.OAUTH.value:
            mark_deauthorized(session, stripe_id=account_id)
        audit.record(session, actor=operator, action="connect.disconnect", result="disconnected",
                     target=f"freelancer:{freelancer_id}",
                     input={"account": account_id, "method": method},
                     stripe_request_id=request_id)
    return account_id


def detach(session: Session, *, freelancer: Freelancer, at: datetime | None = None) -> None:
    """Forget the freelancer's current account (the mirror and history are kept)."""
    freelancer.stripe_account_id = None
    freelancer.connection_method = None
    clear_destination(freelancer)
    freelancer.disconnected_at = at or utcnow()


# ---- the Express Dashboard ------------------------------------------------------------------


def express_dashboard_url(
    session_factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    freelancer_id: int,
) -> str:
    """A single-use link into the freelancer's Stripe Express Dashboard.

    Only for an Express account the platform created that finished onboarding (Stripe refuses
    login links otherwise). Minted on demand and handed straight to the signed-in freelancer's
    browser: the URL is a short-lived credential, never stored, logged or sent elsewhere.
    """
    _authorize_for(operator, freelancer_id, Action.MANAGE_OWN_CONNECTION, session=session_factory)
    with session_factory() as session:
        view = connection_status(session, freelancer_id=freelancer_id)
        method = get_freelancer(session, freelancer_id=freelancer_id).connection_method
    account = view.account or {}
    if view.account_id is None or method != ConnectionMethod.ACCOUNT_LINK.value or (
        account.get("type") != "express"
    ):
        raise ConflictError("Only a Stripe Express account created through this platform has "
                            "an Express Dashboard.")
    if not account.get("details_submitted"):
        raise ConflictError("Finish Stripe's onboarding first: the Express Dashboard opens once "
                            "the account is set up.")
    link = gateway.create_login_link(view.account_id)
    audit.record_now(session_factory, actor=operator, action="connect.express_dashboard",
                     result="issued", target=f"freelancer:{freelancer_id}",
                     input={"account": view.account_id}, stripe_request_id=link.request_id)
    return str(link.data["url"])
