"""Two-person approval: at or above the threshold a second operator approves, never the requester.

Both decisions are one conditional ``UPDATE … WHERE id = :id AND status = 'pending_approval'``:
when two approvers (or an approver and a rejecter) click at once, the database lets exactly one
statement change the row and the other gets ``ConflictError``. ``requested_by`` never changes
after the insert, so the self-approval check cannot be raced. Roles are enforced here, not only
in the UI: an admin who requested a payout cannot approve it either.

A requester may reject (withdraw) their own request: that can only stop money, never move it.
Rejection also applies to a ``pending`` row that has not been claimed for execution yet (a crash
left it behind, or preflight keeps failing); the executor's claim is a conditional update too.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from lib import audit
from lib.db import utcnow
from lib.errors import ConflictError, ConnectOpsError, PermissionDeniedError, ValidationError
from lib.models import Payout, PayoutStatus
from lib.payouts.ledger import audit_refusal, get_payout, set_status_where
from lib.roles import Action, Operator, authorize

logger = logging.getLogger(__name__)

MAX_REASON = 500


def approve_payout(
    session: Session, *, operator: Operator, payout_id: int,
    audit_refusals_with: sessionmaker[Session] | None = None,
) -> Payout:
    """Approve a payout awaiting approval; it becomes ``pending`` (ready to execute)."""
    try:
        return _approve(session, operator=operator, payout_id=payout_id)
    except ConnectOpsError as exc:
        audit_refusal(audit_refusals_with, session=session, operator=operator,
                      action="payout.approve", exc=exc, target=f"payout:{payout_id}")
        raise


def _approve(session: Session, *, operator: Operator, payout_id: int) -> Payout:
    authorize(operator, Action.APPROVE_PAYOUT, session=session, target=f"payout:{payout_id}")
    payout = get_payout(session, payout_id=payout_id)
    if operator.is_same_person(payout.requested_by):
        raise PermissionDeniedError(
            f"{operator.username} requested payout {payout_id} and cannot approve it: "
            "a second operator must."
        )
    if payout.status != PayoutStatus.PENDING_APPROVAL:
        raise ConflictError(f"Payout {payout_id} is {payout.status}, not awaiting approval.")
    now = utcnow()
    moved = set_status_where(
        session, payout_id=payout_id, allowed=(PayoutStatus.PENDING_APPROVAL,),
        values={"status": PayoutStatus.PENDING.value, "approved_by": operator.username,
                "approved_at": now, "updated_at": now},
    )
    session.refresh(payout)
    if not moved:
        raise ConflictError(
            f"Payout {payout_id} was decided by someone else a moment ago (now {payout.status})."
        )
    audit.record(session, actor=operator, action="payout.approve", result="approved",
                 target=f"payout:{payout_id}", idempotency_key=payout.idempotency_key,
                 input={"payout_id": payout_id})
    logger.info("payout %s approved by %s", payout_id, operator.username)
    return payout


def reject_payout(
    session: Session, *, operator: Operator, payout_id: int, reason: str,
    audit_refusals_with: sessionmaker[Session] | None = None,
) -> Payout:
    """Reject a payout that has not been sent; the reason is required and recorded."""
    try:
        return _reject(session, operator=operator, payout_id=payout_id, reason=reason)
    except ConnectOpsError as exc:
        audit_refusal(audit_refusals_with, session=session, operator=operator,
                      action="payout.reject", exc=exc, target=f"payout:{payout_id}",
                      input={"reason": reason})
        raise


def _reject(session: Session, *, operator: Operator, payout_id: int, reason: str) -> Payout:
    authorize(operator, Action.REJECT_PAYOUT, session=session, target=f"payout:{payout_id}")
    text = (reason or "").strip()
    if not text:
        raise ValidationError("A rejection needs a reason.")
    if len(text) > MAX_REASON:
        raise ValidationError(f"The reason is limited to {MAX_REASON} characters.")
    payout = get_payout(session, payout_id=payout_id)
    allowed = (PayoutStatus.PENDING_APPROVAL, PayoutStatus.PENDING)
    if payout.status not in allowed:
        raise ConflictError(f"Payout {payout_id} is {payout.status}; it can no longer be rejected.")
    now = utcnow()
    if payout.submitted_at is not None:
        # Sent to Stripe at least once: Stripe may have paid it, so only a retry with its key,
        # reconciliation or a person's recorded decision may settle it, never a rejection.
        raise ConflictError(f"Payout {payout_id} was already sent to Stripe; it can no longer "
                            "be rejected. Reconcile it instead.")
    moved = set_status_where(
        session, payout_id=payout_id, allowed=allowed, never_submitted=True,
        values={"status": PayoutStatus.REJECTED.value, "rejected_by": operator.username,
                "rejection_reason": text, "completed_at": now, "updated_at": now},
    )
    session.refresh(payout)
    if not moved:
        raise ConflictError(
            f"Payout {payout_id} changed a moment ago (now {payout.status}); it was not rejected."
        )
    audit.record(session, actor=operator, action="payout.reject", result="rejected",
                 target=f"payout:{payout_id}", input={"payout_id": payout_id, "reason": text},
                 idempotency_key=payout.idempotency_key)
    logger.info("payout %s rejected by %s", payout_id, operator.username)
    return payout
