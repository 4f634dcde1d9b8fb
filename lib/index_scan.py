"""Distinct values of an indexed column, one index seek per value (a loose index scan).

``SELECT DISTINCT`` reads every row on SQLite, and PostgreSQL has no skip scan, so listing the
dozen values of a column of 1,000,000 rows costs a full index scan. The recursive CTE here asks
the index for the smallest value, then repeatedly for the next larger one: its cost follows the
number of distinct values, not the number of rows. It works on both databases.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import CTE, func, select
from sqlalchemy.orm import InstrumentedAttribute


def distinct_by_seeks(column: InstrumentedAttribute[Any], *, name: str) -> CTE:
    """A CTE named ``name`` with one column, ``value``: each non-NULL value of ``column`` once.

    The last row is NULL (the step that found no larger value); filter it out where it matters.
    ``column`` must lead an index, or each step is a scan.
    """
    seed = select(func.min(column).label("value")).cte(name, recursive=True)
    following = select(func.min(column)).where(column > seed.c.value).scalar_subquery()
    return seed.union_all(select(following).where(seed.c.value.is_not(None)))
