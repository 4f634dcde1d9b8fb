"""Requirement counts per list and plain label, kept by the requirement index as it writes.

The Requirements page counts *accounts* per label, and a few labels cover several codes (the
three date-of-birth fields, one person's or another's); an account asked for two of them counts
once. A trigger would have to know the labels, which are Python (``requirement_label``), so
:mod:`lib.requirement_index` adds the change itself, in the same transaction, whenever it
rewrites an account's rows: each account contributes one to every ``(deadline day, list,
label)`` it has, so the counts add up without a ``DISTINCT`` at read time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, Result, select

from lib.account_status import requirement_label
from lib.models import RequirementCode
from lib.summaries.keys import Key, day_of

KIND = "requirements"
_CODES = RequirementCode.__table__
#: The (list, label) under which every account in the index counts once.
EVERY_ACCOUNT = ("", "")


def keys_of(rows: Iterable[tuple[str, str, datetime | None]]) -> set[Key]:
    """One account's summary keys from its index rows ``(bucket, code, deadline)``."""
    keys = {(KIND, day_of(deadline), bucket, requirement_label(code), "")
            for bucket, code, deadline in rows}
    keys |= {(KIND, day, *EVERY_ACCOUNT, "") for _, day, _, _, _ in keys}
    return keys


def recount(connection: Connection) -> Counter[Key]:
    """Every account's keys from the index, added up (reads the whole index, in order)."""
    totals: Counter[Key] = Counter()
    current: int | None = None
    rows: list[tuple[str, str, datetime | None]] = []
    # Options on the statement: Connection.execution_options would change the connection.
    statement = (select(_CODES.c.account_id, _CODES.c.bucket, _CODES.c.code, _CODES.c.deadline)
                 .order_by(_CODES.c.account_id).execution_options(yield_per=10_000))
    index_rows: Result[int, str, str, datetime | None] = connection.execute(statement)
    for account_id, bucket, code, deadline in index_rows:
        if account_id != current:
            totals.update(keys_of(rows))
            current, rows = account_id, []
        rows.append((bucket, code, deadline))
    totals.update(keys_of(rows))
    return totals
