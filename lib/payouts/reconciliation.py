"""Reconciliation: Stripe's transfers for a period against the ledger, and what to do about each.

What it does
    1. Lists Stripe's transfers created in ``[since, until)``.
    2. Loads the ledger rows that could match: created in the period, named by a listed transfer
       (its id, or its ``metadata.payout_id``), and every ``unknown`` or ``submitted`` row
       whatever its date (settling those is the point).
    3. Pairs them: by ``stripe_transfer_id``; else by ``metadata.ledger_key`` (the row's
       idempotency key, unique across databases); else, for transfers without a ledger key,
       by ``metadata.payout_id``.
    4. Reports each problem as a :class:`ReconciliationItem` (plain data, one row of a
       DataFrame or CSV) and settles what it safely can.

What it settles, and what it leaves to people
    * An ``unknown`` row (or a ``submitted`` row older than ``stale_after``) whose transfer is
      found with the same amount, currency and destination → ``paid`` (``resolved_paid``).
      Rows not in the listed period are also looked up by destination since their first
      submission, so a period too narrow cannot hide a transfer.
    * Not found, and the first submission is within Stripe's idempotency window → left
      ``unknown`` (``retry_same_key``): executing again with the same key is safe and settles it.
    * Not found and older than the window → ``unknown_expired``: the key may be pruned, so a
      retry could pay twice; a person decides (it is almost certainly never executed).
    * Not found, and Stripe saved a 500 under the row's key (``error_code``
      ``stripe_saved_server_error``) → ``saved_error``: Stripe replays that 500 to every retry,
      so retrying can never settle it; a person decides (a new payout request if it was never
      paid). Found → settled ``paid`` like any other.
    * Found but different (amount, currency, destination) → reported, never auto-settled.
    * Transfers with no ledger row, ``paid`` rows whose transfer Stripe does not have, and
      transfers pointing at a row the ledger calls unpaid are reported.

All Stripe reads happen before the first database write, so no write lock is held across the
network (SQLite). The function takes the caller's session and does not commit, like the other
data functions: the caller commits the settlements and their audit entries together.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, false, or_, select, update
from sqlalchemy.orm import Session

from lib import audit
from lib.db import utcnow
from lib.errors import StripeRequestError, ValidationError
from lib.models import Payout, PayoutStatus
from lib.payouts.execution import (
    IDEMPOTENCY_WINDOW,
    SAVED_SERVER_ERROR,
    STALE_SUBMITTED_AFTER,
)
from lib.roles import Action, Operator, authorize
from lib.stripe_gateway import StripeGateway

logger = logging.getLogger(__name__)

RESOLVED_PAID = "resolved_paid"
RETRY_SAME_KEY = "retry_same_key"
UNKNOWN_EXPIRED = "unknown_expired"
SAVED_ERROR = "saved_error"
IN_FLIGHT = "in_flight"
MISSING_LEDGER = "missing_ledger"
MISSING_TRANSFER = "missing_transfer"
AMOUNT_MISMATCH = "amount_mismatch"
CURRENCY_MISMATCH = "currency_mismatch"
DESTINATION_MISMATCH = "destination_mismatch"
REVERSAL_MISMATCH = "reversal_mismatch"
UNEXPECTED_TRANSFER = "unexpected_transfer"

#: Kinds that mean the ledger and Stripe disagree (what finance must look at).
MISMATCH_KINDS = frozenset({
    MISSING_LEDGER, MISSING_TRANSFER, AMOUNT_MISMATCH, CURRENCY_MISMATCH, DESTINATION_MISMATCH,
    REVERSAL_MISMATCH, UNEXPECTED_TRANSFER, UNKNOWN_EXPIRED, SAVED_ERROR,
})
_PAID_LIKE = (PayoutStatus.PAID.value, PayoutStatus.REVERSED.value)
_UNSETTLED = (PayoutStatus.UNKNOWN.value, PayoutStatus.SUBMITTED.value)


@dataclass(frozen=True, slots=True)
class ReconciliationItem:
    """One finding: a ledger row, a Stripe transfer, or the pair, and what is wrong or was done."""

    kind: str
    detail: str
    payout_id: int | None = None
    ledger_status: str | None = None
    stripe_transfer_id: str | None = None
    ledger_amount_minor: int | None = None
    stripe_amount_minor: int | None = None
    ledger_currency: str | None = None
    stripe_currency: str | None = None
    ledger_destination: str | None = None
    stripe_destination: str | None = None


@dataclass(slots=True)
class ReconciliationReport:
    """What one run saw and found; ``rows()`` is what the dashboard shows and finance exports."""

    since: datetime
    until: datetime
    transfers_seen: int = 0
    ledger_rows_checked: int = 0
    matched: int = 0
    items: list[ReconciliationItem] = field(default_factory=list)

    @property
    def mismatches(self) -> list[ReconciliationItem]:
        return [i for i in self.items if i.kind in MISMATCH_KINDS]

    @property
    def resolved(self) -> list[ReconciliationItem]:
        return [i for i in self.items if i.kind == RESOLVED_PAID]

    def of_kind(self, kind: str) -> list[ReconciliationItem]:
        return [i for i in self.items if i.kind == kind]

    def rows(self) -> list[dict[str, Any]]:
        return [asdict(item) for item in self.items]

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {"transfers_seen": self.transfers_seen,
                                  "ledger_rows_checked": self.ledger_rows_checked,
                                  "matched": self.matched}
        for item in self.items:
            counts[item.kind] = counts.get(item.kind, 0) + 1
        return counts


def _ts(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValidationError("Reconciliation periods need timezone-aware times (UTC).")
    return int(moment.timestamp())


def _pair_item(kind: str, detail: str, payout: Payout, transfer: dict[str, Any] | None
               ) -> ReconciliationItem:
    return ReconciliationItem(
        kind=kind, detail=detail, payout_id=payout.id, ledger_status=payout.status,
        stripe_transfer_id=str(transfer["id"]) if transfer else payout.stripe_transfer_id,
        ledger_amount_minor=payout.amount_minor,
        stripe_amount_minor=int(transfer["amount"]) if transfer else None,
        ledger_currency=payout.currency,
        stripe_currency=str(transfer["currency"]) if transfer else None,
        ledger_destination=payout.stripe_account_id,
        stripe_destination=str(transfer.get("destination")) if transfer else None,
    )


def _transfer_item(kind: str, detail: str, transfer: dict[str, Any]) -> ReconciliationItem:
    return ReconciliationItem(
        kind=kind, detail=detail, stripe_transfer_id=str(transfer["id"]),
        stripe_amount_minor=int(transfer["amount"]), stripe_currency=str(transfer["currency"]),
        stripe_destination=str(transfer.get("destination")),
    )


def compare(payout: Payout, transfer: dict[str, Any]) -> list[ReconciliationItem]:
    """The field-by-field differences between a ledger row and its transfer."""
    found = []
    if int(transfer["amount"]) != payout.amount_minor:
        found.append(_pair_item(AMOUNT_MISMATCH, f"Ledger {payout.amount_minor}, Stripe "
                                f"{transfer['amount']} (minor units).", payout, transfer))
    if str(transfer["currency"]).lower() != payout.currency:
        found.append(_pair_item(CURRENCY_MISMATCH, f"Ledger {payout.currency.upper()}, Stripe "
                                f"{str(transfer['currency']).upper()}.", payout, transfer))
    if transfer.get("destination") != payout.stripe_account_id:
        found.append(_pair_item(DESTINATION_MISMATCH, f"Ledger {payout.stripe_account_id}, "
                                f"Stripe {transfer.get('destination')}.", payout, transfer))
    if payout.status in _PAID_LIKE and int(transfer.get("amount_reversed") or 0) != (
        payout.amount_reversed_minor
    ):
        found.append(_pair_item(REVERSAL_MISMATCH, f"Ledger reversed "
                                f"{payout.amount_reversed_minor}, Stripe reversed "
                                f"{transfer.get('amount_reversed')}.", payout, transfer))
    return found


def _meta(transfer: dict[str, Any], key: str) -> str | None:
    metadata = transfer.get("metadata") or {}
    value = metadata.get(key) if isinstance(metadata, dict) else None
    return str(value) if value else None


def _belongs_to(transfer: dict[str, Any], payout: Payout) -> bool:
    """Does this transfer claim to be this row's? (ledger key first, then payout id)."""
    if transfer.get("id") == payout.stripe_transfer_id:
        return True
    key = _meta(transfer, "ledger_key")
    if key is not None:
        return key == payout.idempotency_key
    return _meta(transfer, "payout_id") == str(payout.id)


