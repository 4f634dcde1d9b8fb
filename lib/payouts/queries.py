"""Reading the ledger for the dashboard: filtered pages, totals per currency, export rows.

Paging is server-side (``LIMIT``/``OFFSET`` with a stable ``ORDER BY created_at DESC, id DESC``),
so a page of 50 never loads 100,000 rows. Results are plain dataclasses or dicts the UI turns
into a DataFrame or CSV; amounts stay integer minor units plus a display string from
``lib.money``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, TypeVarTuple

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from lib.db import utcnow
from lib.errors import ValidationError
from lib.models import AuditLog, Freelancer, Payout, PayoutReversal, PayoutStatus, ReversalStatus
from lib.money import minor_to_display, normalise_currency
from lib.paging import check_page, count_capped
from lib.payouts.execution import retry_may_settle
from lib.payouts.reversal import reversed_amounts
from lib.roles import Action, Operator, authorize
from lib.summaries.ranges import split
from lib.summaries.store import Ask, read_many

MAX_PAGE = 500
MAX_EXPORT = 100_000
#: The column types :func:`_where` passes through unchanged.
_Ts = TypeVarTuple("_Ts")


@dataclass(frozen=True, slots=True)
class PayoutFilter:
    """What the ledger page filters on; None means "any"."""

    status: str | None = None
    currency: str | None = None
    freelancer_id: int | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    payout_type: str | None = None


@dataclass(frozen=True, slots=True)
class PayoutRow:
    id: int
    created_at: datetime
    freelancer_id: int
    freelancer_name: str
    freelancer_email: str
    amount_minor: int
    currency: str
    amount: str
    status: str
    payout_type: str
    description: str
    requested_by: str
    approved_by: str | None
    stripe_transfer_id: str | None
    error_code: str | None
    error_message: str | None
    amount_reversed_minor: int
    completed_at: datetime | None


@dataclass(frozen=True, slots=True)
class PayoutPage:
    rows: list[PayoutRow]
    total: int
    limit: int
    offset: int

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.rows) < self.total


@dataclass(frozen=True, slots=True)
class CurrencyTotal:
    """One (currency, status) cell of the ledger; ``net`` is paid minus what reversals took back."""

    currency: str
    status: str
    count: int
    amount_minor: int
    amount: str
    reversed_minor: int = 0
    reversed: str = ""
    net_minor: int = 0
    net: str = ""


@dataclass(frozen=True, slots=True)
class ExportRows:
    """The rows of an export and whether the cap cut it (say so, never stop silently)."""

    rows: list[dict[str, Any]]
    matching: int
    cap: int

    @property
    def truncated(self) -> bool:
        return self.matching > len(self.rows)

    def notice(self) -> str | None:
        """What a person must be told when the export is not the whole ledger."""
        if not self.truncated:
            return None
        return (f"The export holds the oldest {len(self.rows):,} of {self.matching:,} matching "
                "payouts: narrow the dates to export the rest.")


def _where(statement: Select[*_Ts], filters: PayoutFilter) -> Select[*_Ts]:
    if filters.status is not None:
        if filters.status not in PayoutStatus._value2member_map_:
            raise ValidationError(f"Unknown payout status {filters.status!r}.")
        statement = statement.where(Payout.status == filters.status)
    if filters.currency is not None:
        statement = statement.where(Payout.currency == normalise_currency(filters.currency))
    if filters.freelancer_id is not None:
        statement = statement.where(Payout.freelancer_id == filters.freelancer_id)
    if filters.created_from is not None:
        statement = statement.where(Payout.created_at >= filters.created_from)
    if filters.created_to is not None:
        statement = statement.where(Payout.created_at < filters.created_to)
    if filters.payout_type is not None:
        statement = statement.where(Payout.payout_type == filters.payout_type)
    return statement


def _row(payout: Payout, freelancer: Freelancer) -> PayoutRow:
    return PayoutRow(
        id=payout.id, created_at=payout.created_at, freelancer_id=payout.freelancer_id,
        freelancer_name=freelancer.name, freelancer_email=freelancer.email,
        amount_minor=payout.amount_minor, currency=payout.currency,
        amount=minor_to_display(payout.amount_minor, payout.currency), status=payout.status,
        payout_type=payout.payout_type, description=payout.description,
        requested_by=payout.requested_by, approved_by=payout.approved_by,
        stripe_transfer_id=payout.stripe_transfer_id, error_code=payout.error_code,
        error_message=payout.error_message, amount_reversed_minor=payout.amount_reversed_minor,
        completed_at=payout.completed_at,
    )


@dataclass(frozen=True, slots=True)
class RetryChoices:
    """The Payouts page's unknown outcomes: the newest a retry may settle, and how many."""

    rows: list[PayoutRow]
    #: Every payout with an unknown outcome.
    unknown: int
    #: Those a retry with their key may settle (the rest wait for a person's decision).
    retryable: int


