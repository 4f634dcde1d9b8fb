"""The connection funnel kept exactly on write: one row per freelancer, counted per day.

The funnel counts *distinct* freelancers with an attempt started in a range, so it cannot be
added up from per-day rows of attempts (a freelancer with attempts on three days would count
three times). Per-day *sets* of freelancers would be exact but grow with the data; a sketch
(HyperLogLog) would be small but approximate, and finance reads these numbers as exact. Instead
this keeps an exact incremental form that answers every range *ending at or after the newest
attempt* (every range that ends today, the page's default) from a few summary rows:

- ``funnel_freelancers`` holds, per freelancer with at least one attempt, the UTC day of their
  newest attempt, of their newest attempt that came back from Stripe, and of their newest
  succeeded attempt, with two flags: verified (their current account is payable) and paid
  (they have a ``paid`` payout). Triggers on the four source tables recompute one freelancer's
  row from their own rows (about ten attempts, by index) in the transaction of the write.
- The summaries ``funnel_issued`` / ``funnel_returned`` / ``funnel_connected`` count those rows
  per day (``funnel_connected`` also by the two flags), maintained by the ordinary summary
  triggers on that table (:mod:`lib.summaries.spec`).

A freelancer has an attempt in ``[first, today]`` exactly when their newest attempt started on
or after ``first`` (no attempt starts after today), and the same for each stage, so each stage is
a sum over the days from ``first`` on. A range that ends before the newest attempt is answered by
a scan of its own attempts instead (``lib.connection_metrics.funnel``): its cost follows the
range, not the history.

The recount of these summaries reads the source tables directly (:data:`source_sql`), so the
summaries check verifies the whole chain: the per-freelancer rows and the counts of them.

On PostgreSQL each refresh first locks the freelancer's row (``FOR NO KEY UPDATE``, which does
not conflict with the key-share locks that inserting attempts and payouts takes): two
transactions writing the same freelancer's attempts then recompute one after the other, each
from a snapshot that includes the other's committed rows, so neither overwrites the other's
contribution with a stale one.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from lib.summaries.ddl import changed, distinct, drop_trigger_set, utc_day

TABLE = "funnel_freelancers"
_COLUMNS = ("freelancer_id", "issued_day", "returned_day", "connected_day", "verified", "paid")

#: The columns of an account that decide whether it is payable (``lib.account_status``).
VERIFIED_COLUMNS = ("stripe_id", "transfers_capability", "payouts_enabled", "details_submitted",
                    "currently_due_count", "past_due_count")


def payable(row: str) -> str:
    """SQL: the account ``row`` is payable (as :func:`lib.account_status.is_verified`)."""
    return (f"({row}.transfers_capability = 'active' AND {row}.payouts_enabled "
            f"AND {row}.details_submitted AND {row}.currently_due_count = 0 "
            f"AND {row}.past_due_count = 0)")


def _verified_of(freelancer_id: str) -> str:
    """SQL 1 or 0: the freelancer's current account is payable."""
    return ("CASE WHEN EXISTS (SELECT 1 FROM freelancers owner JOIN connected_accounts account "
            f"ON account.stripe_id = owner.stripe_account_id WHERE owner.id = {freelancer_id} "
            f"AND {payable('account')}) THEN 1 ELSE 0 END")


def _paid_of(freelancer_id: str) -> str:
    """SQL 1 or 0: the freelancer has a ``paid`` payout (one seek of (freelancer_id, status))."""
    return ("CASE WHEN EXISTS (SELECT 1 FROM payouts paid WHERE paid.freelancer_id = "
            f"{freelancer_id} AND paid.status = 'paid') THEN 1 ELSE 0 END")


def source_sql(dialect: str, *, where: str = "1 = 1") -> str:
    """Per freelancer with attempts (those matching ``where`` over ``a``): their funnel row."""
    day = utc_day("a.started_at", dialect)
    came_back = "(a.returned_at IS NOT NULL OR a.outcome IN ('succeeded', 'failed'))"
    return (
        f"SELECT a.freelancer_id AS freelancer_id, MAX({day}) AS issued_day, "
        f"COALESCE(MAX(CASE WHEN {came_back} THEN {day} END), '') AS returned_day, "
        f"COALESCE(MAX(CASE WHEN a.outcome = 'succeeded' THEN {day} END), '') AS connected_day, "
        f"{_verified_of('a.freelancer_id')} AS verified, {_paid_of('a.freelancer_id')} AS paid "
        f"FROM connection_attempts a WHERE {where} GROUP BY a.freelancer_id"
    )


def _flag_update(flag: str, where_id: str) -> str:
    """Only one flag of existing rows: a payout or an account moves nothing else, and a
    freelancer with no row (no attempt) has no flag to keep."""
    value = (_paid_of if flag == "paid" else _verified_of)(f"{TABLE}.freelancer_id")
    return f"UPDATE {TABLE} SET {flag} = {value} WHERE freelancer_id {where_id} AND {flag} <> {value}"


