"""Reconciliation: Stripe's transfers (and reversals) against the ledger, and what to do about each.

What it does
    1. Lists Stripe's transfers created in ``[since, until)``.
    2. Reads the ledger rows that could match: created in the period, named by a listed transfer
       (its id, or its ``metadata.payout_id``), and every ``unknown`` or ``submitted`` row
       whatever its date (settling those is the point); and every reversal that is ``unknown``
       or ``submitted``, with the succeeded reversals of the rows it compares.
    3. Pairs them: by ``stripe_transfer_id``; else by ``metadata.ledger_key`` (the row's
       idempotency key, unique across databases); else, for transfers without a ledger key,
       by ``metadata.payout_id``. Reversals pair the same way within their transfer.
    4. Reports each finding as a :class:`ReconciliationItem` (plain data, one row of a
       DataFrame or CSV) and settles what it safely can.

What it settles, and what it leaves to people
    * An ``unknown`` row (or a ``submitted`` row older than ``stale_after``) whose transfer is
      found with the same amount, currency and destination → ``paid`` (``resolved_paid``).
      Rows not in the listed period are also looked up by destination since their first
      submission, so a period too narrow cannot hide a transfer.
    * **Two** transfers claiming one row → ``ambiguous``: nothing is settled, both are named.
    * Not found, and the first submission is within Stripe's idempotency window → left
      ``unknown`` (``retry_same_key``): executing again with the same key is safe and settles it.
    * Not found and older than the window → ``unknown_expired``: the key may be pruned, so a
      retry could pay twice; two people decide (:mod:`lib.payouts.decisions`).
    * Not found, and Stripe saved a 500 under the row's key (``error_code``
      ``stripe_saved_server_error``) → ``saved_error``: Stripe replays that 500 to every retry,
      so retrying can never settle it; two people decide. Found → settled ``paid`` like any
      other.
    * Found but different (amount, currency, destination) → reported, never auto-settled.
    * Transfers with no ledger row, ``paid`` rows whose transfer Stripe does not have, transfers
      pointing at a row the ledger calls unpaid, and a transfer's reversed amount that differs
      from the reversals the ledger says succeeded are reported.
    * Reversals: an ``unknown`` (or stale ``submitted``) reversal found among its transfer's
      reversals is settled ``succeeded``; not found → retry within the window, a person after.

Why it takes a session *factory*
    Every Stripe read happens with no transaction open: on SQLite a transaction that writes
    holds the database's only write lock, and a reconciliation calling Stripe inside it stalled
    webhook intake and payouts for as long as Stripe took (up to 30 s per call with retries).
    The ledger is read in a short read-only session, Stripe is read with none, and the
    settlements are written at the end in one short transaction of conditional updates (a row
    settled meanwhile by a retry or a webhook is left as it is).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, false, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from lib import audit
from lib.db import utcnow
from lib.dml import rowcount
from lib.errors import StripeRequestError, ValidationError
from lib.models import Payout, PayoutReversal, PayoutStatus, ReversalStatus
from lib.payouts.execution import (
    IDEMPOTENCY_WINDOW,
    STALE_SUBMITTED_AFTER,
    is_saved_server_error,
)
from lib.payouts.reversal import reversed_amounts, settle_reversal
from lib.roles import Action, Operator, authorize_in
from lib.stripe_gateway import StripeGateway

logger = logging.getLogger(__name__)

RESOLVED_PAID = "resolved_paid"
RESOLVED_REVERSAL = "resolved_reversal"
RETRY_SAME_KEY = "retry_same_key"
UNKNOWN_EXPIRED = "unknown_expired"
SAVED_ERROR = "saved_error"
IN_FLIGHT = "in_flight"
AMBIGUOUS = "ambiguous"
MISSING_LEDGER = "missing_ledger"
MISSING_TRANSFER = "missing_transfer"
AMOUNT_MISMATCH = "amount_mismatch"
CURRENCY_MISMATCH = "currency_mismatch"
DESTINATION_MISMATCH = "destination_mismatch"
REVERSAL_MISMATCH = "reversal_mismatch"
UNEXPECTED_TRANSFER = "unexpected_transfer"

#: Kinds that mean the ledger and Stripe disagree, or no machine may settle (what finance must
#: look at).
MISMATCH_KINDS = frozenset({
    MISSING_LEDGER, MISSING_TRANSFER, AMOUNT_MISMATCH, CURRENCY_MISMATCH, DESTINATION_MISMATCH,
    REVERSAL_MISMATCH, UNEXPECTED_TRANSFER, UNKNOWN_EXPIRED, AMBIGUOUS, SAVED_ERROR,
})
#: Kinds a person settles with a two-person decision (:mod:`lib.payouts.decisions`).
DECISION_KINDS = frozenset({UNKNOWN_EXPIRED, AMBIGUOUS, SAVED_ERROR})
_PAID_LIKE = (PayoutStatus.PAID.value, PayoutStatus.REVERSED.value)
_UNSETTLED = (PayoutStatus.UNKNOWN.value, PayoutStatus.SUBMITTED.value)
_REVERSAL_UNSETTLED = (ReversalStatus.UNKNOWN.value, ReversalStatus.SUBMITTED.value)


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
    #: Set when the finding is about a reversal of the payout.
    reversal_id: int | None = None


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
        return [i for i in self.items if i.kind in (RESOLVED_PAID, RESOLVED_REVERSAL)]

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


def _pair_item(kind: str, detail: str, payout: Payout, transfer: dict[str, Any] | None,
               *, reversal_id: int | None = None) -> ReconciliationItem:
    return ReconciliationItem(
        kind=kind, detail=detail, payout_id=payout.id, ledger_status=payout.status,
        stripe_transfer_id=str(transfer["id"]) if transfer else payout.stripe_transfer_id,
        ledger_amount_minor=payout.amount_minor,
        stripe_amount_minor=int(transfer["amount"]) if transfer else None,
        ledger_currency=payout.currency,
        stripe_currency=str(transfer["currency"]) if transfer else None,
        ledger_destination=payout.stripe_account_id,
        stripe_destination=str(transfer.get("destination")) if transfer else None,
        reversal_id=reversal_id,
    )


def _transfer_item(kind: str, detail: str, transfer: dict[str, Any]) -> ReconciliationItem:
    return ReconciliationItem(
        kind=kind, detail=detail, stripe_transfer_id=str(transfer["id"]),
        stripe_amount_minor=int(transfer["amount"]), stripe_currency=str(transfer["currency"]),
        stripe_destination=str(transfer.get("destination")),
    )


def compare(payout: Payout, transfer: dict[str, Any], *, reversed_minor: int | None = None
            ) -> list[ReconciliationItem]:
    """The field-by-field differences between a ledger row and its transfer.

    ``reversed_minor`` is what the ledger's succeeded reversals add up to; when given (and the
    row is paid), Stripe's ``amount_reversed`` must equal it.
    """
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
    if (reversed_minor is not None and payout.status in _PAID_LIKE
            and int(transfer.get("amount_reversed") or 0) != reversed_minor):
        found.append(_pair_item(REVERSAL_MISMATCH, f"Ledger reversed {reversed_minor}, Stripe "
                                f"reversed {transfer.get('amount_reversed')}.", payout, transfer))
    return found


def _meta(obj: dict[str, Any], key: str) -> str | None:
    metadata = obj.get("metadata") or {}
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


def _reversal_belongs_to(stripe_reversal: dict[str, Any], reversal: PayoutReversal) -> bool:
    if stripe_reversal.get("id") == reversal.stripe_reversal_id:
        return True
    key = _meta(stripe_reversal, "ledger_key")
    if key is not None:
        return key == reversal.idempotency_key
    return _meta(stripe_reversal, "reversal_id") == str(reversal.id)


def _payout_id_of(transfer: dict[str, Any]) -> int | None:
    value = _meta(transfer, "payout_id")
    return int(value) if value and value.isdigit() else None


@dataclass(slots=True)
class _Ledger:
    """A read-only snapshot of the rows one run looks at (detached objects)."""

    payouts: list[Payout]
    reversed_minor: dict[int, int]
    open_reversals: list[PayoutReversal]
    payouts_of_reversals: dict[int, Payout]


def _read_ledger(session: Session, *, since: datetime, until: datetime,
                 transfers: Iterable[dict[str, Any]]) -> _Ledger:
    transfer_ids = [str(t["id"]) for t in transfers]
    named_ids = [pid for pid in (_payout_id_of(t) for t in transfers) if pid is not None]
    condition = or_(
        and_(Payout.created_at >= since, Payout.created_at < until),
        Payout.status.in_(_UNSETTLED),
        Payout.stripe_transfer_id.in_(transfer_ids) if transfer_ids else false(),
        Payout.id.in_(named_ids) if named_ids else false(),
    )
    payouts = list(session.scalars(select(Payout).where(condition).order_by(Payout.id)))
    reversals = list(session.scalars(
        select(PayoutReversal).where(PayoutReversal.status.in_(_REVERSAL_UNSETTLED))
        .order_by(PayoutReversal.id)))
    parents = {p.id: p for p in payouts}
    missing = sorted({r.payout_id for r in reversals} - set(parents))
    if missing:
        parents.update({p.id: p for p in session.scalars(
            select(Payout).where(Payout.id.in_(missing)))})
    return _Ledger(payouts=payouts,
                   reversed_minor=reversed_amounts(session, [p.id for p in payouts]),
                   open_reversals=reversals, payouts_of_reversals=parents)


def _search_for(gateway: StripeGateway, payout: Payout) -> list[dict[str, Any]]:
    """Every transfer at an unsettled row's destination, since it was first sent, claiming it."""
    if not payout.stripe_account_id:
        return []
    first = payout.submitted_at or payout.created_at
    return [t for t in gateway.iter_transfers(destination=payout.stripe_account_id,
                                              created_gte=_ts(first - timedelta(minutes=5)))
            if _belongs_to(t, payout)]


