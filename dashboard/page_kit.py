"""Small pieces the action pages share: the role gate, lib errors, paging, dates, CSV buttons.

Kept apart from ``dashboard/widgets.py`` (the overview pages' helpers) so both can grow without
stepping on each other. Every CSV goes through ``lib.exports`` (formula-injection safe).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import streamlit as st

from dashboard.auth import current_operator
from dashboard.context import get_context
from lib.errors import ConnectOpsError, PermissionDeniedError
from lib.exports import rows_to_csv
from lib.roles import Action, Operator, authorize

PAGE_SIZE = 50


def require(action: Action) -> Operator:
    """The signed-in operator if their role allows ``action``; else a refusal and a stop."""
    try:
        return authorize(current_operator(), action,
                         session=get_context().session_factory)
    except PermissionDeniedError as exc:
        st.error(exc.message)
        st.stop()
        raise  # unreachable: st.stop() ends the run


def show_error(exc: ConnectOpsError) -> None:
    """A lib error as one clear message (never a traceback)."""
    st.error(exc.message, icon=":material/error:")


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def plain(text: str) -> str:
    """User text (a name, a description) made inert inside Streamlit markdown."""
    return _MARKDOWN.sub(r"\\\1", text)


def mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def pager(total: int, *, key: str, page_size: int = PAGE_SIZE) -> int:
    """A page picker under a table; returns the offset to query with."""
    pages = max(1, math.ceil(total / page_size))
    if pages == 1:
        st.caption(f"{total} row{'s' if total != 1 else ''}")
        return 0
    left, right = st.columns([1, 3])
    number = left.number_input("Page", min_value=1, max_value=pages, value=1, step=1, key=key)
    right.caption(f"Page {number} of {pages} · {total} rows")
    return (int(number) - 1) * page_size


def date_range(label: str, *, key: str, days: int = 30) -> tuple[datetime | None, datetime | None]:
    """A date range as aware UTC datetimes ``[from, to + 1 day)``; None ends when not chosen."""
    today = datetime.now(UTC).date()
    chosen = st.date_input(label, value=(today - timedelta(days=days), today), key=key)
    if isinstance(chosen, date):
        chosen = (chosen,)
    values = list(chosen) if isinstance(chosen, Sequence) else []
    start = datetime.combine(values[0], time.min, tzinfo=UTC) if len(values) >= 1 else None
    end = (datetime.combine(values[1], time.min, tzinfo=UTC) + timedelta(days=1)
           if len(values) >= 2 else None)
    return start, end


def csv_download(label: str, rows: Iterable[Mapping[str, Any]], columns: Sequence[str], *,
                 file_name: str, key: str) -> None:
    """A download button for a small table already in memory."""
    st.download_button(label, data=rows_to_csv(rows, columns), file_name=file_name,
                       mime="text/csv", key=key, on_click="ignore",
                       icon=":material/download:")


def prepared_csv(label: str, build: Callable[[], bytes], *, fingerprint: str, file_name: str,
                 key: str) -> None:
    """For big exports: build the CSV only when asked, for exactly the filters shown."""
    stored = st.session_state.get(f"{key}_data")
    if st.button(f"Prepare {label}", key=f"{key}_prepare", icon=":material/table_view:"):
        try:
            stored = (fingerprint, build())
        except ConnectOpsError as exc:
            show_error(exc)
            stored = None
        st.session_state[f"{key}_data"] = stored
    if stored and stored[0] == fingerprint:
        st.download_button(f"Download {label}", data=stored[1], file_name=file_name,
                           mime="text/csv", key=key, on_click="ignore",
                           icon=":material/download:")
