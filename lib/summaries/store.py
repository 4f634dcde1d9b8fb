"""Reading and adding to the summaries: the one place that knows counts and deltas apart.

A summary's value is its :class:`~lib.models.SummaryCount` row plus any pending
:class:`~lib.models.SummaryDelta` rows (PostgreSQL's writers add deltas; the worker folds them
in). Every read here adds both in one statement, so it sees one consistent snapshot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Connection,
    Result,
    Select,
    String,
    Table,
    and_,
    bindparam,
    func,
    literal_column,
    select,
    text,
    union_all,
)
from sqlalchemy.dialects.sqlite import Insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from lib.models import SummaryCount, SummaryDelta
from lib.summaries.keys import Key

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
    def as_date(self) -> date | None:
        return date.fromisoformat(self.day) if self.day else None


def add(connection: Connection, changes: Mapping[Key, tuple[int, int]]) -> None:
    """Add signed ``(n, amount)`` changes, in the caller's transaction.

    SQLite has one writer at a time, so it adds to the counts directly. PostgreSQL's concurrent
    writers each insert deltas instead of updating a shared row (no waits, no deadlocks).
    """
    rows = _rows(changes)
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        # One statement, one round trip: psycopg's executemany sends a query per row.
        connection.execute(_POSTGRES_ADD, _arrays(rows))
        return
    connection.execute(_sqlite_upsert(), rows)


_COLUMNS = ("kind", "day", "k1", "k2", "k3", "n", "amount")
#: PostgreSQL: insert the deltas of :func:`delta_arrays` (a statement of its own, or the data-
#: modifying ``WITH`` of another write, to share its round trip).
POSTGRES_ADD = (
    "INSERT INTO summary_deltas (kind, day, k1, k2, k3, n, amount) SELECT * FROM unnest("
    "CAST(:kind AS text[]), CAST(:day AS text[]), CAST(:k1 AS text[]), CAST(:k2 AS text[]), "
    "CAST(:k3 AS text[]), CAST(:n AS bigint[]), CAST(:amount AS bigint[]))")
_POSTGRES_ADD = text(POSTGRES_ADD)


def _rows(changes: Mapping[Key, tuple[int, int]]) -> list[dict[str, Any]]:
    return [{"kind": k[0], "day": k[1], "k1": k[2], "k2": k[3], "k3": k[4], "n": n, "amount": a}
            for k, (n, a) in sorted(changes.items()) if n or a]


def delta_arrays(changes: Mapping[Key, tuple[int, int]]) -> dict[str, list[Any]]:
    """The parameters of :data:`POSTGRES_ADD` for ``changes`` (empty arrays add nothing)."""
    return _arrays(_rows(changes))


def _arrays(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {name: [row[name] for row in rows] for name in _COLUMNS}


@cache
def _sqlite_upsert() -> Insert:
    """Built once: making the statement (its ``excluded`` alias above all) cost more than
    running it, on every account upsert."""
    statement = sqlite_insert(_COUNTS)
    return statement.on_conflict_do_update(
        index_elements=["kind", "day", "k1", "k2", "k3"],
        set_={"n": _COUNTS.c.n + statement.excluded.n,
              "amount": _COUNTS.c.amount + statement.excluded.amount})


def changes_between(before: Iterable[Key], after: Iterable[Key]) -> Counter[Key]:
    """The signed counts that turn the set ``before`` into the set ``after``."""
    old, new = set(before), set(after)
    delta: Counter[Key] = Counter()
    for key in old - new:
        delta[key] -= 1
    for key in new - old:
        delta[key] += 1
    return delta


class monday_of(FunctionElement[str]):
    """The Monday of a summary's day text (``YYYY-MM-DD``), as the same text: grouping by week
    in the database, so a weekly read returns a row per week instead of one per day."""

    type = String()
    inherit_cache = True


@compiles(monday_of, "sqlite")
def _monday_sqlite(element: monday_of, compiler: SQLCompiler, **kw: Any) -> str:
    # 'weekday 0' moves forward to Sunday (or stays), '-6 days' lands on that week's Monday.
    return f"date({compiler.process(element.clauses, **kw)}, 'weekday 0', '-6 days')"


@compiles(monday_of, "postgresql")
def _monday_postgresql(element: monday_of, compiler: SQLCompiler, **kw: Any) -> str:
    day = compiler.process(element.clauses, **kw)
    return f"to_char(date_trunc('week', CAST({day} AS date)), 'YYYY-MM-DD')"


@dataclass(frozen=True, slots=True)
class Ask:
    """One read of a summary: a kind, a day range ``[first_day, before_day)``, the key columns
    to keep (the others are added up in the database and come back ''), and values to keep.

    ``group`` may name ``week`` instead of ``day`` (dated kinds only): the rows of each ISO week
    are added up, and each row's ``day`` is its week's Monday.
    """

    label: str
    kind: str
    first_day: str | None = None
    before_day: str | None = None
    group: tuple[str, ...] = ("day", "k1", "k2", "k3")
    where: Mapping[str, tuple[str, ...]] | None = None


#: What a read's statement depends on besides its values: each ask's label, kind, whether it
#: has each bound, its grouping and the names of the key columns it filters on.
_Shape = tuple[str, str, bool, bool, tuple[str, ...], tuple[str, ...]]


def _shape(ask: Ask) -> _Shape:
    return (ask.label, ask.kind, ask.first_day is not None, ask.before_day is not None,
            ask.group, tuple(sorted(ask.where or {})))


def _values(ask: Ask) -> dict[str, Any]:
    """The bound values of ``ask``'s part of the statement (see :func:`_part`)."""
    values: dict[str, Any] = {}
    if ask.first_day is not None:
        values[f"{ask.label}__first"] = ask.first_day
    if ask.before_day is not None:
        values[f"{ask.label}__before"] = ask.before_day
    for name, chosen in (ask.where or {}).items():
        values[f"{ask.label}__{name}"] = list(chosen)
    return values


