"""Server-side paging shared by every listing: one rule for page sizes and offsets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from lib.errors import ValidationError

#: The largest page any listing serves; exports stream instead.
MAX_PAGE = 500


def check_page(limit: int, offset: int, *, maximum: int = MAX_PAGE) -> None:
    """Refuse a page size outside 1..``maximum`` or a negative offset."""
    if not 1 <= limit <= maximum or offset < 0:
        raise ValidationError(f"Page size must be 1..{maximum} and the offset not negative.")


def count_capped(session: Session, matching: Select[Any], *, cap: int,
                 params: Mapping[str, Any] | None = None) -> tuple[int, bool]:
    """How many rows ``matching`` selects, counting no further than ``cap`` (issue 22: the same
    cost with 30 rows or 3,000,000): ``(total, whether it is only a lower bound)``."""
    found = int(session.scalar(select(func.count()).select_from(
        matching.limit(cap + 1).subquery()), params) or 0)
    return (cap, True) if found > cap else (found, False)
