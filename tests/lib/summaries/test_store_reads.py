"""Reading summaries: one statement per shape of read, its values bound at execution, so the
same page asking for other days, keys or values reads exactly those (and builds nothing)."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from lib.summaries import store
from lib.summaries.store import Ask, add, read_many

DAYS = ("2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04")


def _plant(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        add(session.connection(), {("test_reads", day, key, "x", ""): (i + 1, 0)
                                   for i, day in enumerate(DAYS) for key in ("a", "b", "c")})


def _asks(first: str, before: str, keys: tuple[str, ...]) -> list[Ask]:
    return [Ask("picked", "test_reads", first_day=first, before_day=before, group=("day", "k1"),
                where={"k1": keys}),
            Ask("total", "test_reads", group=("k2",))]


def test_the_same_shape_reads_other_values_with_the_statement_it_built(
    session_factory: sessionmaker[Session],
) -> None:
    _plant(session_factory)
    store._statement.cache_clear()
    with session_factory() as session:
        first = read_many(session, _asks(DAYS[0], DAYS[2], ("a",)))
        again = read_many(session, _asks(DAYS[1], DAYS[3], ("b", "c")))
        none = read_many(session, _asks(DAYS[1], DAYS[3], ()))
    assert [(r.day, r.k1, r.n) for r in first["picked"]] == [(DAYS[0], "a", 1), (DAYS[1], "a", 2)]
    assert [(r.day, r.k1, r.n) for r in again["picked"]] == [
        (DAYS[1], "b", 2), (DAYS[1], "c", 2), (DAYS[2], "b", 3), (DAYS[2], "c", 3)]
    assert none["picked"] == [] and [r.n for r in none["total"]] == [3 * (1 + 2 + 3 + 4)]
    info = store._statement.cache_info()
    assert (info.misses, info.hits) == (1, 2)          # built once, reused twice


def test_labels_are_plain_and_unique() -> None:
    with pytest.raises(ValueError, match="identifiers"):
        read_many(None, [Ask("not plain", "test_reads")])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unique"):
        read_many(None, [Ask("same", "a"), Ask("same", "b")])  # type: ignore[arg-type]