def retry_choices(session: Session, *, operator: Operator, limit: int) -> RetryChoices:
    """The newest ``limit`` unknown payouts a retry may settle (within Stripe's key window, no
    saved 500), newest first, and the counts of both kinds: an expired row is not offered,
    since :func:`~lib.payouts.execution.execute_payout` would refuse it."""
    authorize(operator, Action.VIEW_PAYOUTS, session=session)
    check_page(limit, 0)
    may_settle = retry_may_settle(utcnow())
    unknown = Payout.status == PayoutStatus.UNKNOWN.value
    counted = session.execute(
        select(func.count(), func.coalesce(func.sum(case((may_settle, 1), else_=0)), 0))
        .select_from(Payout).where(unknown)).one()
    total, retryable = int(counted[0]), int(counted[1])
    rows = [] if not retryable else [_row(p, f) for p, f in session.execute(
        _joined().where(unknown, may_settle)
        .order_by(Payout.created_at.desc(), Payout.id.desc()).limit(limit))]
    return RetryChoices(rows, total, retryable)


def _joined() -> Select[Payout, Freelancer]:
    return select(Payout, Freelancer).join(Freelancer, Freelancer.id == Payout.freelancer_id)


Cell = tuple[str, str]  # currency, status


def _cells(session: Session, filters: PayoutFilter, *,
           kinds: tuple[str, ...] = ("payouts",)) -> dict[str, dict[Cell, tuple[int, int]]] | None:
    """Count and amount per (currency, status) for the filters, from summaries by payout day ×
    currency × status (issue 22), per kind: ``payouts`` (the ledger rows and their amounts) and
    ``reversed`` (their succeeded reversals and what those took back). Whole days come from the
    summary rows (every kind in one statement), the partial days at the range's ends from the
    ``created_at`` index. None when a filter has no summary (a freelancer, a payout type)."""
    if filters.freelancer_id is not None or filters.payout_type is not None:
        return None
    where: dict[str, tuple[str, ...]] = {}
    if filters.status is not None:
        _where(select(Payout.id), PayoutFilter(status=filters.status))  # refuses an unknown one
        where["k2"] = (filters.status,)
    if filters.currency is not None:
        where["k1"] = (normalise_currency(filters.currency),)
    window = split(filters.created_from, filters.created_to)
    found: dict[str, dict[Cell, tuple[int, int]]] = {kind: {} for kind in kinds}

    def add(kind: str, cell: Cell, count: int, amount: int) -> None:
        n, total = found[kind].get(cell, (0, 0))
        found[kind][cell] = (n + count, total + amount)

    if window.has_days:
        rows = read_many(session, [
            Ask(kind, kind, first_day=window.first_day, before_day=window.before_day,
                group=("k1", "k2"), where=where) for kind in kinds])
        for kind in kinds:
            for row in rows[kind]:
                add(kind, (row.k1, row.k2), row.n, row.amount)
    for start, end in window.edges:
        edge = PayoutFilter(status=filters.status, currency=filters.currency,
                            created_from=start, created_to=end)
        for kind in kinds:
            for currency, status, n, amount in session.execute(
                    _where(_cell_totals(kind), edge).group_by(Payout.currency, Payout.status)):
                add(kind, (str(currency), str(status)), int(n), int(amount))
    return {kind: {cell: value for cell, value in cells.items() if value[0]}
            for kind, cells in found.items()}


def _cell_totals(kind: str) -> Select[str, str, int, int]:
    """What a summary of ``kind`` holds, counted from the tables (to be filtered and grouped)."""
    if kind == "reversed":
        return (select(Payout.currency, Payout.status, func.count(),
                       func.coalesce(func.sum(PayoutReversal.amount_minor), 0))
                .join(PayoutReversal, PayoutReversal.payout_id == Payout.id)
                .where(PayoutReversal.status == ReversalStatus.SUCCEEDED))
    return select(Payout.currency, Payout.status, func.count(),
                  func.coalesce(func.sum(Payout.amount_minor), 0))