def _retrieve(gateway: StripeGateway, transfer_id: str) -> dict[str, Any] | None:
    try:
        return gateway.retrieve_transfer(transfer_id).data
    except StripeRequestError as exc:
        if exc.http_status == 404 or exc.stripe_code == "resource_missing":
            return None
        raise


@dataclass(slots=True)
class _Run:
    """One run's state while Stripe is read (no transaction open)."""

    gateway: StripeGateway
    now: datetime
    stale_after: timedelta
    report: ReconciliationReport
    by_id: dict[str, dict[str, Any]]
    claimed: set[str] = field(default_factory=set)
    settle: list[tuple[Payout, dict[str, Any]]] = field(default_factory=list)
    settle_reversals: list[tuple[PayoutReversal, dict[str, Any]]] = field(default_factory=list)

    def add(self, item: ReconciliationItem) -> None:
        self.report.items.append(item)


def reconcile(
    factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    since: datetime, until: datetime | None = None,
    stale_after: timedelta = STALE_SUBMITTED_AFTER,
) -> ReconciliationReport:
    """Compare Stripe's transfers created in ``[since, until)`` with the ledger; settle unknowns.

    Commits its settlements (and their audit entries) itself, in one short transaction after
    every Stripe read; nothing is held open while Stripe is called.
    """
    authorize_in(factory, operator, Action.RECONCILE)
    now = utcnow()
    end = until or now
    if end <= since:
        raise ValidationError("The reconciliation period must end after it starts.")
    # Stripe's ``created`` is whole seconds: an open period ("until now") has no upper bound,
    # or a transfer made in the current second would fall outside it.
    transfers = list(gateway.iter_transfers(
        created_gte=_ts(since), created_lt=_ts(until) if until is not None else None))
    with factory() as session:
        ledger = _read_ledger(session, since=since, until=end, transfers=transfers)
    run = _Run(gateway=gateway, now=now, stale_after=stale_after,
               report=ReconciliationReport(since=since, until=end,
                                           transfers_seen=len(transfers),
                                           ledger_rows_checked=len(ledger.payouts)),
               by_id={str(t["id"]): t for t in transfers})
    for payout in ledger.payouts:
        _check_payout(run, payout, transfers, ledger.reversed_minor.get(payout.id, 0))
    for transfer in transfers:
        if str(transfer["id"]) not in run.claimed:
            run.add(_transfer_item(MISSING_LEDGER, "Stripe has this transfer but no ledger row "
                                   "matches it.", transfer))
    for reversal in ledger.open_reversals:
        _check_reversal(run, reversal, ledger.payouts_of_reversals[reversal.payout_id])

    if run.settle or run.settle_reversals:
        with factory.begin() as session:
            for payout, transfer in run.settle:
                run.add(_settle(session, operator=operator, payout=payout, transfer=transfer))
            for reversal, stripe_reversal in run.settle_reversals:
                run.add(_settle_reversal(session, operator=operator, reversal=reversal,
                                         payout=ledger.payouts_of_reversals[reversal.payout_id],
                                         stripe_reversal=stripe_reversal))
    logger.info("reconciled %s..%s: %s", since, end, run.report.summary())
    return run.report


