"""Installing the summaries' triggers, rebuilding them, checking them, folding deltas in.

- :func:`install_triggers` / :func:`drop_triggers`: the triggers of :mod:`lib.summaries.spec`
  (the migration installs them; a bulk load may drop them, then :func:`rebuild`).
- :func:`rebuild`: every summary recomputed from its source tables (``funnel_freelancers``, the
  per-freelancer rows behind the funnel's summaries, first).
- :func:`check`: the summaries against a full recount of the same snapshot; the differences.
- :func:`compact`: PostgreSQL's pending deltas folded into the counts (the worker's job).

Each takes the caller's connection or session and never commits.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Result, delete, insert, inspect, select, text
from sqlalchemy.orm import Session

from lib.models import SummaryCount, SummaryDelta
from lib.summaries import funnel, requirements
from lib.summaries.ddl import changed, drop_trigger_set
from lib.summaries.keys import Key
from lib.summaries.spec import (
    FREELANCER_ACCOUNT,
    FREELANCER_DEADLINE,
    FREELANCER_DEADLINE_HOUR,
    KINDS,
    PAYOUT_REVERSED,
    REVERSAL_REVERSED,
    Contribution,
    contributions,
    recount_sql,
    render,
    select_of,
)

logger = logging.getLogger(__name__)

_COUNTS = SummaryCount.__table__
_DELTAS = SummaryDelta.__table__
_COLUMNS = "(kind, day, k1, k2, k3, n, amount)"
_SQLITE_UPSERT = ("ON CONFLICT (kind, day, k1, k2, k3) DO UPDATE SET n = n + excluded.n, "
                  "amount = amount + excluded.amount")
#: How many differing keys a check keeps in its report.
MAX_REPORTED = 200


def _connection(bind: Session | Connection) -> Connection:
    return bind.connection() if isinstance(bind, Session) else bind


@dataclass(frozen=True, slots=True)
class _Trigger:
    """One summary's trigger on one table, as SELECTs over NEW / OLD."""

    name: str
    table: str
    watched: tuple[str, ...]
    #: A SELECT yielding the summary row of ``{r}`` signed ``{sign}``.
    template: str


def _has_funnel(connection: Connection) -> bool:
    """Migrations before 0016 run this code with no ``funnel_freelancers`` table yet, and must
    install, drop and recount without it."""
    return inspect(connection).has_table(funnel.TABLE)


def _contributions(dialect: str, *, with_funnel: bool) -> tuple[Contribution, ...]:
    return tuple(item for item in contributions(dialect)
                 if with_funnel or item.table != funnel.TABLE)


def _generated(dialect: str, items: tuple[Contribution, ...]) -> list[_Trigger]:
    """The triggers generated from ``items`` (those not written by hand)."""
    return [_Trigger(f"summary_{item.kind}_{item.table}", item.table, item.watched,
                     _template(item, dialect)) for item in items if item.triggers]


def _by_hand(kind: str) -> list[_Trigger]:
    """The hand-written triggers of a kind added by :func:`add_kind` (the freelancer's side of
    ``deadline_hours``, as of ``deadlines`` above), which it installs with the kind."""
    if kind == "deadline_hours":
        return [_Trigger("summary_deadline_hours_freelancers", "freelancers",
                         ("stripe_account_id",), FREELANCER_DEADLINE_HOUR)]
    return []


def _triggers(dialect: str, items: tuple[Contribution, ...]) -> list[_Trigger]:
    found = _generated(dialect, items)
    found.append(_Trigger("summary_accounts_freelancers", "freelancers", ("stripe_account_id",),
                          FREELANCER_ACCOUNT))
    found.append(_Trigger("summary_deadlines_freelancers", "freelancers",
                          ("stripe_account_id",), FREELANCER_DEADLINE))
    found += _by_hand("deadline_hours")
    found.append(_Trigger("summary_reversed_payout_reversals", "payout_reversals",
                          ("payout_id", "status", "amount_minor"), REVERSAL_REVERSED))
    found.append(_Trigger("summary_reversed_payouts", "payouts",
                          ("created_at", "currency", "status"), PAYOUT_REVERSED))
    return found


