"""Server-side paging shared by every listing: one rule for page sizes and offsets."""

from __future__ import annotations

from lib.errors import ValidationError

#: The largest page any listing serves; exports stream instead.
MAX_PAGE = 500


def check_page(limit: int, offset: int, *, maximum: int = MAX_PAGE) -> None:
    """Refuse a page size outside 1..``maximum`` or a negative offset."""
    if not 1 <= limit <= maximum or offset < 0:
        raise ValidationError(f"Page size must be 1..{maximum} and the offset not negative.")
