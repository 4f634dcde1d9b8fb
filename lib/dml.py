"""The row count of an UPDATE or DELETE executed through a session.

``Session.execute`` is typed to return a plain ``Result`` whatever the statement, but an UPDATE
or DELETE (ORM-enabled or Core) comes back as a ``CursorResult``, the one result that carries
``rowcount``. This narrows to it once, for every guarded write that counts what it matched.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import CursorResult, Result


def rowcount(result: Result[*tuple[Any, ...]]) -> int:
    """The rows an UPDATE or DELETE matched (the DBAPI's count; see each caller for its use)."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"rowcount of a {type(result).__name__}: not an UPDATE or DELETE result")
    return result.rowcount