def _template(item: Contribution, dialect: str) -> str:
    # select_of renders {r}; keep it a placeholder for NEW/OLD by rendering with a marker.
    return select_of(item, row="{r}", sign="{sign}", dialect=dialect)


def _select(trigger: _Trigger, *, row: str, sign: str, dialect: str) -> str:
    return render(trigger.template, row=row, dialect=dialect).replace("{sign}", sign)


def _changed(trigger: _Trigger, dialect: str) -> str:
    return changed(trigger.watched, dialect)


def _sqlite_ddl(trigger: _Trigger) -> list[str]:
    def body(*parts: tuple[str, str]) -> str:
        return " ".join(
            f"INSERT INTO summary_counts {_COLUMNS} "
            f"{_select(trigger, row=row, sign=sign, dialect='sqlite')} {_SQLITE_UPSERT};"
            for row, sign in parts)

    name, table = trigger.name, trigger.table
    return [
        f"CREATE TRIGGER {name}_insert AFTER INSERT ON {table} BEGIN {body(('NEW', '1'))} END",
        f"CREATE TRIGGER {name}_delete AFTER DELETE ON {table} BEGIN {body(('OLD', '-1'))} END",
        f"CREATE TRIGGER {name}_update AFTER UPDATE OF {', '.join(trigger.watched)} ON {table} "
        f"WHEN {_changed(trigger, 'sqlite')} BEGIN {body(('OLD', '-1'), ('NEW', '1'))} END",
    ]


def _postgresql_ddl(trigger: _Trigger) -> list[str]:
    def insert_of(row: str, sign: str) -> str:
        return (f"INSERT INTO summary_deltas {_COLUMNS} "
                f"{_select(trigger, row=row, sign=sign, dialect='postgresql')};")

    name, table = trigger.name, trigger.table
    function = (
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $body$ "
        f"BEGIN IF TG_OP <> 'INSERT' THEN {insert_of('OLD', '-1')} END IF; "
        f"IF TG_OP <> 'DELETE' THEN {insert_of('NEW', '1')} END IF; RETURN NULL; END $body$"
    )
    return [
        function,
        f"CREATE TRIGGER {name}_write AFTER INSERT OR DELETE ON {table} FOR EACH ROW "
        f"EXECUTE FUNCTION {name}()",
        f"CREATE TRIGGER {name}_update AFTER UPDATE OF {', '.join(trigger.watched)} ON {table} "
        f"FOR EACH ROW WHEN ({_changed(trigger, 'postgresql')}) EXECUTE FUNCTION {name}()",
    ]


def trigger_ddl(dialect: str, *, with_funnel: bool = True) -> list[str]:
    """Every statement that creates the summaries' triggers on ``dialect`` (those of
    ``funnel_freelancers`` and the triggers that keep it too, unless ``with_funnel`` is off)."""
    items = _contributions(dialect, with_funnel=with_funnel)
    build = _postgresql_ddl if dialect == "postgresql" else _sqlite_ddl
    statements = [statement for trigger in _triggers(dialect, items)
                  for statement in build(trigger)]
    return statements + (funnel.trigger_ddl(dialect) if with_funnel else [])


def install_triggers(bind: Session | Connection) -> None:
    connection = _connection(bind)
    for statement in trigger_ddl(connection.dialect.name,
                                 with_funnel=_has_funnel(connection)):
        connection.exec_driver_sql(statement)


def drop_triggers(bind: Session | Connection) -> None:
    """Drop every summary trigger (a bulk load does, then :func:`rebuild` and reinstalls)."""
    connection = _connection(bind)
    dialect = connection.dialect.name
    for trigger in _triggers(dialect, contributions(dialect)):
        drop_trigger_set(connection, trigger.name, trigger.table)
    funnel.drop_triggers(connection)


def reinstall(bind: Session | Connection) -> None:
    """Every trigger dropped and created again from the code in place, then every summary
    recounted: what a migration that changes a summary does."""
    drop_triggers(bind)
    install_triggers(bind)
    rebuild(bind)


