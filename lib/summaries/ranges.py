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
    #: Partial days counted as their whole day from the summary minus the rest of the day
    #: (``(day, start, end)``: add ``day``'s summary row, take back ``[start, end)``), when
    #: the rest holds fewer rows than the part (:func:`cheapest`).
    taken_back: list[tuple[str, datetime, datetime]] = field(default_factory=list)

    @property
    def whole_days(self) -> frozenset[str]:
        """The days outside ``[first_day, before_day)`` read whole from the summary."""
        return frozenset(day for day, _, _ in self.taken_back)

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


def _rows_before(start: datetime, end: datetime, now: datetime | None) -> timedelta:
    """How much of ``[start, end)`` lies before ``now`` (all of it without ``now``): a proxy
    for its rows in a table whose rows are stamped when they happen (nothing, or next to
    nothing, is dated in the future)."""
    return max(timedelta(0), (end if now is None else min(end, now)) - start)


def cheapest(window: Split, *, now: datetime | None = None) -> Split:
    """``window`` with each partial day counted the cheaper way: the part itself, or its whole
    day from the summary minus the rest of the day, whichever is shorter.

    With ``now``, for columns stamped when the row happens (attempts started, freelancers
    connected, payouts created), only the time before ``now`` counts: the rest of today is
    empty, so a window ending now reads today whole; a day cut at 18:00 counts its last 6
    hours. Rows dated in the future are still counted exactly, just not cheaply. Without it
    (deadlines, which lie ahead), the shorter piece of the day.
    """
    edges: list[tuple[datetime, datetime]] = []
    taken_back = list(window.taken_back)
    for start, end in window.edges:
        day_start = _midnight(start)
        day_end = day_start + timedelta(days=1)
        if start != day_start and end != day_end:  # inside one day: the rest is two pieces
            edges.append((start, end))
            continue
        rest = (day_start, start) if start != day_start else (end, day_end)
        if _rows_before(*rest, now) < _rows_before(start, end, now):
            taken_back.append((day_of(day_start), *rest))
        else:
            edges.append((start, end))
    return Split(window.first_day, window.before_day, edges, taken_back)


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
