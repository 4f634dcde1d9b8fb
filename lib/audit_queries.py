"""Reading the audit log: filtered pages and exports. Nothing here (or anywhere) edits it.

Paging is server-side with a stable ``ORDER BY occurred_at DESC, id DESC``; the filters map to
indexed columns (``occurred_at``, ``actor``, ``action``). The ``input`` JSON is rendered as
compact text for tables and CSV: it is data to read, never markup.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from lib.errors import ValidationError
from lib.index_scan import distinct_by_seeks
from lib.models import AuditLog
from lib.paging import check_page, count_capped
from lib.roles import Action, Operator, authorize

MAX_PAGE = 500
MAX_EXPORT = 100_000
MAX_CHOICES = 500


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What the audit page filters on; None means "any". ``actor`` matches a part of the name."""

    actor: str | None = None
    action: str | None = None
    result: str | None = None
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    occurred_at: datetime
    actor: str
    actor_role: str | None
    action: str
    target: str | None
    result: str
    detail: str | None
    input: str
    idempotency_key: str | None
    stripe_request_id: str | None


@dataclass(frozen=True, slots=True)
class AuditPage:
    rows: list[AuditRow]
    total: int
    limit: int
    offset: int
    #: Counting stopped at :data:`COUNT_CAP`: "more than" ``total`` entries (issue 22).
    total_is_lower_bound: bool = False

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.rows) < self.total or self.total_is_lower_bound


#: Column order of the table and the CSV.
COLUMNS = ("id", "occurred_at", "actor", "actor_role", "action", "target", "result", "detail",
           "input", "idempotency_key", "stripe_request_id")


#: The filtered total is counted this far only (then shown as "more than").
COUNT_CAP = 10_000


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _where(statement: Select[Any], filters: AuditFilter) -> Select[Any]:
    if filters.actor:
        needle = f"%{_escape_like(filters.actor.strip().lower())}%"
        statement = statement.where(func.lower(AuditLog.actor).like(needle, escape="\\"))
    if filters.action:
        statement = statement.where(AuditLog.action == filters.action)
    if filters.result:
        statement = statement.where(AuditLog.result == filters.result)
    if filters.occurred_from is not None:
        statement = statement.where(AuditLog.occurred_at >= filters.occurred_from)
    if filters.occurred_to is not None:
        statement = statement.where(AuditLog.occurred_at < filters.occurred_to)
    return statement


def _row(entry: AuditLog) -> AuditRow:
    return AuditRow(
        id=entry.id, occurred_at=entry.occurred_at, actor=entry.actor,
        actor_role=entry.actor_role, action=entry.action, target=entry.target,
        result=entry.result, detail=entry.detail,
        input=json.dumps(entry.input or {}, sort_keys=True, ensure_ascii=False, default=str),
        idempotency_key=entry.idempotency_key, stripe_request_id=entry.stripe_request_id,
    )


def list_audit(
    session: Session, *, operator: Operator, filters: AuditFilter | None = None,
    limit: int = 50, offset: int = 0,
) -> AuditPage:
    """One page of audit entries, newest first, with the total for the filters."""
    authorize(operator, Action.VIEW_AUDIT_LOG, session=session)
    check_page(limit, offset, maximum=MAX_PAGE)
    chosen = filters or AuditFilter()
    # Counted up to a cap (issue 22): a month of a busy log is hundreds of thousands of entries,
    # and nobody pages that far; the exact number of a narrower filter is shown as it is.
    total, at_least = count_capped(session, _where(select(AuditLog.id), chosen), cap=COUNT_CAP)
    entries = session.scalars(
        _where(select(AuditLog), chosen)
        .order_by(AuditLog.occurred_at.desc(), AuditLog.id.desc())
        .limit(limit).offset(offset)
    )
    return AuditPage(rows=[_row(e) for e in entries], total=total, limit=limit,
                     offset=offset, total_is_lower_bound=at_least)


def export_audit(
    session: Session, *, operator: Operator, filters: AuditFilter | None = None
) -> list[dict[str, Any]]:
    """Every matching entry as a plain dict (oldest first), for ``lib.exports``."""
    authorize(operator, Action.VIEW_AUDIT_LOG, session=session)
    authorize(operator, Action.EXPORT, session=session)
    entries = session.scalars(
        _where(select(AuditLog), filters or AuditFilter())
        .order_by(AuditLog.occurred_at, AuditLog.id).limit(MAX_EXPORT)
    )
    return [asdict(_row(e)) for e in entries]


def distinct_values(session: Session, *, operator: Operator, column: str) -> list[str]:
    """The actions or results seen so far (for the filter pickers), sorted."""
    authorize(operator, Action.VIEW_AUDIT_LOG, session=session)
    columns = {"action": AuditLog.action, "result": AuditLog.result}
    if column not in columns:
        raise ValidationError(f"Cannot list distinct values of {column!r}.")
    chosen = columns[column]
    # A dozen index seeks instead of reading 1,000,000 entries.
    choices = distinct_by_seeks(chosen, name="choices")
    return list(session.scalars(
        select(choices.c.value).where(choices.c.value.is_not(None))
        .order_by(choices.c.value).limit(MAX_CHOICES)))
