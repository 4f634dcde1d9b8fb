"""Reversing (part of) a paid transfer: admin only, with a reason, recorded before Stripe is called.

Like execution this takes the session *factory*: the reversal row (with its own idempotency key,
``connectops-reversal-{id}-{nonce}``) and the reservation of its amount are committed before
``Transfer.create_reversal``, and the answer is recorded in a second transaction.

Two admins reversing at once cannot reverse more than was paid: the amount is reserved with one
conditional ``UPDATE payouts SET amount_reversed_minor = amount_reversed_minor + :amount WHERE
… AND amount_reversed_minor + :amount <= amount_minor``. So ``amount_reversed_minor`` counts
reversals that succeeded or are still in flight; a reversal Stripe refuses releases its share.
A reversal without an answer stays ``unknown`` (reservation kept) and is retried with its key by
:func:`retry_reversal`. The payout becomes ``reversed`` once succeeded reversals cover it.
"""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from lib import audit
from lib.db import utcnow
from lib.errors import (
    ConflictError,
    ConnectOpsError,
    NotFoundError,
    StripeGatewayError,
    StripeRequestError,
    ValidationError,
)
from lib.models import Payout, PayoutReversal, PayoutStatus
from lib.money import Money, parse_amount
from lib.payouts.ledger import KEY_PREFIX, get_payout, new_nonce
from lib.roles import Action, AuditedRefusal, Operator, authorize
from lib.stripe_gateway import StripeGateway

logger = logging.getLogger(__name__)

PENDING, SUCCEEDED, FAILED, UNKNOWN = "pending", "succeeded", "failed", "unknown"


def reversal_idempotency_key(reversal_id: int, nonce: str) -> str:
    return f"{KEY_PREFIX}-reversal-{reversal_id}-{nonce}"


def reverse_payout(
    session_factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    payout_id: int, amount: str | int | Decimal | Money | None, reason: str,
) -> PayoutReversal:
    """Reverse ``amount`` (all that remains when None) of a paid payout's transfer."""
    try:
        authorize(operator, Action.REVERSE_PAYOUT, session=session_factory,
                  target=f"payout:{payout_id}")
        reversal = _reserve(session_factory, operator=operator, payout_id=payout_id,
                            amount=amount, reason=reason)
    except ConnectOpsError as exc:
        if not isinstance(exc, AuditedRefusal):  # authorize already wrote that one
            audit.record_now(session_factory, actor=operator, action="payout.reverse",
                             result=f"refused:{exc.code}", target=f"payout:{payout_id}",
                             detail=exc.message, input={"amount": str(amount), "reason": reason})
        raise
    return _send(session_factory, gateway=gateway, operator=operator, reversal=reversal)


def retry_reversal(
    session_factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    reversal_id: int,
) -> PayoutReversal:
    """Send an ``unknown`` reversal again with its own key (Stripe replays it)."""
    authorize(operator, Action.REVERSE_PAYOUT, session=session_factory)
    with session_factory() as session:
        reversal = session.get(PayoutReversal, reversal_id)
        if reversal is None:
            raise NotFoundError(f"Reversal {reversal_id} does not exist.")
    if reversal.status != UNKNOWN:
        return reversal
    return _send(session_factory, gateway=gateway, operator=operator, reversal=reversal)


def _amount(payout: Payout, amount: str | int | Decimal | Money | None, remaining: int) -> int:
    if amount is None:
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
            f"Only {remaining} {payout.currency.upper()} minor units are left to reverse."
        )
    return minor