def _analyze(connection: Connection) -> None:
    """Fresh planner statistics for the counts just written. Until autovacuum's next ANALYZE,
    PostgreSQL does not know a new kind's rows exist, and planned a read of a few hours of it
    as a scan of the whole kind (issue 22). SQLite's planner uses no such statistics here."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("ANALYZE summary_counts")


def add_kind(bind: Session | Connection, kind: str) -> int:
    """A new summary kind on a database that has the others: its triggers created and its rows
    counted, the rest left as they are (a migration adding a kind to a million-row table
    recounts one kind, not all). Returns the number of rows written."""
    connection = _connection(bind)
    dialect = connection.dialect.name
    items = tuple(item for item in contributions(dialect) if item.kind == kind)
    if not items or any(item.table == funnel.TABLE or not item.triggers for item in items):
        raise ValueError(f"{kind!r} is not a summary kind with generated triggers")
    if dialect == "postgresql":
        connection.exec_driver_sql("LOCK TABLE summary_deltas IN EXCLUSIVE MODE")
    build = _postgresql_ddl if dialect == "postgresql" else _sqlite_ddl
    for trigger in _generated(dialect, items) + _by_hand(kind):
        drop_trigger_set(connection, trigger.name, trigger.table)
        for statement in build(trigger):
            connection.exec_driver_sql(statement)
    for table in (_COUNTS, _DELTAS):
        connection.execute(delete(table).where(table.c.kind == kind))
    rows = []
    for item in items:
        recounted: Result[Any, Any, Any, Any, Any, Any] = connection.exec_driver_sql(
            recount_sql(item, dialect=dialect))
        rows += [{"kind": kind, "day": str(day), "k1": str(k1), "k2": str(k2), "k3": str(k3),
                  "n": int(n), "amount": int(amount or 0)}
                 for day, k1, k2, k3, n, amount in recounted if n]
    for start in range(0, len(rows), 5_000):
        connection.execute(insert(_COUNTS), rows[start:start + 5_000])
    _analyze(connection)
    logger.info("summary %s added: %d rows", kind, len(rows))
    return len(rows)


# ---- recount, rebuild, check ------------------------------------------------------------------


def recount(bind: Session | Connection) -> Counter[Key]:
    """Every summary computed from the source tables: ``key -> n`` (and amounts beside)."""
    totals, _ = _recount(_connection(bind))
    return totals


def _recount(connection: Connection) -> tuple[Counter[Key], Counter[Key]]:
    counts: Counter[Key] = Counter()
    amounts: Counter[Key] = Counter()
    for item in _contributions(connection.dialect.name, with_funnel=_has_funnel(connection)):
        if not item.recount:
            continue
        # Driver values, as the SQL text yields them (SUM is NUMERIC on PostgreSQL).
        recounted: Result[Any, Any, Any, Any, Any, Any] = connection.exec_driver_sql(
            recount_sql(item, dialect=connection.dialect.name))
        for day, k1, k2, k3, n, amount in recounted:
            key = (item.kind, str(day), str(k1), str(k2), str(k3))
            counts[key] += int(n)
            amounts[key] += int(amount or 0)
    counts.update(requirements.recount(connection))
    return counts, amounts


def stored(bind: Session | Connection) -> tuple[Counter[Key], Counter[Key]]:
    """What the summaries hold now (counts plus pending deltas), zero rows left out."""
    connection = _connection(bind)
    counts: Counter[Key] = Counter()
    amounts: Counter[Key] = Counter()
    for table in (_COUNTS, _DELTAS):
        c = table.c
        rows: Result[str, str, str, str, str, int, int] = connection.execute(
            select(c.kind, c.day, c.k1, c.k2, c.k3, c.n, c.amount))
        for kind, day, k1, k2, k3, n, amount in rows:
            key = (str(kind), str(day), str(k1), str(k2), str(k3))
            counts[key] += int(n)
            amounts[key] += int(amount)
    return _nonzero(counts), _nonzero(amounts)


def _nonzero(values: Counter[Key]) -> Counter[Key]:
    return Counter({key: value for key, value in values.items() if value})


def rebuild(bind: Session | Connection) -> int:
    """Replace every summary by a full recount; returns the number of summary rows written.

    On PostgreSQL the deltas table is locked first, so writers (whose triggers insert deltas)
    wait for the rebuild rather than add to a count it is about to replace.
    """
    connection = _connection(bind)
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("LOCK TABLE summary_deltas IN EXCLUSIVE MODE")
    if _has_funnel(connection):
        funnel.reconcile(connection)
    counts, amounts = _recount(connection)
    connection.execute(delete(_DELTAS))
    connection.execute(delete(_COUNTS))
    rows = [{"kind": k[0], "day": k[1], "k1": k[2], "k2": k[3], "k3": k[4], "n": n,
             "amount": amounts.get(k, 0)} for k, n in sorted(counts.items()) if n]
    for start in range(0, len(rows), 5_000):
        connection.execute(insert(_COUNTS), rows[start:start + 5_000])
    _analyze(connection)
    logger.info("summaries rebuilt: %d rows", len(rows))
    return len(rows)


@dataclass(frozen=True, slots=True)
class Difference:
    key: Key
    kept: tuple[int, int]
    recounted: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        kind, day, k1, k2, k3 = self.key
        return {"kind": kind, "day": day, "keys": [k1, k2, k3], "kept": list(self.kept),
                "recounted": list(self.recounted)}


@dataclass(frozen=True, slots=True)
class CheckResult:
    differences: list[Difference] = field(default_factory=list)
    keys_compared: int = 0

    @property
    def ok(self) -> bool:
        return not self.differences


def check(bind: Session | Connection) -> CheckResult:
    """The summaries against a recount, read in the caller's transaction.

    Run it in one snapshot (PostgreSQL: REPEATABLE READ; SQLite: one read transaction): the
    triggers write in the transaction of the row they summarise, so within a snapshot the two
    agree exactly and any difference is a real fault, never a race.
    """
    connection = _connection(bind)
    counts, amounts = _recount(connection)
    kept_counts, kept_amounts = stored(connection)
    keys = set(_nonzero(counts)) | set(kept_counts) | set(_nonzero(amounts)) | set(kept_amounts)
    differences = [
        Difference(key, (kept_counts.get(key, 0), kept_amounts.get(key, 0)),
                   (counts.get(key, 0), amounts.get(key, 0)))
        for key in sorted(keys)
        if (kept_counts.get(key, 0), kept_amounts.get(key, 0))
        != (counts.get(key, 0), amounts.get(key, 0))
    ]
    return CheckResult(differences, len(keys))


def compact(bind: Session | Connection) -> int:
    """Fold pending deltas into the counts (PostgreSQL); drop rows that came back to zero.

    One statement moves the deltas (a ``DELETE … RETURNING`` feeding the upsert), so a delta
    committed meanwhile is either moved whole or left for next time, never lost or added twice.
    Returns the number of deltas folded in (0 on SQLite, whose triggers add directly).
    """
    connection = _connection(bind)
    if connection.dialect.name != "postgresql":
        connection.execute(delete(_COUNTS).where(_COUNTS.c.n == 0, _COUNTS.c.amount == 0))
        return 0
    moved: int = connection.execute(text(
        "WITH moved AS (DELETE FROM summary_deltas RETURNING kind, day, k1, k2, k3, n, amount),"
        " folded AS (INSERT INTO summary_counts (kind, day, k1, k2, k3, n, amount)"
        " SELECT kind, day, k1, k2, k3, SUM(n), SUM(amount) FROM moved"
        " GROUP BY kind, day, k1, k2, k3"
        " ON CONFLICT (kind, day, k1, k2, k3) DO UPDATE SET"
        " n = summary_counts.n + excluded.n, amount = summary_counts.amount + excluded.amount"
        " RETURNING 1)"
        " SELECT (SELECT COUNT(*) FROM moved)")).scalar_one()
    connection.execute(delete(_COUNTS).where(_COUNTS.c.n == 0, _COUNTS.c.amount == 0))
    return int(moved)


__all__ = ["KINDS", "CheckResult", "Difference", "add_kind", "check", "compact", "drop_triggers",
           "install_triggers", "rebuild", "recount", "reinstall", "stored", "trigger_ddl"]