def list_payouts(
    session: Session, *, operator: Operator, filters: PayoutFilter | None = None,
    limit: int = 50, offset: int = 0,
) -> PayoutPage:
    """One page of the ledger, newest first, with the total count for the filters."""
    authorize(operator, Action.VIEW_PAYOUTS, session=session)
    check_page(limit, offset, maximum=MAX_PAGE)
    chosen = filters or PayoutFilter()
    summarised = _cells(session, chosen)
    cells = summarised["payouts"] if summarised is not None else None
    total = (sum(n for n, _ in cells.values()) if cells is not None else
             session.scalar(_where(select(func.count()).select_from(Payout), chosen)) or 0)
    statement = _where(_joined(), chosen).order_by(
        Payout.created_at.desc(), Payout.id.desc()
    ).limit(limit).offset(offset)
    rows = [_row(p, f) for p, f in session.execute(statement)]
    return PayoutPage(rows=rows, total=int(total), limit=limit, offset=offset)


def totals_by_currency(
    session: Session, *, operator: Operator, filters: PayoutFilter | None = None
) -> list[CurrencyTotal]:
    """Count and sum per (currency, status) for the filters: never adds across currencies.

    Each cell also carries what succeeded reversals took back from its payouts and the net
    (paid minus reversed): the money that really reached freelancers.
    """
    authorize(operator, Action.VIEW_PAYOUTS, session=session)
    chosen = filters or PayoutFilter()
    summarised = _cells(session, chosen, kinds=("payouts", "reversed"))
    if summarised is not None:
        grouped: list[tuple[str, str, int, int]] = [
            (c, s, n, amount) for (c, s), (n, amount) in sorted(summarised["payouts"].items())]
    else:
        grouped = [(str(c), str(s), int(n), int(amount or 0)) for c, s, n, amount in
                   session.execute(_where(_cell_totals("payouts"), chosen)
                                   .group_by(Payout.currency, Payout.status)
                                   .order_by(Payout.currency, Payout.status))]
    if summarised is not None:
        reversed_by_cell = {cell: amount for cell, (_, amount) in summarised["reversed"].items()}
    else:
        reversed_by_cell = {
            (str(c), str(s)): int(total) for c, s, _, total in session.execute(
                _where(_cell_totals("reversed"), chosen).group_by(Payout.currency,
                                                                  Payout.status))}
    cells = []
    for c, s, n, total in grouped:
        amount = int(total or 0)
        taken = reversed_by_cell.get((c, s), 0)
        cells.append(CurrencyTotal(
            currency=c, status=s, count=int(n), amount_minor=amount,
            amount=minor_to_display(amount, c), reversed_minor=taken,
            reversed=minor_to_display(taken, c), net_minor=amount - taken,
            net=minor_to_display(amount - taken, c)))
    return cells


def export_rows(
    session: Session, *, operator: Operator, filters: PayoutFilter | None = None,
    cap: int = MAX_EXPORT,
) -> ExportRows:
    """Matching rows as plain dicts (CSV/DataFrame ready), oldest first, at most ``cap``.

    The result says how many rows matched, so a cut export is announced, never silent. Each row
    carries what succeeded reversals took back and the net.
    """
    authorize(operator, Action.EXPORT, session=session)
    chosen = filters or PayoutFilter()
    matching = int(session.scalar(_where(select(func.count()).select_from(Payout), chosen)) or 0)
    statement = _where(_joined(), chosen).order_by(Payout.created_at, Payout.id).limit(cap)
    rows = [(p, f) for p, f in session.execute(statement)]
    taken = reversed_amounts(session, [p.id for p, _ in rows])
    out = []
    for payout, freelancer in rows:
        row = asdict(_row(payout, freelancer))
        row["reversed_minor"] = taken.get(payout.id, 0)
        row["net_minor"] = payout.amount_minor - row["reversed_minor"]
        row["net"] = minor_to_display(row["net_minor"], payout.currency)
        out.append(row)
    return ExportRows(rows=out, matching=matching, cap=cap)