def _check_payout(run: _Run, payout: Payout, transfers: list[dict[str, Any]],
                  reversed_minor: int) -> None:
    candidates = [t for t in transfers if _belongs_to(t, payout)]
    transfer = run.by_id.get(payout.stripe_transfer_id or "") or (
        candidates[0] if len(candidates) == 1 else None)
    run.claimed.update(str(t["id"]) for t in candidates)
    if transfer is not None:
        run.claimed.add(str(transfer["id"]))

    if payout.status in _PAID_LIKE:
        if payout.stripe_transfer_id:
            transfer = run.by_id.get(payout.stripe_transfer_id) or _retrieve(
                run.gateway, payout.stripe_transfer_id)
        for other in candidates:
            if transfer is None or other["id"] != transfer["id"]:
                run.add(_pair_item(
                    UNEXPECTED_TRANSFER, f"Stripe has another transfer, {other['id']}, for this "
                    f"row, which the ledger records as {payout.stripe_transfer_id}.", payout,
                    other))
        if transfer is None:
            run.add(_pair_item(
                MISSING_TRANSFER, f"The ledger says {payout.status} by "
                f"{payout.stripe_transfer_id or 'no transfer id'}, which Stripe does not have.",
                payout, None))
            return
        differences = compare(payout, transfer, reversed_minor=reversed_minor)
        run.report.items.extend(differences)
        run.report.matched += 0 if differences else 1
    elif payout.status in _UNSETTLED:
        _check_unsettled(run, payout, candidates)
    elif candidates:
        for other in candidates:
            run.add(_pair_item(
                UNEXPECTED_TRANSFER, f"Stripe has transfer {other['id']} for this row but the "
                f"ledger says {payout.status}.", payout, other))


