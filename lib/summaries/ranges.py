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
from decimal import Decimal
from typing import Any

from sqlalchemy import Result, Select, literal_column, union_all
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


def split(start: datetime | None, end: datetime | None) -> Split:
    """Split ``[start, end)`` (aware datetimes; None is unbounded) into whole UTC days and the
    partial days at its ends. An unbounded range has whole days on every day before ``end``
    (or after ``start``); ``first_day`` / ``before_day`` are then '' / '9999-12-31'."""
    if start is not None and end is not None and end <= start:
        return Split(None, None, [])
    edges: list[tuple[datetime, datetime]] = []
    first_whole = None
    if start is not None:
        first_whole = _midnight(start)
        if first_whole < start:
            first_whole += timedelta(days=1)
    last_whole = _midnight(end) if end is not None else None
    if (start is not None and end is not None and first_whole is not None
            and last_whole is not None and first_whole >= last_whole):
        return Split(None, None, [(start, end)])
    if start is not None and first_whole is not None and start < first_whole:
        edges.append((start, first_whole))
    if end is not None and last_whole is not None and last_whole < end:
        edges.append((last_whole, end))
    # '0000-00-01' keeps undated ('') rows out of a dated range; '9999-12-31' bounds nothing.
    return Split(day_of(first_whole) if first_whole else "0000-00-01",
                 day_of(last_whole) if last_whole else "9999-12-31", edges)


def count_many(session: Session, parts: Sequence[tuple[str, Select[Any]]]) -> dict[str, int]:
    """Several ``SELECT COUNT(...)``-like one-value queries in one round trip, by label.

    Each part yields a single aggregate (a count over an index range, usually a partial day).
    """
    if not parts:
        return {}
    tagged = [statement.add_columns(literal_column(f"'{label}'")) for label, statement in parts]
    statement = union_all(*tagged) if len(tagged) > 1 else tagged[0]
    # The aggregate (NULL for an empty SUM; NUMERIC on PostgreSQL), then the label.
    counted: Result[int | Decimal | None, str] = session.execute(statement)
    return {str(label): int(value or 0) for value, label in counted}
