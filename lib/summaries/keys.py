"""A summary's key and its day text (no model imports: the requirement index, which the models
module imports, uses these)."""

from __future__ import annotations

from datetime import UTC, date, datetime

Key = tuple[str, str, str, str, str]  # kind, day, k1, k2, k3


def day_of(moment: datetime | date | None) -> str:
    """The summaries' day text for a timestamp (its UTC date) or a date; '' for none."""
    if moment is None:
        return ""
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).strftime("%Y-%m-%d")
    return moment.isoformat()


def hour_of(moment: datetime) -> str:
    """The summaries' hour text for a timestamp: its UTC hour, ``YYYYMMDDHH``. Ten characters,
    as a day's text (the summaries' day column holds either); digits only, so hours sort in
    time order. An hourly kind holds only hours, so the two never share a range."""
    return moment.astimezone(UTC).strftime("%Y%m%d%H")