@dataclass(frozen=True, slots=True)
class ReversalRow:
    """A reversal with its payout's freelancer and currency, as the Reversals page lists it."""

    id: int
    payout_id: int
    freelancer_name: str
    amount: str
    currency: str
    amount_minor: int
    status: str
    reason: str
    requested_by: str
    approved_by: str | None
    stripe_reversal_id: str | None
    error_message: str | None
    created_at: datetime


#: Counting the Reversals page's rows stops here ("more than 10,000"): a count over every
#: reversal would grow with them (issue 22).
REVERSAL_COUNT_CAP = 10_000


@dataclass(frozen=True, slots=True)
class ReversalPage:
    rows: list[ReversalRow]
    #: Every reversal, or :data:`REVERSAL_COUNT_CAP` when ``total_is_lower_bound``.
    total: int
    total_is_lower_bound: bool = False


_ReversalSelect = Select[PayoutReversal, Payout, Freelancer]


def _reversals(statuses: tuple[str, ...] | None) -> _ReversalSelect:
    statement = (
        select(PayoutReversal, Payout, Freelancer)
        .join(Payout, Payout.id == PayoutReversal.payout_id)
        .join(Freelancer, Freelancer.id == Payout.freelancer_id)
        .order_by(PayoutReversal.id.desc())
    )
    if statuses is not None:
        unknown = [s for s in statuses if s not in ReversalStatus._value2member_map_]
        if unknown or not statuses:
            raise ValidationError(f"Unknown reversal status {unknown[0] if unknown else ''!r}.")
        statement = statement.where(PayoutReversal.status.in_(statuses))
    return statement


def _reversal_rows(session: Session, statement: _ReversalSelect) -> list[ReversalRow]:
    return [
        ReversalRow(id=r.id, payout_id=p.id, freelancer_name=f.name,
                    amount=minor_to_display(r.amount_minor, p.currency), currency=p.currency,
                    amount_minor=r.amount_minor, status=r.status, reason=r.reason,
                    requested_by=r.requested_by, approved_by=r.approved_by,
                    stripe_reversal_id=r.stripe_reversal_id, error_message=r.error_message,
                    created_at=r.created_at)
        for r, p, f in session.execute(statement)
    ]


def list_reversals(
    session: Session, *, operator: Operator, statuses: tuple[str, ...] | None = None,
    limit: int = 200,
) -> list[ReversalRow]:
    """The newest reversals (optionally of any of ``statuses``), newest first."""
    authorize(operator, Action.VIEW_PAYOUTS, session=session)
    check_page(limit, 0, maximum=MAX_PAGE)
    return _reversal_rows(session, _reversals(statuses).limit(limit))


def reversal_page(session: Session, *, operator: Operator, limit: int,
                  offset: int = 0) -> ReversalPage:
    """One page of every reversal, newest first, with their number counted up to
    :data:`REVERSAL_COUNT_CAP` (the same cost with 30 reversals or 30,000)."""
    authorize(operator, Action.VIEW_PAYOUTS, session=session)
    check_page(limit, offset, maximum=MAX_PAGE)
    total, at_least = count_capped(session, select(PayoutReversal.id), cap=REVERSAL_COUNT_CAP)
    rows = _reversal_rows(session, _reversals(None).limit(limit).offset(offset))
    return ReversalPage(rows, total, at_least)


@dataclass(frozen=True, slots=True)
class DriftRow:
    """Stripe moved money the ledger says it did not (from a transfer event), to be looked at."""

    occurred_at: datetime
    payout_id: int | None
    transfer: str | None
    ledger_status: str | None
    detail: str | None


def recent_drift(session: Session, *, operator: Operator, limit: int = 50) -> list[DriftRow]:
    """The newest drift reports (``payout.drift`` audit entries written by transfer events)."""
    from lib.payouts.webhooks import DRIFT_ACTION

    authorize(operator, Action.VIEW_PAYOUTS, session=session)
    found = []
    for entry in session.scalars(select(AuditLog).where(AuditLog.action == DRIFT_ACTION)
                                 .order_by(AuditLog.id.desc()).limit(limit)):
        target = entry.target or ""
        payout_id = int(target.split(":", 1)[1]) if target.startswith("payout:") and \
            target.split(":", 1)[1].isdigit() else None
        data = entry.input or {}
        found.append(DriftRow(occurred_at=entry.occurred_at, payout_id=payout_id,
                              transfer=data.get("transfer"),
                              ledger_status=data.get("ledger_status"), detail=entry.detail))
    return found
