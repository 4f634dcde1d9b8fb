"""A person's decision for a payout or reversal that no retry may settle, made by two people.

Which rows
    A row that was sent (``unknown``, or ``submitted`` long after its executor went silent) can
    normally be settled by retrying with its idempotency key or by reconciliation. Two kinds
    cannot: a row first sent longer ago than Stripe's key window (a retry might execute again),
    and a row whose key Stripe answers with a saved 500 (every retry gets the same 500). Those,
    and rows reconciliation found ambiguous, are settled here: nothing automatic.

How
    One operator proposes "paid by tr_… (or trr_…)" or "not paid", with a reason; a *second*
    operator confirms. Both steps check Stripe again (no transaction is open while they do):
    "paid" needs the named transfer (or reversal) to exist with this row's amount, currency and
    destination, and to be no other row's; "not paid" is refused while Stripe has a transfer
    (or reversal) that claims the row. Only the confirmation changes the ledger, with
    conditional updates (a row settled meanwhile by a late webhook is left alone), and every
    step is audited. At most one proposal per row is open (a partial unique index).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import String, and_, bindparam, case, func, literal, or_, select, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import Select

from lib import audit
from lib.db import UTCDateTime, utcnow
from lib.dml import rowcount
from lib.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    StripeRequestError,
    ValidationError,
)
from lib.models import (
    DecisionOutcome,
    DecisionStatus,
    Payout,
    PayoutReversal,
    PayoutStatus,
    ReversalStatus,
    SettlementDecision,
)
from lib.paging import MAX_PAGE, check_page, count_capped
from lib.payouts.execution import (
    IDEMPOTENCY_WINDOW,
    SAVED_SERVER_ERROR,
    STALE_SUBMITTED_AFTER,
    is_saved_server_error,
)
from lib.payouts.reversal import get_reversal, settle_reversal
from lib.roles import Action, Operator, authorize, authorize_in
from lib.stripe_gateway import StripeGateway

logger = logging.getLogger(__name__)

PAYOUT, REVERSAL = "payout", "reversal"
MAX_REASON = 500
_UNSETTLED = (PayoutStatus.UNKNOWN.value, PayoutStatus.SUBMITTED.value)
_REVERSAL_UNSETTLED = (ReversalStatus.UNKNOWN.value, ReversalStatus.SUBMITTED.value)


@dataclass(frozen=True, slots=True)
class AwaitingDecision:
    """A row only a person can settle, and why."""

    subject: str
    subject_id: int
    payout_id: int
    status: str
    amount_minor: int
    currency: str
    destination: str | None
    first_sent: datetime
    why: str


#: Why a row waits for a person (the first reason that holds, in this order).
WHY_KEY_FORGOTTEN = "first sent over 23 h ago: Stripe may have forgotten its key"
WHY_SAVED_500 = "Stripe replays a saved 500 for its key: no retry can settle it"
#: Counting the rows awaiting a decision stops here (the pager says "more than").
AWAITING_COUNT_CAP = 10_000


@dataclass(frozen=True, slots=True)
class AwaitingPage:
    """One page of :class:`AwaitingDecision` rows and how many there are in all."""

    rows: list[AwaitingDecision]
    total: int
    total_is_lower_bound: bool


def _why(row: Payout | PayoutReversal, now: datetime) -> str | None:
    """The row-at-a-time twin of the reason :func:`_awaiting` works out in SQL."""
    first = row.submitted_at or row.created_at
    if first < now - IDEMPOTENCY_WINDOW:
        return WHY_KEY_FORGOTTEN
    if is_saved_server_error(row.error_code):
        return WHY_SAVED_500
    return None


#: The two instants the awaiting rows are judged against, bound when the statement runs.
_STALE_BEFORE = "stale_before"
_FORGOTTEN_BEFORE = "forgotten_before"


def _awaiting(model: Any, payout: Any, subject: str) -> Select[Any]:
    """``model``'s rows no retry may settle, with no open proposal, as the page's columns.

    All in SQL (the filter, the reason and the open-proposal check), so a page of 50 is read
    with ``LIMIT``/``OFFSET`` and counted exactly: the same cost with 5 such rows or 5,000.
    """
    first_sent = func.coalesce(model.submitted_at, model.created_at)
    forgotten = first_sent < bindparam(_FORGOTTEN_BEFORE, type_=UTCDateTime())
    saved_500 = model.error_code == SAVED_SERVER_ERROR
    stale = or_(model.status == "unknown",
                and_(model.status == "submitted",
                     model.updated_at < bindparam(_STALE_BEFORE, type_=UTCDateTime())))
    proposed = select(SettlementDecision.id).where(
        SettlementDecision.status == DecisionStatus.OPEN, SettlementDecision.subject == subject,
        SettlementDecision.subject_id == model.id).exists()
    query = select(
        literal(subject, String(20)).label("subject"), model.id.label("subject_id"),
        payout.id.label("payout_id"), model.status.label("status"),
        model.amount_minor.label("amount_minor"), payout.currency.label("currency"),
        payout.stripe_account_id.label("destination"), first_sent.label("first_sent"),
        case((forgotten, WHY_KEY_FORGOTTEN), else_=WHY_SAVED_500).label("why"),
    ).where(stale, or_(forgotten, saved_500), ~proposed)
    if model is not payout:
        query = query.select_from(model).join(payout, payout.id == model.payout_id)
    return query


@cache
def _awaiting_union() -> Any:
    """Built once: building it (and its cache key) cost as much as running it."""
    return union_all(_awaiting(Payout, Payout, PAYOUT),
                     _awaiting(PayoutReversal, Payout, REVERSAL)).subquery("awaiting")


def awaiting_page(session: Session, *, operator: Operator, limit: int, offset: int = 0
                  ) -> AwaitingPage:
    """One page of the rows no retry may settle and with no open proposal (payouts, then
    reversals, oldest first), counted up to :data:`AWAITING_COUNT_CAP`."""
    authorize(operator, Action.VIEW_PAYOUTS, session=session)
    check_page(limit, offset, maximum=MAX_PAGE)
    now = utcnow()
    moments = {_STALE_BEFORE: now - STALE_SUBMITTED_AFTER,
               _FORGOTTEN_BEFORE: now - IDEMPOTENCY_WINDOW}
    union = _awaiting_union()
    total, at_least = count_capped(session, select(union.c.subject_id), cap=AWAITING_COUNT_CAP,
                                   params=moments)
    rows = [] if total == 0 else [
        AwaitingDecision(r.subject, r.subject_id, r.payout_id, r.status, r.amount_minor,
                         r.currency, r.destination, r.first_sent, r.why)
        for r in session.execute(select(union).order_by(
            union.c.subject, union.c.subject_id).limit(limit).offset(offset), moments)]
    return AwaitingPage(rows, total, at_least)


def awaiting_decision(session: Session, *, operator: Operator, limit: int = 200
                      ) -> list[AwaitingDecision]:
    """The first ``limit`` rows of :func:`awaiting_page`."""
    return awaiting_page(session, operator=operator, limit=limit).rows


def open_decisions(session: Session, *, operator: Operator) -> list[SettlementDecision]:
    """Proposals waiting for a second person."""
    authorize(operator, Action.VIEW_PAYOUTS, session=session)
    return list(session.scalars(select(SettlementDecision).where(
        SettlementDecision.status == DecisionStatus.OPEN).order_by(SettlementDecision.id)))


# ---- what Stripe says ---------------------------------------------------------------------------


def _meta(obj: dict[str, Any], key: str) -> str | None:
    metadata = obj.get("metadata") or {}
    value = metadata.get(key) if isinstance(metadata, dict) else None
    return str(value) if value else None


def _claims_payout(transfer: dict[str, Any], payout: Payout) -> bool:
    key = _meta(transfer, "ledger_key")
    if key is not None:
        return key == payout.idempotency_key
    return _meta(transfer, "payout_id") == str(payout.id)


def _stripe_claimants(gateway: StripeGateway, payout: Payout) -> list[dict[str, Any]]:
    if not payout.stripe_account_id:
        return []
    first = payout.submitted_at or payout.created_at
    since = int((first - timedelta(minutes=5)).timestamp())
    return [t for t in gateway.iter_transfers(destination=payout.stripe_account_id,
                                              created_gte=since) if _claims_payout(t, payout)]


def _reversal_claimants(gateway: StripeGateway, payout: Payout, reversal: PayoutReversal
                        ) -> list[dict[str, Any]]:
    if not payout.stripe_transfer_id:
        return []
    return [r for r in gateway.iter_transfer_reversals(payout.stripe_transfer_id)
            if _meta(r, "ledger_key") == reversal.idempotency_key
            or (_meta(r, "ledger_key") is None and _meta(r, "reversal_id") == str(reversal.id))]


def _retrieve_transfer(gateway: StripeGateway, transfer_id: str) -> dict[str, Any]:
    try:
        return gateway.retrieve_transfer(transfer_id).data
    except StripeRequestError as exc:
        if exc.http_status == 404 or exc.stripe_code == "resource_missing":
            raise ValidationError(f"Stripe has no transfer {transfer_id}.") from None
        raise


def _check_with_stripe(
    factory: sessionmaker[Session], gateway: StripeGateway, *, subject: str,
    subject_id: int, outcome: DecisionOutcome, stripe_object_id: str | None,
) -> None:
    """Refuse a decision Stripe contradicts (called with no transaction open)."""
    with factory() as session:
        if subject == PAYOUT:
            payout = session.get(Payout, subject_id)
            if payout is None:
                raise NotFoundError(f"Payout {subject_id} does not exist.")
            reversal = None
        else:
            reversal = get_reversal(session, reversal_id=subject_id)
            payout = session.get(Payout, reversal.payout_id)
            assert payout is not None
        if outcome == DecisionOutcome.PAID and subject == PAYOUT and stripe_object_id:
            other = session.scalars(select(Payout.id).where(
                Payout.stripe_transfer_id == stripe_object_id, Payout.id != payout.id)).first()
            if other is not None:
                raise ConflictError(f"Transfer {stripe_object_id} already settles payout {other}.")
    if reversal is None:
        if outcome == DecisionOutcome.PAID:
            assert stripe_object_id is not None
            transfer = _retrieve_transfer(gateway, stripe_object_id)
            problems = []
            if int(transfer["amount"]) != payout.amount_minor:
                problems.append(f"amount {transfer['amount']} (ledger {payout.amount_minor})")
            if str(transfer["currency"]).lower() != payout.currency:
                problems.append(f"currency {transfer['currency']} (ledger {payout.currency})")
            if transfer.get("destination") != payout.stripe_account_id:
                problems.append(f"destination {transfer.get('destination')} "
                                f"(ledger {payout.stripe_account_id})")
            if problems:
                raise ConflictError(f"Transfer {stripe_object_id} is not this payout: "
                                    + ", ".join(problems) + ".")
        else:
            claimants = _stripe_claimants(gateway, payout)
            if claimants:
                raise ConflictError(
                    f"Stripe has transfer {claimants[0]['id']} for payout {payout.id}: it was "
                    "paid. Decide 'paid' with that transfer instead.")
        return
    claimants = _reversal_claimants(gateway, payout, reversal)
    if outcome == DecisionOutcome.PAID:
        match = [r for r in claimants if r["id"] == stripe_object_id]
        if not match or int(match[0]["amount"]) != reversal.amount_minor:
            raise ConflictError(f"Stripe has no reversal {stripe_object_id} of this amount for "
                                f"reversal {reversal.id}.")
    elif claimants:
        raise ConflictError(f"Stripe has reversal {claimants[0]['id']} for reversal "
                            f"{reversal.id}: it was made. Decide 'made' with it instead.")


# ---- propose, confirm, withdraw --------------------------------------------------------------


def propose_decision(
    factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    subject: str, subject_id: int, outcome: DecisionOutcome | str,
    stripe_object_id: str | None, reason: str,
) -> SettlementDecision:
    """Propose how a row no retry may settle ended; a second operator must confirm it."""
    authorize_in(factory, operator, Action.DECIDE_SETTLEMENT,
              target=f"{subject}:{subject_id}")
    if subject not in (PAYOUT, REVERSAL):
        raise ValidationError("A decision is about a payout or a reversal.")
    try:
        kind = DecisionOutcome(outcome)
    except ValueError:
        raise ValidationError("The outcome is 'paid' or 'not_paid'.") from None
    text = (reason or "").strip()
    if not text or len(text) > MAX_REASON:
        raise ValidationError(f"A decision needs a reason of 1 to {MAX_REASON} characters.")
    object_id = (stripe_object_id or "").strip() or None
    prefix = "tr_" if subject == PAYOUT else "trr_"
    if kind == DecisionOutcome.PAID and (object_id is None or not object_id.startswith(prefix)):
        raise ValidationError(f"Name the Stripe object ({prefix}…) that settled it.")
    if kind == DecisionOutcome.NOT_PAID:
        object_id = None
    _check_needs_person(factory, subject=subject, subject_id=subject_id)
    _check_with_stripe(factory, gateway, subject=subject, subject_id=subject_id,
                       outcome=kind, stripe_object_id=object_id)
    try:
        with factory.begin() as session:
            payout_id = subject_id if subject == PAYOUT else get_reversal(
                session, reversal_id=subject_id).payout_id
            decision = SettlementDecision(
                subject=subject, subject_id=subject_id, payout_id=payout_id,
                outcome=kind.value, stripe_object_id=object_id, reason=text,
                status=DecisionStatus.OPEN.value, proposed_by=operator.username)
            session.add(decision)
            session.flush()
            audit.record(session, actor=operator, action="payout.decision_propose",
                         result=kind.value, target=f"{subject}:{subject_id}",
                         input={"decision_id": decision.id, "stripe_object": object_id,
                                "reason": text})
    except IntegrityError:
        raise ConflictError(f"A decision on {subject} {subject_id} is already proposed: confirm "
                            "or withdraw it first.") from None
    return decision


def _check_needs_person(factory: sessionmaker[Session], *, subject: str,
                        subject_id: int) -> None:
    now = utcnow()
    with factory() as session:
        row: Payout | PayoutReversal | None = (
            session.get(Payout, subject_id) if subject == PAYOUT
            else session.get(PayoutReversal, subject_id))
        if row is None:
            raise NotFoundError(f"{subject.capitalize()} {subject_id} does not exist.")
        unsettled = _UNSETTLED if subject == PAYOUT else _REVERSAL_UNSETTLED
        if row.status not in unsettled:
            raise ConflictError(f"{subject.capitalize()} {subject_id} is {row.status}: there is "
                                "nothing to decide.")
        if row.status == "submitted" and row.updated_at >= now - STALE_SUBMITTED_AFTER:
            raise ConflictError(f"{subject.capitalize()} {subject_id} is being sent right now.")
        if _why(row, now) is None:
            raise ConflictError(
                f"{subject.capitalize()} {subject_id} can still be settled by retrying with its "
                "key (or by reconciliation): a decision is only for rows no retry may settle.")


def confirm_decision(
    factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    decision_id: int,
) -> SettlementDecision:
    """A second operator confirms a proposal; only now the ledger changes."""
    authorize_in(factory, operator, Action.DECIDE_SETTLEMENT,
              target=f"decision:{decision_id}")
    with factory() as session:
        decision = session.get(SettlementDecision, decision_id)
        if decision is None:
            raise NotFoundError(f"Decision {decision_id} does not exist.")
    if decision.status != DecisionStatus.OPEN:
        raise ConflictError(f"Decision {decision_id} is {decision.status}.")
    if operator.is_same_person(decision.proposed_by):
        raise PermissionDeniedError(f"{operator.username} proposed decision {decision_id}: a "
                                    "second operator must confirm it.")
    outcome = DecisionOutcome(decision.outcome)
    _check_with_stripe(factory, gateway, subject=decision.subject,
                       subject_id=decision.subject_id, outcome=outcome,
                       stripe_object_id=decision.stripe_object_id)
    now = utcnow()
    with factory.begin() as session:
        claimed = rowcount(session.execute(
            update(SettlementDecision).where(SettlementDecision.id == decision_id,
                                             SettlementDecision.status == DecisionStatus.OPEN)
            .values(status=DecisionStatus.CONFIRMED.value, decided_by=operator.username,
                    decided_at=now).execution_options(synchronize_session=False)
        ))
        if not claimed:
            raise ConflictError(f"Decision {decision_id} was decided a moment ago.")
        applied = _apply(session, decision=decision, operator=operator, now=now)
        audit.record(session, actor=operator, action="payout.decision_confirm",
                     result=decision.outcome if applied else "already_settled",
                     target=f"{decision.subject}:{decision.subject_id}",
                     input={"decision_id": decision_id, "proposed_by": decision.proposed_by,
                            "stripe_object": decision.stripe_object_id,
                            "reason": decision.reason})
        confirmed = session.get(SettlementDecision, decision_id)
        assert confirmed is not None
        session.refresh(confirmed)
    logger.info("decision %s on %s %s confirmed by %s: %s", decision_id, decision.subject,
                decision.subject_id, operator.username, decision.outcome)
    return confirmed


def _apply(session: Session, *, decision: SettlementDecision, operator: Operator,
           now: datetime) -> bool:
    paid = decision.outcome == DecisionOutcome.PAID
    if decision.subject == PAYOUT:
        values: dict[str, Any] = {"updated_at": now, "completed_at": now}
        if paid:
            values |= {"status": PayoutStatus.PAID.value,
                       "stripe_transfer_id": decision.stripe_object_id,
                       "error_code": None, "error_message": None}
        else:
            values |= {"status": PayoutStatus.FAILED.value, "error_code": "decided_not_paid",
                       "error_message": f"Decided not paid by {decision.proposed_by} and "
                                        f"{operator.username}: {decision.reason}"[:2000]}
        return bool(rowcount(session.execute(
            update(Payout).where(Payout.id == decision.subject_id, Payout.status.in_(_UNSETTLED))
            .values(**values).execution_options(synchronize_session=False)
        )))
    if paid:
        assert decision.stripe_object_id is not None
        before = get_reversal(session, reversal_id=decision.subject_id).status
        row = settle_reversal(session, reversal_id=decision.subject_id,
                              stripe_reversal={"id": decision.stripe_object_id},
                              request_id=None, actor=operator, action="payout.reverse_decided",
                              from_statuses=(ReversalStatus.UNKNOWN, ReversalStatus.SUBMITTED))
        return row.status == ReversalStatus.SUCCEEDED and before != row.status
    moved = rowcount(session.execute(
        update(PayoutReversal).where(PayoutReversal.id == decision.subject_id,
                                     PayoutReversal.status.in_(_REVERSAL_UNSETTLED))
        .values(status=ReversalStatus.FAILED.value, error_code="decided_not_made",
                completed_at=now, updated_at=now).execution_options(synchronize_session=False)
    ))
    if moved:
        reversal = get_reversal(session, reversal_id=decision.subject_id)
        session.execute(
            update(Payout).where(Payout.id == reversal.payout_id)
            .values(amount_reversed_minor=Payout.amount_reversed_minor - reversal.amount_minor,
                    updated_at=now).execution_options(synchronize_session=False))
    return bool(moved)


def withdraw_decision(session: Session, *, operator: Operator, decision_id: int, reason: str
                      ) -> SettlementDecision:
    """Withdraw an open proposal (it was wrong, or Stripe's answer changed)."""
    authorize(operator, Action.DECIDE_SETTLEMENT, session=session,
              target=f"decision:{decision_id}")
    text = (reason or "").strip()
    if not text:
        raise ValidationError("Say why the proposal is withdrawn.")
    moved = rowcount(session.execute(
        update(SettlementDecision).where(SettlementDecision.id == decision_id,
                                         SettlementDecision.status == DecisionStatus.OPEN)
        .values(status=DecisionStatus.WITHDRAWN.value, decided_by=operator.username,
                decided_at=utcnow()).execution_options(synchronize_session=False)
    ))
    decision = session.get(SettlementDecision, decision_id)
    if decision is None:
        raise NotFoundError(f"Decision {decision_id} does not exist.")
    session.refresh(decision)
    if not moved:
        raise ConflictError(f"Decision {decision_id} is {decision.status}.")
    audit.record(session, actor=operator, action="payout.decision_withdraw", result="withdrawn",
                 target=f"{decision.subject}:{decision.subject_id}",
                 input={"decision_id": decision_id, "reason": text[:500]})
    return decision
