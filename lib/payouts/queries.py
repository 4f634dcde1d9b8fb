"""Reading the ledger for the dashboard: filtered pages, totals per currency, export rows.

Paging is server-side (``LIMIT``/``OFFSET`` with a stable ``ORDER BY created_at DESC, id DESC``),
so a page of 50 never loads 100,000 rows. Results are plain dataclasses or dicts the UI turns
into a DataFrame or CSV; amounts stay integer minor units plus a display string from
``lib.money``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from lib.errors import ValidationError
from lib.models import Freelancer, Payout, PayoutStatus
from lib.money import minor_to_display, normalise_currency
from lib.paging import check_page
from lib.roles import Action, Operator, authorize

MAX_PAGE = 500
MAX_EXPORT = 100_000


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
    currency: str
    status: str
    count: int
    amount_minor: int
    amount: str


def _where(statement: Select[Any], filters: PayoutFilter) -> Select[Any]:
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


def _joined() -> Select[Any]:
    return select(Payout, Freelancer).join(Freelancer, Freelancer.id == Payout.freelancer_id)


def list_payouts(
    session: Session, *, operator: Operator, filters: PayoutFilter | None = None,
    limit: int = 50, offset: int = 0,
) -> PayoutPage:
    """One page of the ledger, newest first, with the total count for the filters."""
    authorize(operator, Action.VIEW_PAYOUTS, session=session)
    check_page(limit, offset, maximum=MAX_PAGE)
    chosen = filters or PayoutFilter()
    total = session.scalar(_where(select(func.count()).select_from(Payout), chosen)) or 0
    statement = _where(_joined(), chosen).order_by(
        Payout.created_at.desc(), Payout.id.desc()
    ).limit(limit).offset(offset)
    rows = [_row(p, f) for p, f in session.execute(statement)]
    return PayoutPage(rows=rows, total=int(total), limit=limit, offset=offset)


def totals_by_currency(
    session: Session, *, operator: Operator, filters: PayoutFilter | None = None
) -> list[CurrencyTotal]:
    """Count and sum per (currency, status) for the filters: never adds across currencies."""
    authorize(operator, Action.VIEW_PAYOUTS, session=session)
    statement = _where(
        select(Payout.currency, Payout.status, func.count(), func.sum(Payout.amount_minor)),
        filters or PayoutFilter(),
    ).group_by(Payout.currency, Payout.status).order_by(Payout.currency, Payout.status)
    return [
        CurrencyTotal(currency=c, status=s, count=int(n), amount_minor=int(total or 0),
                      amount=minor_to_display(int(total or 0), c))
        for c, s, n, total in session.execute(statement)
    ]


def export_rows(
    session: Session, *, operator: Operator, filters: PayoutFilter | None = None
) -> list[dict[str, Any]]:
    """Every matching row as a plain dict (CSV/DataFrame ready), oldest first."""
    authorize(operator, Action.EXPORT, session=session)
    statement = _where(_joined(), filters or PayoutFilter()).order_by(
        Payout.created_at, Payout.id
    ).limit(MAX_EXPORT)
    return [asdict(_row(p, f)) for p, f in session.execute(statement)]