def _check_unsettled(run: _Run, payout: Payout, candidates: list[dict[str, Any]]) -> None:
    if payout.status == PayoutStatus.SUBMITTED and payout.updated_at >= run.now - run.stale_after:
        run.add(_pair_item(IN_FLIGHT, "Being sent right now; not touched.", payout,
                           candidates[0] if candidates else None))
        return
    if not candidates:
        candidates = _search_for(run.gateway, payout)
        run.claimed.update(str(t["id"]) for t in candidates)
    if len(candidates) > 1:
        names = ", ".join(str(t["id"]) for t in candidates)
        run.add(_pair_item(
            AMBIGUOUS, f"{len(candidates)} transfers claim this row ({names}): nothing settled; "
            "a person decides which one it is and what happens to the others.", payout,
            candidates[0]))
        return
    if not candidates:
        first = payout.submitted_at or payout.created_at
        if first < run.now - IDEMPOTENCY_WINDOW:
            run.add(_pair_item(
                UNKNOWN_EXPIRED, "No transfer found and the idempotency key may be pruned: do "
                "not retry; decide by hand.", payout, None))
        elif is_saved_server_error(payout.error_code):
            run.add(_pair_item(
                SAVED_ERROR, "No transfer found, and Stripe saved an internal error under this "
                "payout's idempotency key: it replays that error to every retry, so retrying "
                "cannot settle it. A person decides (two people, on the Reconciliation page).",
                payout, None))
        else:
            run.add(_pair_item(RETRY_SAME_KEY, "No transfer found yet: execute again (same key, "
                               "safe).", payout, None))
        return
    (transfer,) = candidates
    differences = compare(payout, transfer)
    if differences:
        run.report.items.extend(differences)
    else:
        run.settle.append((payout, transfer))


