"""Reading and adding to the summaries: the one place that knows counts and deltas apart.

A summary's value is its :class:`~lib.models.SummaryCount` row plus any pending
:class:`~lib.models.SummaryDelta` rows (PostgreSQL's writers add deltas; the worker folds them
in). Every read here adds both in one statement, so it sees one consistent snapshot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import Connection, and_, func, insert, literal_column, select, union_all
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from lib.models import SummaryCount, SummaryDelta

Key = tuple[str, str, str, str, str]  # kind, day, k1, k2, k3
_COUNTS = SummaryCount.__table__
_DELTAS = SummaryDelta.__table__


@dataclass(frozen=True, slots=True)
class SummaryRow:
    day: str
    k1: str
    k2: str
    k3: str
    n: int
    amount: int

    @property
    def date(self) -> date | None:
        return date.fromisoformat(self.day) if self.day else None


def day_of(moment: datetime | date | None) -> str:
    """The summaries' day text for a timestamp (its UTC date) or a date; '' for none."""
    if moment is None:
        return ""
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).strftime("%Y-%m-%d")
    return moment.isoformat()


def add(connection: Connection, changes: Mapping[Key, tuple[int, int]]) -> None:
    """Add signed ``(n, amount)`` changes, in the caller's transaction.

    SQLite has one writer at a time, so it adds to the counts directly. PostgreSQL's concurrent
    writers each insert deltas instead of updating a shared row (no waits, no deadlocks).
    """
    rows = [{"kind": k[0], "day": k[1], "k1": k[2], "k2": k[3], "k3": k[4], "n": n, "amount": a}
            for k, (n, a) in sorted(changes.items()) if n or a]
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        connection.execute(insert(_DELTAS), rows)
        return
    statement = sqlite_insert(_COUNTS)
    connection.execute(statement.on_conflict_do_update(
        index_elements=["kind", "day", "k1", "k2", "k3"],
        set_={"n": _COUNTS.c.n + statement.excluded.n,
              "amount": _COUNTS.c.amount + statement.excluded.amount}), rows)


def changes_between(before: Iterable[Key], after: Iterable[Key]) -> Counter[Key]:
    """The signed counts that turn the set ``before`` into the set ``after``."""
    old, new = set(before), set(after)
    delta: Counter[Key] = Counter()
    for key in old - new:
        delta[key] -= 1
    for key in new - old:
        delta[key] += 1
    return delta


def read(session: Session | Connection, kind: str, *, first_day: str | None = None,
         before_day: str | None = None, k1: Iterable[str] | None = None,
         undated_too: bool = True) -> list[SummaryRow]:
    """The kind's rows (counts plus pending deltas), days in ``[first_day, before_day)``.

    With a day bound, undated rows ('') are left out unless the range starts unbounded and
    ``undated_too`` is set.
    """
    def part(table: object) -> object:
        columns = table.c  # type: ignore[attr-defined]
        where = [columns.kind == kind]
        if first_day is not None:
            where.append(columns.day >= first_day)
        elif not undated_too:
            where.append(columns.day != "")
        if before_day is not None:
            where.append(columns.day < before_day)
        if k1 is not None:
            where.append(columns.k1.in_(list(k1)))
        return select(columns.day, columns.k1, columns.k2, columns.k3, columns.n,
                      columns.amount).where(and_(*where))

    both = union_all(part(_COUNTS), part(_DELTAS)).subquery()  # type: ignore[arg-type]
    statement = (
        select(both.c.day, both.c.k1, both.c.k2, both.c.k3, func.sum(both.c.n),
               func.sum(both.c.amount))
        .group_by(both.c.day, both.c.k1, both.c.k2, both.c.k3)
        .having(func.sum(both.c.n) != literal_column("0"))
        .order_by(both.c.day, both.c.k1, both.c.k2, both.c.k3)
    )
    return [SummaryRow(str(d), str(a), str(b), str(c), int(n or 0), int(m or 0))
            for d, a, b, c, n, m in session.execute(statement)]