def _payout_id_of(transfer: dict[str, Any]) -> int | None:
    value = _meta(transfer, "payout_id")
    return int(value) if value and value.isdigit() else None


def _load_rows(session: Session, *, since: datetime, until: datetime,
               transfers: Iterable[dict[str, Any]]) -> list[Payout]:
    transfer_ids = [str(t["id"]) for t in transfers]
    named_ids = [pid for pid in (_payout_id_of(t) for t in transfers) if pid is not None]
    condition = or_(
        and_(Payout.created_at >= since, Payout.created_at < until),
        Payout.status.in_(_UNSETTLED),
        Payout.stripe_transfer_id.in_(transfer_ids) if transfer_ids else false(),
        Payout.id.in_(named_ids) if named_ids else false(),
    )
    return list(session.scalars(select(Payout).where(condition).order_by(Payout.id)))


def _search_for(gateway: StripeGateway, payout: Payout) -> dict[str, Any] | None:
    """Look for an unsettled row's transfer at its destination since it was first sent."""
    if not payout.stripe_account_id:
        return None
    first = payout.submitted_at or payout.created_at
    for transfer in gateway.iter_transfers(destination=payout.stripe_account_id,
                                           created_gte=_ts(first - timedelta(minutes=5))):
        if _belongs_to(transfer, payout):
            return transfer
    return None


