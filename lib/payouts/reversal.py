"""Reversing (part of) a paid transfer: the payout's lifecycle, for money coming back.

Request (admin, with a reason)
    One transaction writes the reversal row with its own idempotency key
    (``connectops-reversal-{id}-{nonce}``) and reserves its amount on the payout with one
    conditional ``UPDATE payouts SET amount_reversed_minor = amount_reversed_minor + :amount
    WHERE … AND amount_reversed_minor + :amount <= amount_minor``: two admins reversing at once
    can never reserve more than was paid. ``amount_reversed_minor`` therefore counts reversals
    that succeeded, are in flight or await approval; a refused or rejected one releases its share.
    At or above the currency's approval threshold (:mod:`lib.payouts.limits`) the row waits
    (``pending_approval``) for a second operator who did not request it.

Execute (the same three transactions as a payout, see :mod:`lib.payouts.execution`)
    1. claim: ``pending`` / ``unknown`` / stale ``submitted`` → ``submitted``, one conditional
       ``UPDATE`` (two tabs, two replicas: one wins, the others return the row untouched);
    2. call ``Transfer.create_reversal`` with the row's key, outside any transaction;
    3. finish **only if the row is still ``submitted``**: an answer that arrives after
       reconciliation or a webhook settled the row changes nothing, so a reservation is never
       released twice and a success is never overwritten.

    succeeded → the payout becomes ``reversed`` once succeeded reversals cover it; Stripe
    refused (4xx) → ``failed``, reservation released (Stripe saved that error under the key);
    no answer, 5xx, 429, 409, a refused key → ``unknown``, reservation kept.

Retries
    Same key, and only while Stripe still remembers it: a row first claimed longer ago than
    :data:`~lib.payouts.execution.IDEMPOTENCY_WINDOW` is never sent again (a pruned key would
    reverse twice). Reconciliation lists the transfer's reversals and settles it, or two people
    decide (:mod:`lib.payouts.decisions`).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from lib import audit
from lib.db import utcnow
from lib.dml import rowcount
from lib.errors import (
    ConflictError,
    ConnectOpsError,
    NotFoundError,
    PermissionDeniedError,
    StripeAuthenticationError,
    StripeGatewayError,
    StripeRequestError,
    ValidationError,
)
from lib.models import Payout, PayoutReversal, PayoutStatus, ReversalStatus
from lib.money import Money, format_money, parse_amount
from lib.payouts.execution import (
    IDEMPOTENCY_WINDOW,
    RETRYABLE_CODES,
    SAVED_SERVER_ERROR,
    STALE_SUBMITTED_AFTER,
    error_values,
)
from lib.payouts.ledger import KEY_PREFIX, clean_token, get_payout, new_nonce
from lib.payouts.limits import limits_for
from lib.roles import Action, AuditedRefusal, Operator, authorize, authorize_in
from lib.settings import Settings
from lib.stripe_gateway import StripeGateway, StripeResult

logger = logging.getLogger(__name__)

# Kept for callers that compare with plain strings.
PENDING, SUCCEEDED, FAILED, UNKNOWN = (ReversalStatus.PENDING.value,
                                       ReversalStatus.SUCCEEDED.value,
                                       ReversalStatus.FAILED.value, ReversalStatus.UNKNOWN.value)
TERMINAL = frozenset({ReversalStatus.SUCCEEDED, ReversalStatus.FAILED, ReversalStatus.REJECTED})
#: States whose amount is still reserved on the payout.
RESERVING = frozenset({ReversalStatus.PENDING_APPROVAL, ReversalStatus.PENDING,
                       ReversalStatus.SUBMITTED, ReversalStatus.UNKNOWN,
                       ReversalStatus.SUCCEEDED})
MAX_REASON = 500
AmountInput = str | int | Decimal | Money | None


def reversal_idempotency_key(reversal_id: int, nonce: str) -> str:
    return f"{KEY_PREFIX}-reversal-{reversal_id}-{nonce}"


def reversal_metadata(reversal: PayoutReversal) -> dict[str, str]:
    """What links a Stripe reversal back to its ledger row (nothing sensitive)."""
    return {"payout_id": str(reversal.payout_id), "reversal_id": str(reversal.id),
            "ledger_key": reversal.idempotency_key}


def get_reversal(session: Session, *, reversal_id: int) -> PayoutReversal:
    reversal = session.get(PayoutReversal, reversal_id)
    if reversal is None:
        raise NotFoundError(f"Reversal {reversal_id} does not exist.")
    return reversal


# ---- request ----------------------------------------------------------------------------------


def request_reversal(
    factory: sessionmaker[Session], *, operator: Operator, payout_id: int,
    amount: AmountInput, reason: str, settings: Settings,
    client_request_token: str | None = None, confirm_duplicate_of: int | None = None,
) -> PayoutReversal:
    """Write a reversal request (amount reserved) or return the row this token already made.

    Nothing is sent: :func:`execute_reversal` sends a ``pending`` row. A request like one made
    within ``payout_duplicate_window_days`` (same payout and amount) is refused with
    :class:`~lib.payouts.duplicates.LikelyDuplicateError` unless ``confirm_duplicate_of`` names
    that earlier reversal.
    """
    from lib.payouts.duplicates import check_reversal_duplicate

    try:
        authorize_in(factory, operator, Action.REVERSE_PAYOUT,
                  target=f"payout:{payout_id}")
        text = _clean_reason(reason)
        client_request_token = clean_token(client_request_token)
        with factory.begin() as session:
            existing = _by_token(session, client_request_token)
            if existing is not None:
                return _same_token(session, existing, operator=operator, payout_id=payout_id,
                                   amount=amount)
            payout = get_payout(session, payout_id=payout_id)
            if payout.status != PayoutStatus.PAID or not payout.stripe_transfer_id:
                raise ConflictError(f"Payout {payout_id} is {payout.status}; only paid payouts "
                                    "can be reversed.")
            remaining = payout.amount_minor - payout.amount_reversed_minor
            if remaining <= 0:
                raise ConflictError(f"Payout {payout_id} is already reversed (or being "
                                    "reversed).")
            minor = _amount(payout, amount, remaining)
            # A new request (its token, if any, made nothing yet) like a recent one: confirm.
            check_reversal_duplicate(session, payout_id=payout_id, amount_minor=minor,
                                     settings=settings, confirmed=confirm_duplicate_of)
            needs_approval = minor >= limits_for(settings, payout.currency).approval_threshold_minor
            return _reserve(session, operator=operator, payout=payout, minor=minor, reason=text,
                            token=client_request_token, needs_approval=needs_approval)
    except IntegrityError:
        # Another request with the same token committed first: that row wins.
        with factory() as session:
            existing = _by_token(session, client_request_token)
            if existing is None:
                raise
            return existing
    except ConnectOpsError as exc:
        if not isinstance(exc, AuditedRefusal):  # authorize already wrote that one
            audit.record_now(factory, actor=operator, action="payout.reverse",
                             result=f"refused:{exc.code}", target=f"payout:{payout_id}",
                             detail=exc.message, input={"amount": str(amount), "reason": reason})
        raise


def _clean_reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if not text or len(text) > MAX_REASON or any(ord(ch) < 32 and ch != "\t" for ch in text):
        raise ValidationError(f"A reversal needs a reason: one line of 1 to {MAX_REASON} "
                              "characters.")
    return text


def _by_token(session: Session, token: str | None) -> PayoutReversal | None:
    if token is None:
        return None
    return session.scalars(
        select(PayoutReversal).where(PayoutReversal.client_request_token == token)
    ).one_or_none()


def _same_token(session: Session, existing: PayoutReversal, *, operator: Operator,
                payout_id: int, amount: AmountInput) -> PayoutReversal:
    payout = get_payout(session, payout_id=existing.payout_id)
    same = existing.payout_id == payout_id and (
        amount is None or _amount(payout, amount, existing.amount_minor) == existing.amount_minor)
    if not same:
        raise ConflictError(f"This request token already made reversal {existing.id} of payout "
                            f"{existing.payout_id}; it cannot be reused for another reversal.")
    audit.record(session, actor=operator, action="payout.reverse", result="duplicate",
                 target=f"payout:{payout_id}", idempotency_key=existing.idempotency_key,
                 detail="same request seen before; the existing reversal is returned")
    return existing


def _amount(payout: Payout, amount: AmountInput, remaining: int) -> int:
    if amount is None or (isinstance(amount, str) and not amount.strip()):
        return remaining
    if isinstance(amount, Money):
        if amount.currency != payout.currency:
            raise ValidationError(f"The payout is in {payout.currency.upper()}.")
        minor = amount.amount_minor
    else:
        minor = parse_amount(amount, payout.currency).amount_minor
    if minor <= 0:
        raise ValidationError("The reversal amount must be positive.")
    if minor > remaining:
        raise ValidationError(
            f"Only {format_money(Money(remaining, payout.currency))} is left to reverse."
        )
    return minor


def _reserve(
    session: Session, *, operator: Operator, payout: Payout, minor: int, reason: str,
    token: str | None, needs_approval: bool,
) -> PayoutReversal:
    reserved = session.execute(
        update(Payout).where(
            Payout.id == payout.id, Payout.status == PayoutStatus.PAID,
            Payout.amount_reversed_minor + minor <= Payout.amount_minor,
        ).values(amount_reversed_minor=Payout.amount_reversed_minor + minor, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if not rowcount(reserved):
        raise ConflictError(f"Payout {payout.id} changed meanwhile; nothing was reversed.")
    status = ReversalStatus.PENDING_APPROVAL if needs_approval else ReversalStatus.PENDING
    reversal = PayoutReversal(
        payout_id=payout.id, amount_minor=minor, reason=reason, status=status.value,
        idempotency_key=f"unassigned-{uuid.uuid4().hex}", requested_by=operator.username,
        client_request_token=token,
    )
    session.add(reversal)
    session.flush()
    reversal.idempotency_key = reversal_idempotency_key(reversal.id, new_nonce())
    session.flush()
    audit.record(session, actor=operator, action="payout.reverse", result=status.value,
                 target=f"payout:{payout.id}", idempotency_key=reversal.idempotency_key,
                 input={"reversal_id": reversal.id, "amount_minor": minor, "reason": reason,
                        "currency": payout.currency})
    logger.info("reversal %s of payout %s requested by %s: %s %s (%s)", reversal.id, payout.id,
                operator.username, minor, payout.currency, status.value)
    return reversal


def reverse_payout(
    factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    payout_id: int, amount: AmountInput, reason: str, settings: Settings,
    client_request_token: str | None = None, confirm_duplicate_of: int | None = None,
) -> PayoutReversal:
    """Request a reversal and send it at once unless it needs a second operator's approval."""
    reversal = request_reversal(
        factory, operator=operator, payout_id=payout_id, amount=amount, reason=reason,
        settings=settings, client_request_token=client_request_token,
        confirm_duplicate_of=confirm_duplicate_of)
    if reversal.status in (ReversalStatus.PENDING, ReversalStatus.UNKNOWN):
        return execute_reversal(factory, gateway=gateway, operator=operator,
                                reversal_id=reversal.id)
    return reversal


