"""Dropping one generated trigger set, the same way for every summary and for the funnel.

Every trigger set here is named ``{name}``: on SQLite three triggers (``{name}_insert``,
``{name}_delete``, ``{name}_update``), on PostgreSQL two (``{name}_write``, ``{name}_update``)
calling the function ``{name}()``.
"""

from __future__ import annotations

from sqlalchemy import Connection


def drop_trigger_set(connection: Connection, name: str, table: str) -> None:
    """Drop the triggers (and PostgreSQL's function) named ``name`` on ``table``, if present."""
    if connection.dialect.name == "postgresql":
        for suffix in ("write", "update"):
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}_{suffix} ON {table}")
        connection.exec_driver_sql(f"DROP FUNCTION IF EXISTS {name}()")
        return
    for suffix in ("insert", "delete", "update"):
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}_{suffix}")
