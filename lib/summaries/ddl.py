"""SQL pieces every generated trigger shares, for the summaries (:mod:`lib.summaries.spec`,
:mod:`lib.summaries.maintenance`) and the funnel's rows (:mod:`lib.summaries.funnel`).

Every trigger set is named ``{name}``: on SQLite three triggers (``{name}_insert``,
``{name}_delete``, ``{name}_update``), on PostgreSQL two (``{name}_write``, ``{name}_update``)
calling the function ``{name}()``.
"""

from __future__ import annotations

from sqlalchemy import Connection


def utc_day(column: str, dialect: str) -> str:
    """SQL: the UTC day (``YYYY-MM-DD``) of a timestamp column, '' when it is NULL."""
    if dialect == "postgresql":
        return f"COALESCE(to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD'), '')"
    # SQLite stores these columns as 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC (lib.db.UTCDateTime).
    return f"COALESCE(substr({column}, 1, 10), '')"


def utc_hour(column: str, dialect: str) -> str:
    """SQL: the UTC hour (``YYYYMMDDHH``, :func:`lib.summaries.keys.hour_of`) of a timestamp
    column, '' when it is NULL."""
    if dialect == "postgresql":
        return f"COALESCE(to_char({column} AT TIME ZONE 'UTC', 'YYYYMMDDHH24'), '')"
    return (f"COALESCE(substr({column}, 1, 4) || substr({column}, 6, 2) || "
            f"substr({column}, 9, 2) || substr({column}, 12, 2), '')")


def distinct(dialect: str) -> str:
    """The NULL-safe "differs" operator of ``dialect``."""
    return "IS DISTINCT FROM" if dialect == "postgresql" else "IS NOT"


def changed(columns: tuple[str, ...], dialect: str) -> str:
    """SQL for an UPDATE trigger: any of ``columns`` differs between OLD and NEW."""
    return " OR ".join(f"OLD.{c} {distinct(dialect)} NEW.{c}" for c in columns)


def drop_trigger_set(connection: Connection, name: str, table: str) -> None:
    """Drop the triggers (and PostgreSQL's function) named ``name`` on ``table``, if present."""
    if connection.dialect.name == "postgresql":
        for suffix in ("write", "update"):
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}_{suffix} ON {table}")
        connection.exec_driver_sql(f"DROP FUNCTION IF EXISTS {name}()")
        return
    for suffix in ("insert", "delete", "update"):
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}_{suffix}")
