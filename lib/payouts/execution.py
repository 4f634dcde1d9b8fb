"""Execution: send a ledger row to Stripe as one ``Transfer.create``, in transactions that survive.

Why this takes a session *factory* (and commits) when other data functions take a session
    A payout spans three transactions around one network call, and each must be durable on its
    own: (1) claim the row (``pending → submitted``) and commit, so a crash during the call
    leaves a row that says "we may have sent this"; (2) call Stripe outside any transaction (no
    lock or SQLite write lock is held across the network); (3) record the answer (``paid`` /
    ``failed`` / ``unknown``) with its audit entry and commit. One caller-framed transaction
    could not express "the claim is committed even if the call then crashes the process".

Why nothing pays twice
    * The claim is a conditional ``UPDATE … WHERE id = :id AND status = <what we read>``; the
      database lets one executor win, the others return the row as it is without calling
      Stripe (two tabs, two replicas, 50 threads).
    * Every attempt sends the row's stored ``idempotency_key``; Stripe executes a key at most
      once and replays its first result (success *or* error) to every later attempt.

Outcomes
    * success → ``paid`` with the transfer id and request id.
    * Stripe refused (4xx such as ``balance_insufficient``) → ``failed`` with Stripe's code and
      message. Terminal: Stripe stored that error under the key and would replay it, so paying
      again needs a new payout request (a new row, a new key).
    * the destination's connection revoked (403 ``account_invalid``) → ``failed``: Stripe moved
      nothing and never will to that destination (paying the freelancer again needs a new
      request once they reconnect). The revocation is then confirmed with Stripe and recorded.
    * no answer (timeout, dropped connection), 5xx, 429 (incl. ``lock_timeout``), 409 (the same
      key still in flight), an idempotency mismatch → ``unknown``. Never ``failed``: the transfer
      may exist. Resolved by executing again (same key; Stripe replays) or by reconciliation.
    * a 500 Stripe saved under the key (``StripeSavedServerError``) → ``unknown`` too, but a
      retry would only replay it: such a row is not retried; reconciliation settles it from
      Stripe's transfers or two people decide (:mod:`lib.payouts.decisions`).
    * the platform key refused (401/403) → ``unknown``, like no answer: this attempt executed
      nothing, but an earlier one may have, and a row that was ever submitted never returns to
      ``pending`` (where it could be rejected, or sent after Stripe forgot its key).

A row stuck in ``submitted`` (the process died during the call)
    is treated like ``unknown`` once its last claim (``updated_at``) is older than
    ``stale_after`` (default 10 minutes: far longer than the gateway's timeout times its
    retries), and is retried with the same key. A retry is refused once the first submission is
    older than :data:`IDEMPOTENCY_WINDOW` (Stripe prunes keys after 24 hours; a reused pruned key
    would create a second transfer): such a row must be settled by reconciliation.

Preflight runs again before the *first* attempt only. A retry must not be stopped by it: the
first attempt may have succeeded and already spent the balance the check would look for.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from lib import audit
from lib.connect_flow import record_revoked_connection
from lib.db import utcnow
from lib.dml import rowcount
from lib.errors import (
    ConflictError,
    ConnectOpsError,
    PermissionDeniedError,
    StripeAccountAccessError,
    StripeAuthenticationError,
    StripeGatewayError,
    StripeRequestError,
    StripeSavedServerError,
)
from lib.models import Payout, PayoutStatus
from lib.payouts.ledger import get_payout
from lib.payouts.preflight import PreflightResult, preflight_payout
from lib.roles import Action, Operator, authorize
from lib.stripe_gateway import StripeGateway, StripeResult

logger = logging.getLogger(__name__)

STALE_SUBMITTED_AFTER = timedelta(minutes=10)
#: Retries with the same key are only safe while Stripe still remembers it (at least 24 h).
IDEMPOTENCY_WINDOW = timedelta(hours=23)

TERMINAL = frozenset({PayoutStatus.PAID, PayoutStatus.FAILED, PayoutStatus.REJECTED,
                      PayoutStatus.REVERSED})
#: ``error_code`` of a row whose Stripe answer was a 500 saved under its key (see the docstring).
SAVED_SERVER_ERROR = StripeSavedServerError.code
#: 4xx answers that say "not executed yet, try again with the same key" rather than "refused".
RETRYABLE_CODES = frozenset({"idempotency_key_in_use", "lock_timeout", "rate_limit"})


def is_saved_server_error(error_code: str | None) -> bool:
    """True for a row only reconciliation or a person can settle (see SAVED_SERVER_ERROR)."""
    return error_code == SAVED_SERVER_ERROR


class PreflightFailedError(ConflictError):
    """A payout's checks failed just before its first attempt; nothing was sent."""

    code = "preflight_failed"

    def __init__(self, message: str, *, result: PreflightResult) -> None:
        super().__init__(message)
        self.result = result


