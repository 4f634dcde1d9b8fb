"""Exact totals over a time range: whole UTC days from a summary, partial days from the table.

A window such as "the last 30 days" starts and ends mid-day. The whole days inside it are read
from the summary (one row per key, whatever the volume); the two partial days at its ends are
counted from the source table's index, which costs one day's rows at most. The result is the
same number a ``COUNT`` over the whole range gives.

Where a day's rows are too many to count on every read, a kind kept per hour as well lets the
partial days be whole hours too (:func:`pieces`): then at most half an hour of rows is counted
at each end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Result, Select, literal_column, union_all
from sqlalchemy.orm import Session

from lib.summaries.keys import day_of, hour_of

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


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
    #: What a "day" of this split is: a UTC day (keys ``YYYY-MM-DD``) or hour (``YYYYMMDDHH``).
    unit: timedelta = DAY

    @property
    def whole_days(self) -> frozenset[str]:
        """The days outside ``[first_day, before_day)`` read whole from the summary."""
        return frozenset(day for day, _, _ in self.taken_back)

    @property
    def has_days(self) -> bool:
        return self.first_day is not None


def _floor(moment: datetime, unit: timedelta = DAY) -> datetime:
    """The start of ``moment``'s UTC day (or hour)."""
    start = datetime.combine(moment.astimezone(UTC).date(), time(), tzinfo=UTC)
    if unit == DAY:
        return start
    return start + (moment.astimezone(UTC) - start) // unit * unit


def key_of(moment: datetime, unit: timedelta = DAY) -> str:
    """The summaries' key of the UTC day (or hour) starting at ``moment``."""
    return day_of(moment) if unit == DAY else hour_of(moment)


def split(start: datetime | None, end: datetime | None, *, unit: timedelta = DAY) -> Split:
    """Split ``[start, end)`` (aware datetimes; None is unbounded) into whole UTC days (or
    hours, with ``unit=HOUR``) and the partial ones at its ends. An unbounded range has whole
    days on every day before ``end`` (or after ``start``); ``first_day`` / ``before_day`` are
    then '0000-00-01' / '9999-12-31'."""
    if unit not in (DAY, HOUR):
        raise ValueError("a split's unit is a day or an hour")
    if start is not None and end is not None and end <= start:
        return Split(None, None, [], unit=unit)
    edges: list[tuple[datetime, datetime]] = []
    first_whole = None
    if start is not None:
        first_whole = _floor(start, unit)
        if first_whole < start:
            first_whole += unit
    last_whole = _floor(end, unit) if end is not None else None
    if (start is not None and end is not None and first_whole is not None
            and last_whole is not None and first_whole >= last_whole):
        return Split(None, None, [(start, end)], unit=unit)
    if start is not None and first_whole is not None and start < first_whole:
        edges.append((start, first_whole))
    if end is not None and last_whole is not None and last_whole < end:
        edges.append((last_whole, end))
    # '0000-00-01' keeps undated ('') rows out of a dated range; '9999-12-31' bounds nothing.
    return Split(key_of(first_whole, unit) if first_whole else "0000-00-01",
                 key_of(last_whole, unit) if last_whole else "9999-12-31", edges, unit=unit)


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
    unit = window.unit
    for start, end in window.edges:
        day_start = _floor(start, unit)
        day_end = day_start + unit
        if start != day_start and end != day_end:  # inside one day: the rest is two pieces
            edges.append((start, end))
            continue
        rest = (day_start, start) if start != day_start else (end, day_end)
        if _rows_before(*rest, now) < _rows_before(start, end, now):
            taken_back.append((key_of(day_start, unit), *rest))
        else:
            edges.append((start, end))
    return Split(window.first_day, window.before_day, edges, taken_back, unit)


@dataclass(frozen=True, slots=True)
class Pieces:
    """``[start, end)`` as signed pieces whose counts add up to the range's exact count:
    ranges of whole days read from a daily kind, ranges of whole hours read from an hourly
    kind, and short ranges of rows counted from the table.

    Each summary piece is ``(sign, first key, before key)``; each row piece
    ``(sign, start, end)``. A day (or hour) read whole and its rest taken back is a +1
    summary piece and a -1 row piece.
    """

    days: tuple[tuple[int, str, str], ...]
    hours: tuple[tuple[int, str, str], ...]
    rows: tuple[tuple[int, datetime, datetime], ...]


def _summary_pieces(window: Split, sign: int) -> list[tuple[int, str, str]]:
    found = []
    if window.first_day is not None and window.before_day is not None:
        found.append((sign, window.first_day, window.before_day))
    for key, start, _ in window.taken_back:
        found.append((sign, key, key_of(_floor(start, window.unit) + window.unit, window.unit)))
    return found


def pieces(start: datetime, end: datetime, *, now: datetime | None = None) -> Pieces:
    """``[start, end)`` as whole days, whole hours of its partial days, and the partial hours'
    rows, each the cheaper way (:func:`cheapest`, with ``now`` as there): at most half an hour
    of rows at each end (or up to ``now`` within the hour), whatever the time of day."""
    window = cheapest(split(start, end), now=now)
    days = _summary_pieces(window, 1)
    hours: list[tuple[int, str, str]] = []
    rows: list[tuple[int, datetime, datetime]] = []
    partial = [(1, s, e) for s, e in window.edges]
    partial += [(-1, s, e) for _, s, e in window.taken_back]
    for sign, part_start, part_end in partial:
        within = cheapest(split(part_start, part_end, unit=HOUR), now=now)
        hours += _summary_pieces(within, sign)
        rows += [(sign, s, e) for s, e in within.edges]
        rows += [(-sign, s, e) for _, s, e in within.taken_back]
    return Pieces(tuple(days), tuple(hours), tuple(rows))


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
