"""Exact totals over a time range: whole UTC days from a summary, partial days from the table.

A window such as "the last 30 days" starts and ends mid-day. The whole days inside it are read
from the summary (one row per key, whatever the volume); the two partial days at its ends are
counted from the source table's index, which costs one day's rows at most. The result is the
same number a ``COUNT`` over the whole range gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, literal_column, union_all
from sqlalchemy.orm import Session

from lib.summaries.keys import day_of


@dataclass(frozen=True, slots=True)
class Split:
    """``[start, end)`` as whole days ``[first_day, before_day)`` plus partial ``edges``.

    With no whole day inside, ``first_day`` is None and the range is one edge.
    """

    first_day: str | None
    before_day: str | None
    edges: list[tuple[datetime, datetime]] = field(default_factory=list)

    @property
    def has_days(self) -> bool:
        return self.first_day is not None


def _midnight(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), time(), tzinfo=UTC)


def split(start: datetime, end: datetime) -> Split:
    """Split ``[start, end)`` (aware datetimes) into whole UTC days and partial ends."""
    if end <= start:
        return Split(None, None, [])
    first_whole = _midnight(start)
    if first_whole < start:
        first_whole += timedelta(days=1)
    last_whole = _midnight(end)  # days before this one are whole if they start >= first_whole
    if first_whole >= last_whole:
        return Split(None, None, [(start, end)])
    edges = [(a, b) for a, b in ((start, first_whole), (last_whole, end)) if a < b]
    return Split(day_of(first_whole), day_of(last_whole), edges)


def count_many(session: Session, parts: Sequence[tuple[str, Select[Any]]]) -> dict[str, int]:
    """Several ``SELECT COUNT(...)``-like one-value queries in one round trip, by label.

    Each part yields a single aggregate (a count over an index range, usually a partial day).
    """
    if not parts:
        return {}
    tagged = [statement.add_columns(literal_column(f"'{label}'")) for label, statement in parts]
    statement = union_all(*tagged) if len(tagged) > 1 else tagged[0]
    return {str(label): int(value or 0) for value, label in session.execute(statement)}