def authorize_execution(operator: Operator, *, session: Session | None) -> Operator:
    """Requesters (admin) and approvers (finance) may send a ready payout."""
    if operator is not None and (
        operator.can(Action.REQUEST_PAYOUT) or operator.can(Action.APPROVE_PAYOUT)
    ):
        return operator
    # Raises with the usual message (and audits it when given a session).
    return authorize(operator, Action.REQUEST_PAYOUT, session=session)


def transfer_metadata(payout: Payout) -> dict[str, str]:
    """What links a Stripe transfer back to its ledger row (nothing sensitive)."""
    return {
        "payout_id": str(payout.id),
        "freelancer_id": str(payout.freelancer_id),
        "requested_by": payout.requested_by[:500],
        "ledger_key": payout.idempotency_key,
    }


def transfer_group(payout: Payout) -> str:
    return f"payout-{payout.id}"


def is_stale(payout: Payout, *, now: datetime, stale_after: timedelta) -> bool:
    """A ``submitted`` row whose executor has been silent for longer than ``stale_after``."""
    return payout.status == PayoutStatus.SUBMITTED and payout.updated_at < now - stale_after


def execute_payout(
    factory: sessionmaker[Session], *, gateway: StripeGateway, payout_id: int,
    operator: Operator, recheck_balance: bool = True,
    stale_after: timedelta = STALE_SUBMITTED_AFTER,
) -> Payout:
    """Send a ``pending`` (or retry an ``unknown``/stale) payout; return the row as it ends."""
    try:
        # No session: the refusal is audited just below, as payout.execute with its target.
        authorize_execution(operator, session=None)
    except PermissionDeniedError as exc:
        audit.record_now(factory, actor=operator, action="payout.execute",
                         result=f"refused:{exc.code}", target=f"payout:{payout_id}",
                         detail=exc.message)
        raise
    now = utcnow()
    with factory() as session:
        payout = get_payout(session, payout_id=payout_id)
        observed = PayoutStatus(payout.status)
        if observed in TERMINAL:
            return payout
        if observed == PayoutStatus.PENDING_APPROVAL:
            raise ConflictError(f"Payout {payout_id} needs a second operator's approval first.")
        if observed == PayoutStatus.SUBMITTED and not is_stale(
            payout, now=now, stale_after=stale_after
        ):
            logger.info("payout %s is being sent by another executor", payout_id)
            return payout
        if observed == PayoutStatus.PENDING:
            result = preflight_payout(session, gateway=gateway if recheck_balance else None,
                                      payout=payout)
        else:
            result = None
            first_sent = payout.submitted_at or payout.created_at
            if first_sent < now - IDEMPOTENCY_WINDOW:
                raise ConflictError(
                    f"Payout {payout_id} was first sent over {IDEMPOTENCY_WINDOW} ago; Stripe may "
                    "have forgotten its idempotency key, so it is not retried: reconcile it."
                )
            if payout.error_code == SAVED_SERVER_ERROR:
                raise ConflictError(
                    f"Payout {payout_id}: Stripe saved an internal error under its idempotency "
                    "key and replays it to every retry, so retrying cannot settle it. Reconcile "
                    "it: the transfer list shows whether it was paid; if not, a person decides."
                )
        last_updated = payout.updated_at

    if result is not None and not result.ok:
        _record_preflight_failure(factory, payout_id=payout_id, operator=operator,
                                  result=result)
        raise PreflightFailedError(
            f"Payout {payout_id} was not sent: {result.summary()}", result=result
        )

    claimed = _claim(factory, payout_id=payout_id, observed=observed,
                     last_updated=last_updated, operator=operator)
    if claimed is None:
        with factory() as session:
            return get_payout(session, payout_id=payout_id)
    return _send(factory, gateway=gateway, payout=claimed, operator=operator,
                 retry=observed != PayoutStatus.PENDING)


def _record_preflight_failure(
    factory: sessionmaker[Session], *, payout_id: int, operator: Operator,
    result: PreflightResult,
) -> None:
    with factory.begin() as session:
        session.execute(
            update(Payout).where(Payout.id == payout_id, Payout.status == PayoutStatus.PENDING)
            .values(error_code="preflight_failed", error_message=result.summary()[:2000])
            .execution_options(synchronize_session=False)
        )
        audit.record(session, actor=operator, action="payout.execute", result="preflight_failed",
                     target=f"payout:{payout_id}", input={"checks": result.to_rows()},
                     detail=result.summary())


