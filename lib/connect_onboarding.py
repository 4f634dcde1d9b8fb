"""Hosted onboarding of a new Express account: the account, its Account Links, and the two
redirects Stripe sends the freelancer back through (return and refresh).

Every function here calls Stripe between database writes, so each takes the session factory
and frames its own short transactions: a Stripe call never runs inside an open write
transaction, and what must survive a failed call (the attempt, the spent URL) is committed
before it. The refresh and return URLs are signed and single use (``lib.onboarding_urls``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.orm import Session, sessionmaker

from lib import audit
from lib.account_status import ConnectionStatus, derive_status
from lib.account_terms import account_terms
from lib.accounts import upsert_account
from lib.connection_attempts import FailureReason, finish_attempt, mark_returned, start_attempt
from lib.db import utcnow
from lib.errors import ConflictError, StripeGatewayError
from lib.freelancer_connection import ConnectLink, attach
from lib.freelancers import get_freelancer
from lib.models import AttemptOutcome, ConnectionMethod, Freelancer
from lib.onboarding_urls import (
    SignedAttempt,
    UrlPurpose,
    connection_generation,
    release,
    sign_attempt,
    spend,
)
from lib.roles import Action, Operator, Role, authorize_on_freelancer
from lib.settings import Settings
from lib.stripe_gateway import StripeGateway

ONBOARDING_RETURN_PATH = "/api/v1/freelancer/stripe-connect-return"
ONBOARDING_REFRESH_PATH = "/api/v1/freelancer/stripe-connect-refresh"
#: Stripe's Account Links live about five minutes.
ACCOUNT_LINK_LIFETIME = timedelta(minutes=5)


def _account_idempotency_key(freelancer: Freelancer) -> str:
    # One Express account per freelancer per "connection generation": a double click reuses it,
    # a reconnect after a disconnect creates a new one.
    generation = int(freelancer.disconnected_at.timestamp()) if freelancer.disconnected_at else 0
    return f"connectops-express-account-{freelancer.id}-{generation}"


def signed_onboarding_urls(settings: Settings, attempt_id: int, *, generation: int,
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
    factory: sessionmaker[Session], *, gateway: StripeGateway, settings: Settings,
    operator: Operator, freelancer_id: int,
) -> ConnectLink:
    """A hosted onboarding link; creates the freelancer's Express account first if needed."""
    settings.require("JWT_SECRET")
    with factory() as session:
        authorize_on_freelancer(operator, Action.GENERATE_LINK, freelancer_id=freelancer_id,
                                session=session)
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
        with factory.begin() as session:
            freelancer = get_freelancer(session, freelancer_id=freelancer_id)
            if freelancer.stripe_account_id is None:
                attach(freelancer, account_id=account_id, method=ConnectionMethod.ACCOUNT_LINK)
            upsert_account(session, account=created.data)
            audit.record(session, actor=operator, action="connect.express_account",
                         result="created", target=f"freelancer:{freelancer_id}",
                         input={"account": account_id}, idempotency_key=key,
                         stripe_request_id=created.request_id)

    return _issue_account_link(factory, gateway=gateway, settings=settings, operator=operator,
                               freelancer_id=freelancer_id, account_id=account_id)


def _issue_account_link(
    factory: sessionmaker[Session], *, gateway: StripeGateway, settings: Settings,
    operator: Operator, freelancer_id: int, account_id: str,
) -> ConnectLink:
    """A new Account Link for ``account_id``, recorded as an attempt (the caller authorized)."""
    with factory.begin() as session:
        attempt = start_attempt(
            session, freelancer_id=freelancer_id, method=ConnectionMethod.ACCOUNT_LINK,
            issued_by=operator.username, stripe_account_id=account_id,
            link_expires_at=utcnow() + ACCOUNT_LINK_LIFETIME,
        )
        attempt_id = attempt.id
        generation = connection_generation(get_freelancer(session, freelancer_id=freelancer_id))
    refresh_url, return_url = signed_onboarding_urls(settings, attempt_id, generation=generation)
    try:
        link = gateway.create_account_link(account_id=account_id, refresh_url=refresh_url,
                                           return_url=return_url)
    except StripeGatewayError as exc:
        # The freelancer never got this link: left pending it would later be counted as
        # abandoned, or as succeeded once another link completes onboarding.
        with factory.begin() as session:
            finish_attempt(session, attempt_id=attempt_id, outcome=AttemptOutcome.FAILED,
                           reason=FailureReason.SERVER_ERROR)
            audit.record(session, actor=operator, action="connect.onboarding_link",
                         result=f"failed:{exc.code}", target=f"freelancer:{freelancer_id}",
                         input={"account": account_id, "attempt_id": attempt_id},
                         stripe_request_id=exc.request_id, detail=exc.message)
        raise
    expires_at = link.data.get("expires_at")
    with factory.begin() as session:
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
    factory: sessionmaker[Session], *, gateway: StripeGateway, url: SignedAttempt,
) -> ReturnResult:
    """The freelancer came back: read the account (returning is not completing) and record it.

    The return URL is spent first (``StaleOnboardingUrl`` when it may not act; see
    ``lib.onboarding_urls``, whose clock judges it) and given back if Stripe cannot be read, so
    a reload works.
    """
    spent = spend(factory, url)
    attempt_id, freelancer_id, account_id = spent.attempt_id, spent.freelancer_id, spent.account_id
    with factory.begin() as session:
        mark_returned(session, attempt_id=attempt_id)
    fetched_at = utcnow()
    try:
        account = gateway.retrieve_account(account_id).data
    except StripeGatewayError:
        release(factory, spent)
        raise
    completed = onboarding_complete(account)
    with factory.begin() as session:
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
    factory: sessionmaker[Session], *, gateway: StripeGateway, settings: Settings,
    url: SignedAttempt,
) -> ConnectLink:
    """Stripe sent the freelancer to ``refresh_url`` (link expired or reused): mint a new one.

    Only for the account the spent URL's link was for, while it is still the freelancer's
    current one in the same connection generation: never a new account, never after a
    disconnect (``StaleOnboardingUrl``, see ``lib.onboarding_urls``).
    """
    spent = spend(factory, url)
    operator = Operator(username=f"freelancer:{spent.freelancer_id}",
                        roles=frozenset({Role.FREELANCER}))
    try:
        return _issue_account_link(factory, gateway=gateway, settings=settings,
                                   operator=operator, freelancer_id=spent.freelancer_id,
                                   account_id=spent.account_id)
    except StripeGatewayError:
        release(factory, spent)
        raise