def _check_reversal(run: _Run, reversal: PayoutReversal, payout: Payout) -> None:
    if (reversal.status == ReversalStatus.SUBMITTED
            and reversal.updated_at >= run.now - run.stale_after):
        run.add(_pair_item(IN_FLIGHT, f"Reversal {reversal.id} is being sent right now; not "
                           "touched.", payout, None, reversal_id=reversal.id))
        return
    found = [r for r in run.gateway.iter_transfer_reversals(str(payout.stripe_transfer_id))
             if _reversal_belongs_to(r, reversal)] if payout.stripe_transfer_id else []
    if len(found) > 1:
        names = ", ".join(str(r["id"]) for r in found)
        run.add(_pair_item(AMBIGUOUS, f"{len(found)} reversals claim reversal {reversal.id} "
                           f"({names}): nothing settled.", payout, None, reversal_id=reversal.id))
        return
    if not found:
        first = reversal.submitted_at or reversal.created_at
        if first < run.now - IDEMPOTENCY_WINDOW:
            run.add(_pair_item(UNKNOWN_EXPIRED, f"Reversal {reversal.id}: not found at Stripe "
                               "and its key may be pruned: do not retry; decide by hand.",
                               payout, None, reversal_id=reversal.id))
        elif is_saved_server_error(reversal.error_code):
            run.add(_pair_item(SAVED_ERROR, f"Reversal {reversal.id}: not found, "
                               "and Stripe replays a saved 500 for its key: decide by hand.",
                               payout, None, reversal_id=reversal.id))
        else:
            run.add(_pair_item(RETRY_SAME_KEY, f"Reversal {reversal.id}: not found yet; execute "
                               "again (same key, safe).", payout, None, reversal_id=reversal.id))
        return
    (stripe_reversal,) = found
    if int(stripe_reversal["amount"]) != reversal.amount_minor:
        run.add(_pair_item(REVERSAL_MISMATCH, f"Reversal {reversal.id}: ledger "
                           f"{reversal.amount_minor}, Stripe {stripe_reversal['amount']} "
                           f"({stripe_reversal['id']}).", payout, None,
                           reversal_id=reversal.id))
        return
    run.settle_reversals.append((reversal, stripe_reversal))


def _settle(session: Session, *, operator: Operator, payout: Payout, transfer: dict[str, Any]
            ) -> ReconciliationItem:
    now = utcnow()
    result = session.execute(
        update(Payout).where(Payout.id == payout.id, Payout.status.in_(_UNSETTLED))
        .values(status=PayoutStatus.PAID.value, stripe_transfer_id=str(transfer["id"]),
                completed_at=now, updated_at=now, error_code=None, error_message=None)
        .execution_options(synchronize_session=False)
    )
    moved = bool(rowcount(result))
    current = session.get(Payout, payout.id)
    assert current is not None
    session.refresh(current)
    audit.record(session, actor=operator, action="payout.reconcile",
                 result="resolved_paid" if moved else "already_settled",
                 target=f"payout:{payout.id}", idempotency_key=payout.idempotency_key,
                 input={"transfer": str(transfer["id"]), "amount": transfer.get("amount"),
                        "currency": transfer.get("currency")})
    return _pair_item(RESOLVED_PAID if moved else IN_FLIGHT,
                      "Transfer found at Stripe: the row is now paid." if moved
                      else f"Settled by another process meanwhile (now {current.status}).",
                      current, transfer)


def _settle_reversal(session: Session, *, operator: Operator, reversal: PayoutReversal,
                     payout: Payout, stripe_reversal: dict[str, Any]) -> ReconciliationItem:
    row = settle_reversal(session, reversal_id=reversal.id, stripe_reversal=stripe_reversal,
                          request_id=None, actor=operator, action="payout.reconcile_reversal")
    moved = row.status == ReversalStatus.SUCCEEDED and row.stripe_reversal_id == str(
        stripe_reversal["id"])
    return _pair_item(RESOLVED_REVERSAL if moved else IN_FLIGHT,
                      f"Reversal {reversal.id} found at Stripe ({stripe_reversal['id']}): now "
                      f"{row.status}.", payout, None, reversal_id=reversal.id)