def _claim(
    factory: sessionmaker[Session], *, payout_id: int, observed: PayoutStatus,
    last_updated: datetime, operator: Operator,
) -> Payout | None:
    """Move the row to ``submitted`` if it is still as we read it; None when another won."""
    now = utcnow()
    if observed == PayoutStatus.SUBMITTED:
        condition = and_(Payout.status == observed.value, Payout.updated_at == last_updated)
    else:
        condition = Payout.status == observed.value
    with factory.begin() as session:
        result = session.execute(
            update(Payout).where(Payout.id == payout_id, condition)
            .values(status=PayoutStatus.SUBMITTED.value,
                    submitted_at=func.coalesce(Payout.submitted_at, now), updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if not rowcount(result):
            logger.info("payout %s: another executor claimed it first", payout_id)
            return None
        payout = get_payout(session, payout_id=payout_id)
        session.refresh(payout)
        audit.record(session, actor=operator, action="payout.submit",
                     result="retry" if observed != PayoutStatus.PENDING else "submitted",
                     target=f"payout:{payout_id}", idempotency_key=payout.idempotency_key,
                     input={"from_status": observed.value, "amount_minor": payout.amount_minor,
                            "currency": payout.currency, "destination": payout.stripe_account_id})
        return payout


def _send(
    factory: sessionmaker[Session], *, gateway: StripeGateway, payout: Payout,
    operator: Operator, retry: bool,
) -> Payout:
    assert payout.stripe_account_id is not None
    try:
        transfer = gateway.create_transfer(
            amount_minor=payout.amount_minor, currency=payout.currency,
            destination=payout.stripe_account_id, idempotency_key=payout.idempotency_key,
            description=payout.description or None, metadata=transfer_metadata(payout),
            transfer_group=transfer_group(payout),
        )
    except StripeAccountAccessError as exc:
        row = _record_error(factory, payout=payout, operator=operator, exc=exc,
                            status=PayoutStatus.FAILED)
        _record_revocation(factory, gateway=gateway, account_id=payout.stripe_account_id,
                           operator=operator)
        return row
    except StripeAuthenticationError as exc:
        # Stripe refused the key before executing *this* attempt, but the row has been claimed
        # and may have been executed by an earlier attempt whose answer was lost. A row that was
        # ever submitted never goes back to ``pending``: there it could be rejected while Stripe
        # paid it, or be sent again after Stripe forgot its key. It stays ``unknown`` until a
        # retry with the same key (once the key is fixed) or reconciliation settles it.
        return _record_error(factory, payout=payout, operator=operator, exc=exc,
                             status=PayoutStatus.UNKNOWN)
    except StripeRequestError as exc:
        definitive = exc.http_status != 409 and exc.stripe_code not in RETRYABLE_CODES
        status = PayoutStatus.FAILED if definitive else PayoutStatus.UNKNOWN
        return _record_error(factory, payout=payout, operator=operator, exc=exc,
                             status=status)
    except StripeGatewayError as exc:
        # Connection, 5xx, 429, idempotency mismatch: the transfer may or may not exist.
        return _record_error(factory, payout=payout, operator=operator, exc=exc,
                             status=PayoutStatus.UNKNOWN)
    return record_paid(factory, payout_id=payout.id, transfer=transfer, actor=operator,
                       action="payout.paid" if not retry else "payout.paid_on_retry")


def _record_revocation(
    factory: sessionmaker[Session], *, gateway: StripeGateway, account_id: str,
    operator: Operator,
) -> None:
    """Confirm and record that the destination's connection is gone (the row is already failed)."""
    try:
        record_revoked_connection(factory, gateway=gateway, account_id=account_id,
                                  actor=operator, source="payout")
    except StripeGatewayError as exc:
        # The payout's outcome is recorded; the connection is confirmed by the next read.
        logger.warning("could not confirm the revocation of %s: %s", account_id, exc.code)


def record_paid(
    factory: sessionmaker[Session], *, payout_id: int, transfer: StripeResult,
    actor: Operator | str, action: str,
) -> Payout:
    """Mark a row ``paid`` by ``transfer`` (from submitted or unknown; success is the truth)."""
    now = utcnow()
    with factory.begin() as session:
        session.execute(
            update(Payout).where(
                Payout.id == payout_id,
                or_(Payout.status == PayoutStatus.SUBMITTED, Payout.status == PayoutStatus.UNKNOWN),
            ).values(status=PayoutStatus.PAID.value, stripe_transfer_id=transfer.id,
                     stripe_request_id=transfer.request_id, completed_at=now, updated_at=now,
                     error_code=None, error_message=None)
            .execution_options(synchronize_session=False)
        )
        payout = get_payout(session, payout_id=payout_id)
        session.refresh(payout)
        audit.record(session, actor=actor, action=action, result=payout.status,
                     target=f"payout:{payout_id}", idempotency_key=payout.idempotency_key,
                     stripe_request_id=transfer.request_id,
                     input={"transfer": transfer.id, "amount": _field(transfer, "amount"),
                            "currency": _field(transfer, "currency"),
                            "destination": _field(transfer, "destination")})
    logger.info("payout %s paid: %s (request %s)", payout_id, transfer.id, transfer.request_id)
    return payout


def _field(transfer: StripeResult, name: str) -> Any:
    value = transfer.data.get(name)
    return value if isinstance(value, str | int) else str(value)


def error_values(exc: StripeGatewayError, *, status: str, failed: bool, now: datetime
                 ) -> dict[str, Any]:
    """The columns a payout or reversal row records for Stripe's error (``failed``: terminal)."""
    # A saved 500 is named as such whatever Stripe's own code: it decides who may settle the row.
    code = SAVED_SERVER_ERROR if isinstance(exc, StripeSavedServerError) else (
        exc.stripe_code or exc.code)[:100]
    values: dict[str, Any] = {
        "status": status, "error_code": code, "error_message": exc.message[:2000],
        "stripe_request_id": exc.request_id, "updated_at": now,
    }
    if failed:
        values["completed_at"] = now
    return values


def _record_error(
    factory: sessionmaker[Session], *, payout: Payout, operator: Operator,
    exc: StripeGatewayError, status: PayoutStatus,
) -> Payout:
    now = utcnow()
    values = error_values(exc, status=status.value, failed=status == PayoutStatus.FAILED, now=now)
    with factory.begin() as session:
        session.execute(
            update(Payout).where(Payout.id == payout.id, Payout.status == PayoutStatus.SUBMITTED)
            .values(**values).execution_options(synchronize_session=False)
        )
        row = get_payout(session, payout_id=payout.id)
        session.refresh(row)
        audit.record(session, actor=operator, action="payout.execute", result=row.status,
                     target=f"payout:{payout.id}", idempotency_key=payout.idempotency_key,
                     stripe_request_id=exc.request_id, detail=exc.message,
                     input={"error": exc.code, "stripe_code": exc.stripe_code,
                            "http_status": exc.http_status})
    log = logger.warning if status == PayoutStatus.UNKNOWN else logger.info
    log("payout %s %s: %s (%s, request %s)", payout.id, row.status, exc.code, exc.stripe_code,
        exc.request_id)
    return row


def retry_may_settle(now: datetime) -> ColumnElement[bool]:
    """SQL for "a retry with its key may settle this sent row": first sent within
    :data:`IDEMPOTENCY_WINDOW` and not answered with a saved 500 (the sweeper's rule, and the
    Payouts page's retry choices; :func:`execute_payout` refuses the others)."""
    return and_(func.coalesce(Payout.submitted_at, Payout.created_at) >= now - IDEMPOTENCY_WINDOW,
                or_(Payout.error_code.is_(None), Payout.error_code != SAVED_SERVER_ERROR))


def retry_unsettled(
    factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    stale_after: timedelta = STALE_SUBMITTED_AFTER, limit: int = 100,
) -> list[Payout]:
    """Retry every ``unknown`` and stale ``submitted`` row with its own key (a sweeper)."""
    with factory() as session:
        authorize_execution(operator, session=session)
    cutoff = utcnow() - stale_after
    with factory() as session:
        # Rows past the key window and rows Stripe answers with a saved 500 are not retried:
        # only reconciliation or a person's decision settles them.
        ids = list(session.scalars(
            select(Payout.id).where(
                or_(Payout.status == PayoutStatus.UNKNOWN,
                    and_(Payout.status == PayoutStatus.SUBMITTED, Payout.updated_at < cutoff)),
                retry_may_settle(utcnow()),
            ).order_by(Payout.id).limit(limit)
        ))
    results = []
    for payout_id in ids:
        try:
            results.append(execute_payout(factory, gateway=gateway, payout_id=payout_id,
                                          operator=operator, stale_after=stale_after))
        except ConnectOpsError as exc:
            logger.warning("payout %s not retried: %s", payout_id, exc)
    return results