# ---- approval ---------------------------------------------------------------------------------


def approve_reversal(session: Session, *, operator: Operator, reversal_id: int) -> PayoutReversal:
    """A second operator approves a reversal at or above the threshold; it becomes ``pending``."""
    authorize(operator, Action.APPROVE_PAYOUT, session=session, target=f"reversal:{reversal_id}")
    reversal = get_reversal(session, reversal_id=reversal_id)
    if operator.is_same_person(reversal.requested_by):
        raise PermissionDeniedError(
            f"{operator.username} requested reversal {reversal_id} and cannot approve it: "
            "a second operator must.")
    now = utcnow()
    moved = rowcount(session.execute(
        update(PayoutReversal).where(PayoutReversal.id == reversal_id,
                                     PayoutReversal.status == ReversalStatus.PENDING_APPROVAL)
        .values(status=ReversalStatus.PENDING.value, approved_by=operator.username,
                approved_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    ))
    session.refresh(reversal)
    if not moved:
        raise ConflictError(f"Reversal {reversal_id} is {reversal.status}, not awaiting approval.")
    audit.record(session, actor=operator, action="payout.reverse_approve", result="approved",
                 target=f"payout:{reversal.payout_id}", idempotency_key=reversal.idempotency_key,
                 input={"reversal_id": reversal_id})
    return reversal


def reject_reversal(session: Session, *, operator: Operator, reversal_id: int, reason: str
                    ) -> PayoutReversal:
    """Reject a reversal that was never sent; its reserved amount is released."""
    authorize(operator, Action.REJECT_PAYOUT, session=session, target=f"reversal:{reversal_id}")
    text = _clean_reason(reason)
    reversal = get_reversal(session, reversal_id=reversal_id)
    now = utcnow()
    moved = rowcount(session.execute(
        update(PayoutReversal).where(
            PayoutReversal.id == reversal_id, PayoutReversal.submitted_at.is_(None),
            PayoutReversal.status.in_([ReversalStatus.PENDING_APPROVAL.value,
                                       ReversalStatus.PENDING.value]))
        .values(status=ReversalStatus.REJECTED.value, rejected_by=operator.username,
                rejection_reason=text, completed_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    ))
    session.refresh(reversal)
    if not moved:
        raise ConflictError(f"Reversal {reversal_id} is {reversal.status} and may have been sent; "
                            "it can no longer be rejected.")
    _release(session, reversal, now)
    audit.record(session, actor=operator, action="payout.reverse_reject", result="rejected",
                 target=f"payout:{reversal.payout_id}", idempotency_key=reversal.idempotency_key,
                 input={"reversal_id": reversal_id, "reason": text})
    return reversal


def _release(session: Session, reversal: PayoutReversal, now: datetime) -> None:
    session.execute(
        update(Payout).where(Payout.id == reversal.payout_id)
        .values(amount_reversed_minor=Payout.amount_reversed_minor - reversal.amount_minor,
                updated_at=now)
        .execution_options(synchronize_session=False)
    )


# ---- execution --------------------------------------------------------------------------------


def _is_stale(reversal: PayoutReversal, *, now: datetime, stale_after: timedelta) -> bool:
    return (reversal.status == ReversalStatus.SUBMITTED
            and reversal.updated_at < now - stale_after)


def execute_reversal(
    factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    reversal_id: int, stale_after: timedelta = STALE_SUBMITTED_AFTER,
) -> PayoutReversal:
    """Send a ``pending`` reversal (or retry an ``unknown``/stale one with its own key)."""
    authorize_in(factory, operator, Action.REVERSE_PAYOUT,
              target=f"reversal:{reversal_id}")
    now = utcnow()
    with factory() as session:
        reversal = get_reversal(session, reversal_id=reversal_id)
        observed = ReversalStatus(reversal.status)
        if observed in TERMINAL:
            return reversal
        if observed == ReversalStatus.PENDING_APPROVAL:
            raise ConflictError(f"Reversal {reversal_id} needs a second operator's approval "
                                "first.")
        if observed == ReversalStatus.SUBMITTED and not _is_stale(reversal, now=now,
                                                                   stale_after=stale_after):
            return reversal
        if observed != ReversalStatus.PENDING:
            first = reversal.submitted_at or reversal.created_at
            if first < now - IDEMPOTENCY_WINDOW:
                raise ConflictError(
                    f"Reversal {reversal_id} was first sent over {IDEMPOTENCY_WINDOW} ago; Stripe "
                    "may have forgotten its idempotency key, so it is not retried: reconcile it.")
            if reversal.error_code == SAVED_SERVER_ERROR:
                raise ConflictError(
                    f"Reversal {reversal_id}: Stripe saved an internal error under its key and "
                    "replays it to every retry: reconcile it, or two people decide it.")
        last_updated = reversal.updated_at
    claimed = _claim(factory, reversal_id=reversal_id, observed=observed,
                     last_updated=last_updated, operator=operator)
    if claimed is None:
        with factory() as session:
            return get_reversal(session, reversal_id=reversal_id)
    return _send(factory, gateway=gateway, operator=operator, reversal=claimed)


def retry_reversal(
    factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    reversal_id: int, stale_after: timedelta = STALE_SUBMITTED_AFTER,
) -> PayoutReversal:
    """Send an ``unknown`` reversal again with its own key (Stripe replays it)."""
    return execute_reversal(factory, gateway=gateway, operator=operator,
                            reversal_id=reversal_id, stale_after=stale_after)


def retry_unsettled_reversals(
    factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    stale_after: timedelta = STALE_SUBMITTED_AFTER, limit: int = 100,
) -> list[PayoutReversal]:
    """Retry every ``unknown`` and stale ``submitted`` reversal within the key window."""
    authorize_in(factory, operator, Action.REVERSE_PAYOUT)
    now = utcnow()
    with factory() as session:
        ids = list(session.scalars(
            select(PayoutReversal.id).where(
                or_(PayoutReversal.status == ReversalStatus.UNKNOWN,
                    and_(PayoutReversal.status == ReversalStatus.SUBMITTED,
                         PayoutReversal.updated_at < now - stale_after)),
                PayoutReversal.submitted_at >= now - IDEMPOTENCY_WINDOW,
                or_(PayoutReversal.error_code.is_(None),
                    PayoutReversal.error_code != SAVED_SERVER_ERROR),
            ).order_by(PayoutReversal.id).limit(limit)))
    results = []
    for reversal_id in ids:
        try:
            results.append(execute_reversal(factory, gateway=gateway, operator=operator,
                                            reversal_id=reversal_id, stale_after=stale_after))
        except ConnectOpsError as exc:
            logger.warning("reversal %s not retried: %s", reversal_id, exc)
    return results


def _claim(
    factory: sessionmaker[Session], *, reversal_id: int, observed: ReversalStatus,
    last_updated: datetime, operator: Operator,
) -> PayoutReversal | None:
    now = utcnow()
    condition: Any = PayoutReversal.status == observed.value
    if observed == ReversalStatus.SUBMITTED:
        condition = and_(condition, PayoutReversal.updated_at == last_updated)
    with factory.begin() as session:
        moved = rowcount(session.execute(
            update(PayoutReversal).where(PayoutReversal.id == reversal_id, condition)
            .values(status=ReversalStatus.SUBMITTED.value, updated_at=now,
                    submitted_at=func.coalesce(PayoutReversal.submitted_at, now))
            .execution_options(synchronize_session=False)
        ))
        if not moved:
            logger.info("reversal %s: another executor claimed it first", reversal_id)
            return None
        reversal = get_reversal(session, reversal_id=reversal_id)
        session.refresh(reversal)
        audit.record(session, actor=operator, action="payout.reverse_submit",
                     result="retry" if observed != ReversalStatus.PENDING else "submitted",
                     target=f"payout:{reversal.payout_id}",
                     idempotency_key=reversal.idempotency_key,
                     input={"reversal_id": reversal_id, "from_status": observed.value,
                            "amount_minor": reversal.amount_minor})
        return reversal


def _send(
    factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    reversal: PayoutReversal,
) -> PayoutReversal:
    with factory() as session:
        transfer_id = get_payout(session, payout_id=reversal.payout_id).stripe_transfer_id
    assert transfer_id is not None
    try:
        result = gateway.create_transfer_reversal(
            transfer_id=transfer_id, amount_minor=reversal.amount_minor,
            idempotency_key=reversal.idempotency_key, metadata=reversal_metadata(reversal))
    except StripeAuthenticationError as exc:
        # As for payouts: this attempt executed nothing, an earlier one may have.
        return _finish(factory, actor=operator, reversal_id=reversal.id,
                       status=ReversalStatus.UNKNOWN, exc=exc)
    except StripeRequestError as exc:
        definitive = exc.http_status != 409 and exc.stripe_code not in RETRYABLE_CODES
        return _finish(factory, actor=operator, reversal_id=reversal.id,
                       status=ReversalStatus.FAILED if definitive else ReversalStatus.UNKNOWN,
                       exc=exc)
    except StripeGatewayError as exc:
        return _finish(factory, actor=operator, reversal_id=reversal.id,
                       status=ReversalStatus.UNKNOWN, exc=exc)
    return record_reversal_succeeded(factory, reversal_id=reversal.id, stripe=result,
                                     actor=operator, action="payout.reverse",
                                     from_statuses=(ReversalStatus.SUBMITTED,))


def _finish(
    factory: sessionmaker[Session], *, actor: Operator, reversal_id: int,
    status: ReversalStatus, exc: StripeGatewayError,
) -> PayoutReversal:
    """Record the claimer's failed or unknown answer, only while the row is still ``submitted``."""
    now = utcnow()
    values = error_values(exc, status=status.value, failed=status == ReversalStatus.FAILED,
                          now=now)
    with factory.begin() as session:
        moved = rowcount(session.execute(
            update(PayoutReversal).where(PayoutReversal.id == reversal_id,
                                         PayoutReversal.status == ReversalStatus.SUBMITTED)
            .values(**values).execution_options(synchronize_session=False)
        ))
        row = get_reversal(session, reversal_id=reversal_id)
        session.refresh(row)
        if moved and status == ReversalStatus.FAILED:
            _release(session, row, now)
        audit.record(session, actor=actor, action="payout.reverse",
                     result=status.value if moved else f"late_answer:{status.value}",
                     target=f"payout:{row.payout_id}", idempotency_key=row.idempotency_key,
                     stripe_request_id=exc.request_id, detail=exc.message,
                     input={"reversal_id": reversal_id, "error": exc.code,
                            "stripe_code": exc.stripe_code, "http_status": exc.http_status,
                            "now": row.status})
    logger.info("reversal %s of payout %s: %s", reversal_id, row.payout_id, row.status)
    return row


def record_reversal_succeeded(
    factory: sessionmaker[Session], *, reversal_id: int, stripe: StripeResult,
    actor: Operator | str, action: str,
    from_statuses: tuple[ReversalStatus, ...] = (ReversalStatus.SUBMITTED,
                                                 ReversalStatus.UNKNOWN),
) -> PayoutReversal:
    """Mark a reversal ``succeeded`` by Stripe's reversal object (success is the truth)."""
    with factory.begin() as session:
        row = settle_reversal(session, reversal_id=reversal_id, stripe_reversal=stripe.data,
                              request_id=stripe.request_id, actor=actor, action=action,
                              from_statuses=from_statuses)
    return row


def settle_reversal(
    session: Session, *, reversal_id: int, stripe_reversal: dict[str, Any],
    request_id: str | None, actor: Operator | str, action: str,
    from_statuses: tuple[ReversalStatus, ...] = (ReversalStatus.SUBMITTED,
                                                 ReversalStatus.UNKNOWN),
) -> PayoutReversal:
    """In the caller's transaction: the reversal succeeded as ``stripe_reversal`` says."""
    now = utcnow()
    moved = rowcount(session.execute(
        update(PayoutReversal).where(
            PayoutReversal.id == reversal_id,
            PayoutReversal.status.in_([s.value for s in from_statuses]))
        .values(status=ReversalStatus.SUCCEEDED.value,
                stripe_reversal_id=str(stripe_reversal["id"]), stripe_request_id=request_id,
                completed_at=now, updated_at=now, error_code=None, error_message=None)
        .execution_options(synchronize_session=False)
    ))
    row = get_reversal(session, reversal_id=reversal_id)
    session.refresh(row)
    if moved:
        _mark_reversed_when_covered(session, payout_id=row.payout_id, now=now)
    audit.record(session, actor=actor, action=action,
                 result=ReversalStatus.SUCCEEDED.value if moved else f"already_{row.status}",
                 target=f"payout:{row.payout_id}", idempotency_key=row.idempotency_key,
                 stripe_request_id=request_id,
                 input={"reversal_id": row.id, "amount_minor": row.amount_minor,
                        "stripe_reversal_id": str(stripe_reversal["id"])})
    return row


def _mark_reversed_when_covered(session: Session, *, payout_id: int, now: datetime) -> None:
    done = session.scalar(
        select(func.coalesce(func.sum(PayoutReversal.amount_minor), 0)).where(
            PayoutReversal.payout_id == payout_id,
            PayoutReversal.status == ReversalStatus.SUCCEEDED)
    )
    session.execute(
        update(Payout).where(Payout.id == payout_id, Payout.status == PayoutStatus.PAID,
                             Payout.amount_minor <= int(done or 0))
        .values(status=PayoutStatus.REVERSED.value, updated_at=now)
        .execution_options(synchronize_session=False)
    )


def reversed_amounts(session: Session, payout_ids: list[int]) -> dict[int, int]:
    """Succeeded reversals per payout (what Stripe has taken back), for totals and reconciling."""
    if not payout_ids:
        return {}
    found: dict[int, int] = {}
    for start in range(0, len(payout_ids), 500):
        chunk = payout_ids[start:start + 500]
        for payout_id, total in session.execute(
            select(PayoutReversal.payout_id, func.sum(PayoutReversal.amount_minor))
            .where(PayoutReversal.payout_id.in_(chunk),
                   PayoutReversal.status == ReversalStatus.SUCCEEDED)
            .group_by(PayoutReversal.payout_id)
        ):
            found[int(payout_id)] = int(total or 0)
    return found