def _reserve(
    session_factory: sessionmaker[Session], *, operator: Operator, payout_id: int,
    amount: str | int | Decimal | Money | None, reason: str,
) -> PayoutReversal:
    text = (reason or "").strip()
    if not text or len(text) > 500:
        raise ValidationError("A reversal needs a reason of 1 to 500 characters.")
    with session_factory.begin() as session:
        payout = get_payout(session, payout_id=payout_id)
        if payout.status != PayoutStatus.PAID or not payout.stripe_transfer_id:
            raise ConflictError(f"Payout {payout_id} is {payout.status}; only paid payouts can be "
                                "reversed.")
        remaining = payout.amount_minor - payout.amount_reversed_minor
        if remaining <= 0:
            raise ConflictError(f"Payout {payout_id} is already reversed (or being reversed).")
        minor = _amount(payout, amount, remaining)
        reserved = session.execute(
            update(Payout).where(
                Payout.id == payout_id, Payout.status == PayoutStatus.PAID,
                Payout.amount_reversed_minor + minor <= Payout.amount_minor,
            ).values(amount_reversed_minor=Payout.amount_reversed_minor + minor,
                     updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if not reserved.rowcount:  # type: ignore[attr-defined]
            raise ConflictError(f"Payout {payout_id} changed meanwhile; nothing was reversed.")
        reversal = PayoutReversal(
            payout_id=payout_id, amount_minor=minor, reason=text, status=PENDING,
            idempotency_key=f"unassigned-{uuid.uuid4().hex}", requested_by=operator.username,
        )
        session.add(reversal)
        session.flush()
        reversal.idempotency_key = reversal_idempotency_key(reversal.id, new_nonce())
        session.flush()
        audit.record(session, actor=operator, action="payout.reverse", result="requested",
                     target=f"payout:{payout_id}", idempotency_key=reversal.idempotency_key,
                     input={"reversal_id": reversal.id, "amount_minor": minor, "reason": text})
        return reversal


def _send(
    session_factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    reversal: PayoutReversal,
) -> PayoutReversal:
    with session_factory() as session:
        payout = get_payout(session, payout_id=reversal.payout_id)
        transfer_id = payout.stripe_transfer_id
    assert transfer_id is not None
    try:
        result = gateway.create_transfer_reversal(
            transfer_id=transfer_id, amount_minor=reversal.amount_minor,
            idempotency_key=reversal.idempotency_key,
            metadata={"payout_id": str(reversal.payout_id), "reversal_id": str(reversal.id)},
        )
    except StripeRequestError as exc:
        definitive = exc.http_status != 409
        return _finish(session_factory, operator=operator, reversal=reversal,
                       status=FAILED if definitive else UNKNOWN, exc=exc)
    except StripeGatewayError as exc:
        return _finish(session_factory, operator=operator, reversal=reversal, status=UNKNOWN,
                       exc=exc)
    return _finish(session_factory, operator=operator, reversal=reversal, status=SUCCEEDED,
                   stripe_id=result.id, request_id=result.request_id)


def _finish(
    session_factory: sessionmaker[Session], *, operator: Operator, reversal: PayoutReversal,
    status: str, exc: StripeGatewayError | None = None, stripe_id: str | None = None,
    request_id: str | None = None,
) -> PayoutReversal:
    now = utcnow()
    with session_factory.begin() as session:
        row = session.get(PayoutReversal, reversal.id)
        assert row is not None
        row.status = status
        row.stripe_request_id = request_id or (exc.request_id if exc else None)
        if stripe_id:
            row.stripe_reversal_id = stripe_id
        if exc is not None:
            row.error_code = (exc.stripe_code or exc.code)[:100]
            row.error_message = exc.message[:2000]
        if status in (SUCCEEDED, FAILED):
            row.completed_at = now
        if status == FAILED:
            session.execute(
                update(Payout).where(Payout.id == row.payout_id)
                .values(amount_reversed_minor=Payout.amount_reversed_minor - row.amount_minor,
                        updated_at=now)
                .execution_options(synchronize_session=False)
            )
        if status == SUCCEEDED:
            session.flush()
            done = session.scalar(
                select(func.coalesce(func.sum(PayoutReversal.amount_minor), 0)).where(
                    PayoutReversal.payout_id == row.payout_id,
                    PayoutReversal.status == SUCCEEDED)
            )
            session.execute(
                update(Payout).where(Payout.id == row.payout_id, Payout.status == PayoutStatus.PAID,
                                     Payout.amount_minor <= int(done or 0))
                .values(status=PayoutStatus.REVERSED.value, updated_at=now)
                .execution_options(synchronize_session=False)
            )
        audit.record(session, actor=operator, action="payout.reverse", result=status,
                     target=f"payout:{row.payout_id}", idempotency_key=row.idempotency_key,
                     stripe_request_id=row.stripe_request_id, detail=exc.message if exc else None,
                     input={"reversal_id": row.id, "amount_minor": row.amount_minor,
                            "stripe_reversal_id": stripe_id})
    logger.info("reversal %s of payout %s: %s", row.id, row.payout_id, status)
    return row