def _retrieve(gateway: StripeGateway, transfer_id: str) -> dict[str, Any] | None:
    try:
        return gateway.retrieve_transfer(transfer_id).data
    except StripeRequestError as exc:
        if exc.http_status == 404 or exc.stripe_code == "resource_missing":
            return None
        raise


def reconcile(
    session: Session, *, gateway: StripeGateway, operator: Operator, since: datetime,
    until: datetime | None = None, stale_after: timedelta = STALE_SUBMITTED_AFTER,
) -> ReconciliationReport:
    """Compare Stripe's transfers created in ``[since, until)`` with the ledger; settle unknowns."""
    authorize(operator, Action.RECONCILE, session=session)
    now = utcnow()
    end = until or now
    if end <= since:
        raise ValidationError("The reconciliation period must end after it starts.")
    # Stripe's ``created`` is whole seconds: an open period ("until now") has no upper bound,
    # or a transfer made in the current second would fall outside it.
    transfers = list(gateway.iter_transfers(
        created_gte=_ts(since), created_lt=_ts(until) if until is not None else None))
    report = ReconciliationReport(since=since, until=end, transfers_seen=len(transfers))
    rows = _load_rows(session, since=since, until=end, transfers=transfers)
    report.ledger_rows_checked = len(rows)

    by_id = {str(t["id"]): t for t in transfers}
    claimed: set[str] = set()
    settle: list[tuple[Payout, dict[str, Any]]] = []

    for payout in rows:
        candidates = [t for t in transfers if _belongs_to(t, payout)]
        transfer = by_id.get(payout.stripe_transfer_id or "") or (
            candidates[0] if candidates else None
        )
        for t in candidates:
            claimed.add(str(t["id"]))
        if transfer is not None:
            claimed.add(str(transfer["id"]))

        if payout.status in _PAID_LIKE:
            if payout.stripe_transfer_id:
                transfer = by_id.get(payout.stripe_transfer_id) or _retrieve(
                    gateway, payout.stripe_transfer_id)
            for other in candidates:
                if transfer is None or other["id"] != transfer["id"]:
                    report.items.append(_pair_item(
                        UNEXPECTED_TRANSFER, f"Stripe has another transfer, {other['id']}, for "
                        f"this row, which the ledger records as {payout.stripe_transfer_id}.",
                        payout, other))
            if transfer is None:
                report.items.append(_pair_item(
                    MISSING_TRANSFER, f"The ledger says {payout.status} by "
                    f"{payout.stripe_transfer_id or 'no transfer id'}, which Stripe does not have.",
                    payout, None))
                continue
            differences = compare(payout, transfer)
            report.items.extend(differences)
            report.matched += 0 if differences else 1
        elif payout.status in _UNSETTLED:
            if payout.status == PayoutStatus.SUBMITTED and payout.updated_at >= now - stale_after:
                report.items.append(_pair_item(IN_FLIGHT, "Being sent right now; not touched.",
                                               payout, transfer))
                continue
            if transfer is None:
                transfer = _search_for(gateway, payout)
            if transfer is None:
                first = payout.submitted_at or payout.created_at
                if payout.error_code == SAVED_SERVER_ERROR:
                    report.items.append(_pair_item(
                        SAVED_ERROR, "No transfer found, and Stripe saved an internal error "
                        "under this payout's idempotency key: it replays that error to every "
                        "retry, so retrying cannot settle it. A person decides (a new payout "
                        "request if it was never paid).", payout, None))
                elif first < now - IDEMPOTENCY_WINDOW:
                    report.items.append(_pair_item(
                        UNKNOWN_EXPIRED, "No transfer found and the idempotency key may be "
                        "pruned: do not retry; decide by hand.", payout, None))
                else:
                    report.items.append(_pair_item(
                        RETRY_SAME_KEY, "No transfer found yet: execute again (same key, safe).",
                        payout, None))
                continue
            differences = [d for d in compare(payout, transfer) if d.kind != REVERSAL_MISMATCH]
            if differences:
                report.items.extend(differences)
            else:
                settle.append((payout, transfer))
        elif transfer is not None:
            report.items.append(_pair_item(
                UNEXPECTED_TRANSFER, f"Stripe has transfer {transfer['id']} for this row but the "
                f"ledger says {payout.status}.", payout, transfer))

    for transfer in transfers:
        if str(transfer["id"]) not in claimed:
            report.items.append(_transfer_item(
                MISSING_LEDGER, "Stripe has this transfer but no ledger row matches it.",
                transfer))

    for payout, transfer in settle:
        report.items.append(_settle(session, operator=operator, payout=payout, transfer=transfer))
    logger.info("reconciled %s..%s: %s", since, end, report.summary())
    return report


def _settle(session: Session, *, operator: Operator, payout: Payout, transfer: dict[str, Any]
            ) -> ReconciliationItem:
    now = utcnow()
    result = session.execute(
        update(Payout).where(Payout.id == payout.id, Payout.status.in_(_UNSETTLED))
        .values(status=PayoutStatus.PAID.value, stripe_transfer_id=str(transfer["id"]),
                completed_at=now, updated_at=now, error_code=None, error_message=None)
        .execution_options(synchronize_session=False)
    )
    moved = bool(result.rowcount)  # type: ignore[attr-defined]
    session.refresh(payout)
    audit.record(session, actor=operator, action="payout.reconcile",
                 result="resolved_paid" if moved else "already_settled",
                 target=f"payout:{payout.id}", idempotency_key=payout.idempotency_key,
                 input={"transfer": str(transfer["id"]), "amount": transfer.get("amount"),
                        "currency": transfer.get("currency")})
    return _pair_item(RESOLVED_PAID if moved else IN_FLIGHT,
                      "Transfer found at Stripe: the row is now paid." if moved
                      else f"Settled by another process meanwhile (now {payout.status}).",
                      payout, transfer)
