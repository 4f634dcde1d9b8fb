"""Reading a summary by week: the database adds each ISO week's days up under its Monday, on
both backends, across a year's end and with the range cutting weeks in two."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

from sqlalchemy.orm import Session, sessionmaker

from lib.summaries.store import add, read

FIRST = date(2026, 12, 23)          # a Wednesday; the days run into 2027 (ISO week 53 and 1)


def test_weeks_are_added_up_under_their_monday(session_factory: sessionmaker[Session]) -> None:
    days = [FIRST + timedelta(days=i) for i in range(24)]
    with session_factory.begin() as session:
        add(session.connection(), {("test_weeks", day.isoformat(), key, "", ""): (i + 1, 10 * i)
                                   for i, day in enumerate(days) for key in ("a", "b")})
        add(session.connection(), {("other_kind", FIRST.isoformat(), "a", "", ""): (5, 0)})
    first, before = days[2], days[-3]           # a Friday, and cutting the last week too
    with session_factory() as session:
        rows = read(session, "test_weeks", group=("week", "k1"), first_day=first.isoformat(),
                    before_day=before.isoformat())
    expected: Counter[tuple[str, str]] = Counter()
    amounts: Counter[tuple[str, str]] = Counter()
    for i, day in enumerate(days):
        if first <= day < before:
            monday = (day - timedelta(days=day.weekday())).isoformat()
            for key in ("a", "b"):
                expected[(monday, key)] += i + 1
                amounts[(monday, key)] += 10 * i
    assert {(r.day, r.k1): r.n for r in rows} == dict(expected)
    assert {(r.day, r.k1): r.amount for r in rows} == dict(amounts)
    assert {r.day for r in rows} == {"2026-12-21", "2026-12-28", "2027-01-04", "2027-01-11"}
    assert all(date.fromisoformat(r.day).weekday() == 0 for r in rows)
