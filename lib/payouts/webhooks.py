"""What transfer webhooks do to the ledger: settle provable outcomes, report drift, invent nothing.

``transfer.created`` / ``transfer.updated`` / ``transfer.reversed`` re-read the transfer from
Stripe (the payload may be stale or out of order) and find its ledger row by transfer id or by
the ``ledger_key`` metadata the execution wrote.

* A row left ``unknown`` or ``submitted`` by a timeout is settled ``paid`` when amount, currency
  and destination all match: a crash between Stripe's success and our ledger update heals
  without anyone running reconciliation.
* Reversals of the row left ``unknown`` or ``submitted`` are settled ``succeeded`` when the
  transfer's reversals include them (matched by their own ledger key), the same way.
* **Drift**: a transfer for a row the ledger calls ``pending``, ``pending_approval``,
  ``failed`` or ``rejected`` means Stripe moved money the ledger says it did not; so does a
  transfer that differs from its row. Nothing is written to the ledger (a person must look),
  but the event says so, and a ``payout.drift`` audit entry is written that the
  Reconciliation page lists — never a silent "processed".
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from lib import audit
from lib.models import Payout, PayoutReversal, PayoutStatus, ReversalStatus
from lib.payouts.execution import record_paid
from lib.payouts.reconciliation import compare
from lib.payouts.reversal import settle_reversal
from lib.stripe_gateway import StripeGateway

WEBHOOK_ACTOR = "stripe-webhook"
DRIFT_ACTION = "payout.drift"
#: Ledger states that say "no money moved"; a transfer for such a row is drift.
_NOT_SENT = frozenset({PayoutStatus.PENDING.value, PayoutStatus.PENDING_APPROVAL.value,
                       PayoutStatus.FAILED.value, PayoutStatus.REJECTED.value})


def _ledger_row(session: Session, transfer: dict[str, Any]) -> Payout | None:
    metadata = transfer.get("metadata") or {}
    key = metadata.get("ledger_key") if isinstance(metadata, dict) else None
    conditions = [Payout.stripe_transfer_id == str(transfer["id"])]
    if key:
        conditions.append(Payout.idempotency_key == str(key))
    return session.scalars(select(Payout).where(or_(*conditions))).first()


def _record_drift(factory: sessionmaker[Session], *, payout: Payout,
                  transfer: dict[str, Any], event: dict[str, Any], detail: str) -> str:
    with factory.begin() as session:
        audit.record(session, actor=WEBHOOK_ACTOR, action=DRIFT_ACTION, result="detected",
                     target=f"payout:{payout.id}", idempotency_key=payout.idempotency_key,
                     detail=detail,
                     input={"event": event.get("id"), "type": event.get("type"),
                            "transfer": str(transfer["id"]), "ledger_status": payout.status,
                            "amount": transfer.get("amount"),
                            "currency": transfer.get("currency"),
                            "destination": transfer.get("destination")})
    return f"drift on payout {payout.id}: {detail}"


def apply_transfer_event(
    factory: sessionmaker[Session], *, gateway: StripeGateway, event: dict[str, Any],
) -> str | None:
    """Settle, check or report the ledger row of the event's transfer; returns a note or None."""
    obj = (event.get("data") or {}).get("object") or {}
    transfer_id = obj.get("id")
    if not isinstance(transfer_id, str) or not transfer_id.startswith("tr_"):
        return "ignored: the event carries no transfer"
    current = gateway.retrieve_transfer(transfer_id)
    transfer = current.data
    with factory() as session:
        payout = _ledger_row(session, transfer)
        if payout is None:
            return f"ignored: transfer {transfer_id} has no ledger row (reconciliation reports it)"
        differences = [item.detail for item in compare(payout, transfer)]
        open_reversals = list(session.scalars(select(PayoutReversal).where(
            PayoutReversal.payout_id == payout.id,
            PayoutReversal.status.in_([ReversalStatus.UNKNOWN.value,
                                       ReversalStatus.SUBMITTED.value]))))
    if differences:
        return _record_drift(factory, payout=payout, transfer=transfer, event=event,
                             detail="the transfer differs from its row: " + " ".join(differences))
    if payout.status in _NOT_SENT:
        return _record_drift(
            factory, payout=payout, transfer=transfer, event=event,
            detail=f"Stripe made transfer {transfer_id} ({transfer.get('amount')} "
                   f"{transfer.get('currency')}) for a payout the ledger calls {payout.status}.")
    if payout.status in (PayoutStatus.UNKNOWN.value, PayoutStatus.SUBMITTED.value):
        record_paid(factory, payout_id=payout.id, transfer=current, actor=WEBHOOK_ACTOR,
                    action="payout.settled_by_webhook")
    if open_reversals and int(transfer.get("amount_reversed") or 0) > 0:
        _settle_reversals(factory, gateway=gateway, transfer_id=transfer_id,
                          reversals=open_reversals)
    return None


def _settle_reversals(factory: sessionmaker[Session], *, gateway: StripeGateway,
                      transfer_id: str, reversals: list[PayoutReversal]) -> None:
    by_key: dict[str, dict[str, Any]] = {}
    for stripe_reversal in gateway.iter_transfer_reversals(transfer_id):
        metadata = stripe_reversal.get("metadata") or {}
        key = metadata.get("ledger_key") if isinstance(metadata, dict) else None
        if key:
            by_key[str(key)] = stripe_reversal
    for reversal in reversals:
        found = by_key.get(reversal.idempotency_key)
        if found is None or int(found["amount"]) != reversal.amount_minor:
            continue  # not made (yet), or different: reconciliation reports it
        with factory.begin() as session:
            settle_reversal(session, reversal_id=reversal.id, stripe_reversal=found,
                            request_id=None, actor=WEBHOOK_ACTOR,
                            action="payout.reversal_settled_by_webhook")
