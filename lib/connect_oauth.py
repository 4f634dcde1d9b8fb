"""Connecting an existing Standard account through Stripe's OAuth: the consent link and the
callback.

The link is built locally (no Stripe call), so :func:`create_oauth_link` works inside the
caller's transaction. The callback calls Stripe between writes, so it takes the session
factory and frames its own short transactions: the OAuth state is spent and committed *before*
the code exchange, so a replayed callback can never exchange a code twice, and no write
transaction stays open across the network round trip (SQLite would hold its one writer lock).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from lib import audit
from lib.accounts import get_account, upsert_account
from lib.connection_attempts import FailureReason, finish_attempt, start_attempt
from lib.db import utcnow
from lib.errors import StripeGatewayError, StripeOAuthError
from lib.freelancer_connection import ConnectLink, attach
from lib.freelancers import find_by_account, get_freelancer
from lib.models import AttemptOutcome, ConnectionMethod
from lib.oauth_states import STATE_LIFETIME, consume_state, issue_state
from lib.roles import Action, Operator, authorize_on_freelancer
from lib.settings import Settings
from lib.stripe_gateway import StripeGateway

logger = logging.getLogger(__name__)

#: Who the audit log names for what the callback does (Stripe's redirect, not a person).
CALLBACK_ACTOR = "stripe-oauth-callback"


def create_oauth_link(
    session: Session, *, gateway: StripeGateway, settings: Settings, operator: Operator,
    freelancer_id: int,
) -> ConnectLink:
    """An OAuth consent URL for an existing Standard account, with a fresh single-use state.

    Older unused states of the same freelancer stay valid until they expire: two tabs must not
    invalidate each other.
    """
    authorize_on_freelancer(operator, Action.GENERATE_LINK, freelancer_id=freelancer_id,
                                session=session)
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
    audit.record(session, actor=CALLBACK_ACTOR, action="connect.oauth_callback",
                 result=reason.value, target=f"freelancer:{freelancer_id}" if freelancer_id else None,
                 detail=detail)
    return CallbackResult(success=False, reason=reason, freelancer_id=freelancer_id)


def _fail(
    factory: sessionmaker[Session], reason: FailureReason, *, attempt_id: int | None,
    freelancer_id: int | None, detail: str | None = None,
) -> CallbackResult:
    with factory.begin() as session:
        return _record_failure(session, reason, attempt_id=attempt_id,
                               freelancer_id=freelancer_id, detail=detail)


def handle_oauth_callback(
    factory: sessionmaker[Session], *, gateway: StripeGateway, params: Mapping[str, str],
) -> CallbackResult:
    """Complete (or refuse) an OAuth connection from the redirect's query parameters."""
    state, code, error = params.get("state"), params.get("code"), params.get("error")
    if not state or (not code and not error):
        return _fail(factory, FailureReason.MISSING_PARAMETERS, attempt_id=None,
                     freelancer_id=None)

    # Spend the state in its own committed transaction before anything else happens. A callback
    # that ends here (unknown state, or Stripe's error) records its failure in that transaction;
    # one that goes on to the code exchange commits the spent state first.
    with factory.begin() as session:
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
        return _fail(factory, FailureReason.EXCHANGE_FAILED, attempt_id=attempt_id,
                     freelancer_id=freelancer_id, detail=f"{exc.stripe_code}: {exc.message}")
    except StripeGatewayError as exc:
        logger.error("OAuth code exchange failed for freelancer %s: %s (request %s)",
                     freelancer_id, exc.code, exc.request_id)
        return _fail(factory, FailureReason.SERVER_ERROR, attempt_id=attempt_id,
                     freelancer_id=freelancer_id, detail=exc.message)

    account_id = str(token.data.get("stripe_user_id") or "")
    if not account_id.startswith("acct_"):
        logger.error("OAuth exchange for freelancer %s returned no account id", freelancer_id)
        return _fail(factory, FailureReason.SERVER_ERROR, attempt_id=attempt_id,
                     freelancer_id=freelancer_id, detail="no stripe_user_id in token response")

    fetched_at = utcnow()
    account: dict[str, Any] | None
    try:
        account = gateway.retrieve_account(account_id).data
    except StripeGatewayError as exc:
        # The connection exists at Stripe; the mirror fills in on the next webhook or sync.
        logger.warning("connected %s but could not read it yet: %s", account_id, exc.code)
        account = None

    with factory.begin() as session:
        other = find_by_account(session, stripe_account_id=account_id)
        if other is not None and other.id != freelancer_id:
            finish_attempt(session, attempt_id=attempt_id, outcome=AttemptOutcome.FAILED,
                           reason=FailureReason.ACCOUNT_ALREADY_CONNECTED,
                           stripe_account_id=account_id)
            audit.record(session, actor=CALLBACK_ACTOR, action="connect.oauth_callback",
                         result=FailureReason.ACCOUNT_ALREADY_CONNECTED.value,
                         target=f"freelancer:{freelancer_id}",
                         detail=f"{account_id} already belongs to freelancer {other.id}")
            return CallbackResult(success=False, reason=FailureReason.ACCOUNT_ALREADY_CONNECTED,
                                  account_id=account_id, freelancer_id=freelancer_id)
        freelancer = get_freelancer(session, freelancer_id=freelancer_id)
        attach(freelancer, account_id=account_id, method=ConnectionMethod.OAUTH)
        if account is not None:
            upsert_account(session, account=account, fetched_at=fetched_at)
        mirror = get_account(session, stripe_id=account_id)
        if mirror is not None:
            mirror.deauthorized_at = None
        finish_attempt(session, attempt_id=attempt_id, outcome=AttemptOutcome.SUCCEEDED,
                       stripe_account_id=account_id)
        audit.record(session, actor=CALLBACK_ACTOR, action="connect.oauth_callback",
                     result="connected", target=f"freelancer:{freelancer_id}",
                     input={"account": account_id}, stripe_request_id=token.request_id)
    return CallbackResult(success=True, account_id=account_id, freelancer_id=freelancer_id)
