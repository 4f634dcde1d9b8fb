"""What transfer webhooks do to the ledger: settle provable outcomes, never invent money.

``transfer.created`` / ``transfer.updated`` / ``transfer.reversed`` re-read the transfer from
Stripe (the payload may be stale or out of order) and find its ledger row by transfer id or by
the ``ledger_key`` metadata the execution wrote. A row left ``unknown`` or ``submitted`` by a
timeout is settled ``paid`` when amount, currency and destination all match: this is how a
crash between Stripe's success and our ledger update heals without anyone running
reconciliation. Differences are reported on the event, never written to the ledger; reversals
are recorded by the reversal flow, and reconciliation flags any made outside it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from lib.models import Payout, PayoutStatus
from lib.payouts.execution import record_paid
from lib.payouts.reconciliation import compare
from lib.stripe_gateway import StripeGateway

WEBHOOK_ACTOR = "stripe-webhook"


def _ledger_row(session: Session, transfer: dict[str, Any]) -> Payout | None:
    metadata = transfer.get("metadata") or {}
    key = metadata.get("ledger_key") if isinstance(metadata, dict) else None
    conditions = [Payout.stripe_transfer_id == str(transfer["id"])]
    if key:
        conditions.append(Payout.idempotency_key == str(key))
    return session.scalars(select(Payout).where(or_(*conditions))).first()


def apply_transfer_event(
    session_factory: sessionmaker[Session], *, gateway: StripeGateway, event: dict[str, Any],
) -> str | None:
    """Settle or check the ledger row of the event's transfer; returns a note or None."""
    obj = (event.get("data") or {}).get("object") or {}
    transfer_id = obj.get("id")
    if not isinstance(transfer_id, str) or not transfer_id.startswith("tr_"):
        return "ignored: the event carries no transfer"
    current = gateway.retrieve_transfer(transfer_id)
    transfer = current.data
    with session_factory() as session:
        payout = _ledger_row(session, transfer)
        if payout is None:
            return f"ignored: transfer {transfer_id} has no ledger row (reconciliation reports it)"
        payout_id, status = payout.id, payout.status
        differences = [item.detail for item in compare(payout, transfer)]
    if differences:
        return f"mismatch on payout {payout_id}: " + " ".join(differences)
    if status in (PayoutStatus.UNKNOWN.value, PayoutStatus.SUBMITTED.value):
        record_paid(session_factory, payout_id=payout_id, transfer=current, actor=WEBHOOK_ACTOR,
                    action="payout.settled_by_webhook")
    return None
