"""Connecting a freelancer's Stripe account: the one entry point for a connect link, status,
revocation, disconnect and the Express Dashboard.

Two protocols connect an account: OAuth for an existing Standard account
(``lib.connect_oauth``) and hosted onboarding for a new Express account
(``lib.connect_onboarding``). Callers ask :func:`create_connect_link` for "a link for this
freelancer by this method" and never choose between the two themselves.

Functions that call Stripe take the session ``factory`` and frame their own short transactions
(docs/CONVENTIONS.md): a Stripe call must never run inside an open write transaction (SQLite
would hold its single writer lock for the whole network round trip), and some writes must be
committed *before* the call: the OAuth state is spent before the code exchange.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lib import audit
from lib.account_status import ConnectionStatus, derive_status, is_verified
from lib.accounts import mark_deauthorized, upsert_account
from lib.connect_oauth import CallbackResult, create_oauth_link, handle_oauth_callback
from lib.connect_onboarding import (
    ReturnResult,
    create_onboarding_link,
    handle_onboarding_return,
    onboarding_complete,
    refresh_onboarding_link,
)
from lib.db import utcnow
from lib.destinations import destination_facts
from lib.errors import (
    ConflictError,
    NotFoundError,
    StripeAccountAccessError,
    StripeOAuthError,
    ValidationError,
)
from lib.freelancer_connection import ConnectLink, detach
from lib.freelancers import find_by_account, get_freelancer
from lib.models import ConnectedAccount, ConnectionMethod, Freelancer
from lib.roles import Action, Operator, authorize_on_freelancer
from lib.settings import Settings
from lib.stripe_gateway import StripeGateway

# The protocols' own functions stay importable from here, where every caller looked for them;
# new callers choose by method through create_connect_link.
__all__ = [
    "CONNECT_METHODS",
    "CallbackResult",
    "ConnectLink",
    "ConnectionView",
    "ReturnResult",
    "confirm_revoked",
    "connect_method",
    "connection_status",
    "create_connect_link",
    "create_oauth_link",
    "create_onboarding_link",
    "detach",
    "disconnect",
    "express_dashboard_url",
    "handle_oauth_callback",
    "handle_onboarding_return",
    "onboarding_complete",
    "record_revoked_connection",
    "refresh_connection",
    "refresh_onboarding_link",
]

logger = logging.getLogger(__name__)


# ---- a connect link ---------------------------------------------------------------------------

#: The words the freelancer API (``method=``) and the freelancer's page use for the two methods.
CONNECT_METHODS: Mapping[str, ConnectionMethod] = {
    "oauth": ConnectionMethod.OAUTH,
    "onboarding": ConnectionMethod.ACCOUNT_LINK,
}


def connect_method(word: str) -> ConnectionMethod:
    """The method a caller named (``oauth`` or ``onboarding``); ValidationError otherwise."""
    method = CONNECT_METHODS.get(word)
    if method is None:
        raise ValidationError("Choose how to connect the account: oauth or onboarding.")
    return method


def create_connect_link(
    factory: sessionmaker[Session], *, gateway: StripeGateway, settings: Settings,
    operator: Operator, freelancer_id: int, method: ConnectionMethod,
) -> ConnectLink:
    """A single-use link that connects ``freelancer_id``'s Stripe account by ``method``.

    ``OAUTH`` links an existing Standard account (consent at Stripe); ``ACCOUNT_LINK`` onboards
    a new Express account, created here first if the freelancer has none. Either way the link is
    recorded as a connection attempt and audited; refusals raise the usual domain errors.
    """
    if method is ConnectionMethod.ACCOUNT_LINK:
        return create_onboarding_link(factory, gateway=gateway, settings=settings,
                                      operator=operator, freelancer_id=freelancer_id)
    with factory.begin() as session:
        return create_oauth_link(session, gateway=gateway, settings=settings, operator=operator,
                                 freelancer_id=freelancer_id)


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
    # By name: the typing of a row of three columns is lost (each would be ``object``).
    account_id: str | None = row.stripe_account_id
    mirrored: Mapping[str, Any] | None = row.raw
    unconfirmed: str | None = row.unconfirmed_account_id
    if account_id is None:
        return ConnectionView(freelancer_id, None, ConnectionStatus.NOT_CONNECTED, False, None)
    raw = dict(mirrored) if mirrored is not None else None
    # Connected but not mirrored yet: we cannot say it is payable, so it is pending.
    status = derive_status(raw) if raw else ConnectionStatus.PENDING
    return ConnectionView(freelancer_id, account_id, status, is_verified(raw), raw,
                          destination_confirmed=unconfirmed is None)


def refresh_connection(
    factory: sessionmaker[Session], *, gateway: StripeGateway, freelancer_id: int,
) -> ConnectionView:
    """Re-read the freelancer's account from Stripe, update the mirror, return the view.

    An account Stripe no longer lets the platform read (403 ``account_invalid``) is recorded as
    revoked once a second read confirms it; the view then says the freelancer is not connected.
    """
    with factory() as session:
        account_id = get_freelancer(session, freelancer_id=freelancer_id).stripe_account_id
    if account_id is not None:
        fetched_at = utcnow()
        try:
            account = gateway.retrieve_account(account_id).data
        except StripeAccountAccessError:
            if not record_revoked_connection(factory, gateway=gateway,
                                             account_id=account_id,
                                             actor=f"freelancer:{freelancer_id}",
                                             source="status refresh"):
                raise
        else:
            with factory.begin() as session:
                upsert_account(session, account=account, fetched_at=fetched_at)
    with factory() as session:
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
    factory: sessionmaker[Session], *, gateway: StripeGateway, account_id: str,
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
    with factory.begin() as session:
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
    factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
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
    with factory() as session:
        authorize_on_freelancer(operator, Action.DISCONNECT, freelancer_id=freelancer_id,
                                session=session)
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
                audit.record_now(factory, actor=operator, action="connect.disconnect",
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
    with factory.begin() as session:
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


# ---- the Express Dashboard ------------------------------------------------------------------


def express_dashboard_url(
    factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    freelancer_id: int,
) -> str:
    """A single-use link into the freelancer's Stripe Express Dashboard.

    Only for an Express account the platform created that finished onboarding (Stripe refuses
    login links otherwise). Minted on demand and handed straight to the signed-in freelancer's
    browser: the URL is a short-lived credential, never stored, logged or sent elsewhere.
    """
    with factory() as session:
        authorize_on_freelancer(operator, Action.MANAGE_OWN_CONNECTION,
                                freelancer_id=freelancer_id, session=session)
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
    audit.record_now(factory, actor=operator, action="connect.express_dashboard",
                     result="issued", target=f"freelancer:{freelancer_id}",
                     input={"account": view.account_id}, stripe_request_id=link.request_id)
    return str(link.data["url"])