def _part(table: Table, shape: _Shape) -> Select[*tuple[Any, ...]]:
    label, kind, has_first, has_before, _, filtered = shape
    columns = table.c
    conditions = [columns.kind == kind]
    if has_first:
        conditions.append(columns.day >= bindparam(f"{label}__first"))
    if has_before:
        conditions.append(columns.day < bindparam(f"{label}__before"))
    for name in filtered:
        conditions.append(columns[name].in_(bindparam(f"{label}__{name}", expanding=True)))
    return select(columns.day, columns.k1, columns.k2, columns.k3, columns.n,
                  columns.amount).where(and_(*conditions))


def _grouped(shape: _Shape) -> Select[*tuple[Any, ...]]:
    label, group = shape[0], shape[4]
    both = union_all(_part(_COUNTS, shape), _part(_DELTAS, shape)).subquery()

    def column(name: str) -> ColumnElement[Any]:
        return monday_of(both.c.day) if name == "week" else both.c[name]

    kept = [column(name) for name in group]
    period = "week" if "week" in group else "day"
    shown = [column(period) if period in group else literal_column("''")]
    shown += [both.c[name] if name in group else literal_column("''")
              for name in ("k1", "k2", "k3")]
    return (select(literal_column(f"'{label}'"), *shown, func.sum(both.c.n),
                   func.sum(both.c.amount))
            .group_by(*kept).having(func.sum(both.c.n) != 0))


@lru_cache(maxsize=256)
def _statement(shapes: tuple[_Shape, ...]) -> CompoundSelect[*tuple[Any, ...]] | Select[
        *tuple[Any, ...]]:
    """Built once per shape, its days and key values bound at execution: making a page's
    statement (and SQLAlchemy's cache key of a new one) cost more than running it, about
    9 of 10.5 ms for the Overview's thirteen reads."""
    parts = [_grouped(shape) for shape in shapes]
    return union_all(*parts) if len(parts) > 1 else parts[0]


def read_many(session: Session | Connection, asks: Iterable[Ask]) -> dict[str, list[SummaryRow]]:
    """Several reads in one statement (a page's summaries in one round trip), by label.

    Counts and pending deltas are added in the same statement, so the page sees one snapshot.
    """
    asks = list(asks)
    if any(not ask.label.isidentifier() for ask in asks):
        raise ValueError("summary read labels are plain identifiers")
    if len({ask.label for ask in asks}) != len(asks):
        raise ValueError("summary read labels are unique within a read")
    found: dict[str, list[SummaryRow]] = {ask.label: [] for ask in asks}
    if not asks:
        return found
    values: dict[str, Any] = {}
    for ask in asks:
        values.update(_values(ask))
    # label, day, k1, k2, k3, then the sums (NUMERIC on PostgreSQL, NULL never: HAVING n != 0).
    summed: Result[str, str, str, str, str, int | Decimal | None, int | Decimal | None] = (
        session.execute(_statement(tuple(_shape(ask) for ask in asks)), values))
    for label, d, a, b, c, n, m in summed:
        found[str(label)].append(SummaryRow(str(d), str(a), str(b), str(c), int(n or 0),
                                            int(m or 0)))
    for rows in found.values():
        rows.sort(key=lambda r: (r.day, r.k1, r.k2, r.k3))
    return found


def read(session: Session | Connection, kind: str, **options: Any) -> list[SummaryRow]:
    """One :class:`Ask` of ``kind`` (see there for the options)."""
    return read_many(session, [Ask("only", kind, **options)])["only"]