def _upsert(dialect: str, where: str) -> str:
    changed = " OR ".join(f"{TABLE}.{c} <> excluded.{c}" for c in _COLUMNS[1:])
    return (f"INSERT INTO {TABLE} ({', '.join(_COLUMNS)}) {source_sql(dialect, where=where)} "
            f"ON CONFLICT (freelancer_id) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:]) + f" WHERE {changed}")


def _drop_empty(where_id: str = "IS NOT NULL") -> str:
    """Rows of freelancers (``freelancer_id {where_id}``) left with no attempt."""
    return (f"DELETE FROM {TABLE} WHERE freelancer_id {where_id} AND NOT EXISTS "
            f"(SELECT 1 FROM connection_attempts x WHERE x.freelancer_id = {TABLE}.freelancer_id)")


# ---- triggers ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Source:
    """A table whose writes move some freelancers' funnel rows."""

    name: str
    table: str
    watched: tuple[str, ...]
    #: The freelancers a row (``{r}``) touches.
    owners: str
    #: When an inserted or deleted row (``{r}``) matters; None: inserts never do, and a delete
    #: removes the freelancer's row (the ``freelancers`` table itself).
    matters: str | None
    #: What a write here can move: the whole row ("row"), or one flag ("verified", "paid").
    moves: str = "row"
    #: The column naming the freelancers a row touches: an UPDATE that keeps it moves only the
    #: new side's freelancers (refreshing the old side too would do the same work twice).
    key: str = "freelancer_id"
    #: When an UPDATE matters, in SQL: ``{changed}`` (a watched column changed) and ``{op}``
    #: (the dialect's NULL-safe "differs") are filled in.
    update_when: str = "{changed}"

    def old_owners_if_moved(self, dialect: str) -> str:
        """The old side's freelancers, only when an UPDATE changed :attr:`key`."""
        owners = self.owners.replace("{r}", "OLD")
        joiner = " AND " if " WHERE " in owners else " WHERE "
        return f"{owners}{joiner}OLD.{self.key} {distinct(dialect)} NEW.{self.key}"

    def update_condition(self, dialect: str) -> str:
        return self.update_when.format(changed=changed(self.watched, dialect),
                                       op=distinct(dialect))


_SOURCES: tuple[_Source, ...] = (
    _Source("funnel_attempts", "connection_attempts",
            ("freelancer_id", "started_at", "outcome", "returned_at"),
            "SELECT {r}.freelancer_id", "1 = 1"),
    # Only a change of payable-ness (or of which account this is) moves a flag.
    _Source("funnel_accounts", "connected_accounts", VERIFIED_COLUMNS,
            "SELECT id FROM freelancers WHERE stripe_account_id = {r}.stripe_id", payable("{r}"),
            moves="verified", key="stripe_id",
            update_when=f"{payable('OLD')} {{op}} {payable('NEW')} "
                        "OR OLD.stripe_id {op} NEW.stripe_id"),
    _Source("funnel_owners", "freelancers", ("stripe_account_id",), "SELECT {r}.id", None,
            moves="verified"),
    _Source("funnel_payouts", "payouts", ("freelancer_id", "status"),
            "SELECT {r}.freelancer_id", "{r}.status = 'paid'", moves="paid",
            update_when="(OLD.status = 'paid' OR NEW.status = 'paid') AND ({changed})"),
)


def _sqlite_refresh(ids: str, moves: str = "row") -> str:
    if moves != "row":
        return f"{_flag_update(moves, f'IN ({ids})')};"
    return f"{_drop_empty(f'IN ({ids})')}; {_upsert('sqlite', f'a.freelancer_id IN ({ids})')};"


def _sqlite_ddl() -> list[str]:
    statements = []
    for source in _SOURCES:
        name, table = source.name, source.table
        new, old = source.owners.replace("{r}", "NEW"), source.owners.replace("{r}", "OLD")
        if source.matters is None:
            statements.append(f"CREATE TRIGGER {name}_delete AFTER DELETE ON {table} "
                              f"BEGIN DELETE FROM {TABLE} WHERE freelancer_id = OLD.id; END")
            refresh = _sqlite_refresh(new, source.moves)
        else:
            statements += [
                f"CREATE TRIGGER {name}_insert AFTER INSERT ON {table} "
                f"WHEN {source.matters.replace('{r}', 'NEW')} "
                f"BEGIN {_sqlite_refresh(new, source.moves)} END",
                f"CREATE TRIGGER {name}_delete AFTER DELETE ON {table} "
                f"WHEN {source.matters.replace('{r}', 'OLD')} "
                f"BEGIN {_sqlite_refresh(old, source.moves)} END",
            ]
            moved = source.old_owners_if_moved("sqlite")
            refresh = (f"{_sqlite_refresh(moved, source.moves)} "
                       f"{_sqlite_refresh(new, source.moves)}")
        statements.append(
            f"CREATE TRIGGER {name}_update AFTER UPDATE OF {', '.join(source.watched)} "
            f"ON {table} WHEN {source.update_condition('sqlite')} BEGIN {refresh} END")
    return statements


def _pg_refresh(moves: str) -> str:
    lock = "PERFORM 1 FROM freelancers WHERE id = fid FOR NO KEY UPDATE;"
    if moves == "row":
        return (f"CREATE OR REPLACE FUNCTION funnel_refresh_row(fid bigint) RETURNS void "
                f"LANGUAGE plpgsql AS $body$ BEGIN {lock} {_drop_empty('= fid')}; "
                f"{_upsert('postgresql', 'a.freelancer_id = fid')}; END $body$")
    # The flag's value computed once (an UPDATE ... WHERE flag <> value evaluated it twice).
    value = (_paid_of if moves == "paid" else _verified_of)("fid")
    return (f"CREATE OR REPLACE FUNCTION funnel_refresh_{moves}(fid bigint) RETURNS void "
            f"LANGUAGE plpgsql AS $body$ DECLARE flag integer; BEGIN {lock} "
            f"flag := {value}; UPDATE {TABLE} SET {moves} = flag "
            f"WHERE freelancer_id = fid AND {moves} <> flag; END $body$")


_MOVES = ("row", "verified", "paid")


def _pg_body(source: _Source) -> str:
    def loop(owners: str) -> str:
        return (f"FOR fid IN {owners} ORDER BY 1 LOOP "
                f"PERFORM funnel_refresh_{source.moves}(fid); END LOOP;")

    new_owners = source.owners.replace("{r}", "NEW")
    if source.matters is None:
        return (f"IF TG_OP = 'DELETE' THEN DELETE FROM {TABLE} WHERE freelancer_id = OLD.id; "
                f"ELSIF TG_OP = 'UPDATE' THEN {loop(new_owners)} END IF;")
    old = source.matters.replace("{r}", "OLD")
    new = source.matters.replace("{r}", "NEW")
    # The old side only when the row moved to other freelancers: tested here, not by running
    # a query that finds nobody.
    return (f"IF TG_OP = 'DELETE' AND {old} THEN {loop(source.owners.replace('{r}', 'OLD'))} "
            f"END IF; IF TG_OP = 'UPDATE' AND OLD.{source.key} IS DISTINCT FROM "
            f"NEW.{source.key} THEN {loop(source.owners.replace('{r}', 'OLD'))} END IF; "
            f"IF TG_OP = 'UPDATE' OR (TG_OP = 'INSERT' AND {new}) THEN {loop(new_owners)} "
            "END IF;")


def _postgresql_ddl() -> list[str]:
    statements = [_pg_refresh(moves) for moves in _MOVES]
    for source in _SOURCES:
        name, table = source.name, source.table
        statements += [
            f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $body$ "
            f"DECLARE fid bigint; BEGIN {_pg_body(source)} RETURN NULL; END $body$",
            f"CREATE TRIGGER {name}_write AFTER INSERT OR DELETE ON {table} FOR EACH ROW "
            f"EXECUTE FUNCTION {name}()",
            f"CREATE TRIGGER {name}_update AFTER UPDATE OF {', '.join(source.watched)} "
            f"ON {table} FOR EACH ROW WHEN ({source.update_condition('postgresql')}) "
            f"EXECUTE FUNCTION {name}()",
        ]
    return statements


def trigger_ddl(dialect: str) -> list[str]:
    """The statements that keep ``funnel_freelancers`` up to date on ``dialect``."""
    return _postgresql_ddl() if dialect == "postgresql" else _sqlite_ddl()


def drop_triggers(connection: Connection) -> None:
    dialect = connection.dialect.name
    for source in _SOURCES:
        drop_trigger_set(connection, source.name, source.table)
    if dialect == "postgresql":
        for moves in _MOVES:
            connection.exec_driver_sql(f"DROP FUNCTION IF EXISTS funnel_refresh_{moves}(bigint)")
        # The name 0016 first used (one function for every source).
        connection.exec_driver_sql("DROP FUNCTION IF EXISTS funnel_refresh(bigint)")


def reinstall_triggers(connection: Connection) -> None:
    """The funnel's triggers dropped and created again from the code in place: for a change
    in how they work that leaves what they keep as it is (no recount needed)."""
    drop_triggers(connection)
    for statement in trigger_ddl(connection.dialect.name):
        connection.exec_driver_sql(statement)


def reconcile(connection: Connection) -> None:
    """Make every freelancer's row equal a recompute from the source tables (the rebuild's
    first step): rows that already agree are not written, so their triggers stay quiet."""
    connection.exec_driver_sql(_drop_empty())
    connection.exec_driver_sql(_upsert(connection.dialect.name, "1 = 1"))
