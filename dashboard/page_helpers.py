"""What every page shares: the role gate, lib errors and flash messages, safe text, account
status looks, KPI tiles, dates, paging, and the ways a table becomes a CSV.

One module so a page imports its helpers from one place. Tables themselves go through
``dashboard/tables.py`` (human headers, readable cells, UTC) and charts through
``dashboard/charts.py``. Every CSV goes through ``lib.exports`` (formula-injection safe).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from typing import Any, Literal

import pandas as pd
import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from dashboard.auth import current_operator
from dashboard.context import get_context
from dashboard.tables import humanise
from lib.errors import ConnectOpsError, PermissionDeniedError
from lib.exports import frame_to_csv, rows_to_csv
from lib.roles import Action, Operator, authorize_in

PAGE_SIZE = 50

# ---- the gate and messages --------------------------------------------------------------------


def require_page(action: Action) -> Operator:
    """The signed-in operator when their role allows ``action``; otherwise refuse and stop.

    Pages call this first, so a page reached without the router still refuses (and lib audits
    the refusal).
    """
    try:
        return authorize_in(get_context().session_factory, current_operator(), action)
    except PermissionDeniedError as exc:
        st.error(exc.message, icon=":material/block:")
        st.stop()
        raise  # unreachable: st.stop() ends the run


def show_error(exc: ConnectOpsError) -> None:
    """A lib error as one clear message, never a traceback."""
    st.error(exc.message, icon=":material/error:")


FlashKind = Literal["ok", "warn", "error"]


def show_flash(key: str) -> None:
    """The message an action left under ``key`` (``(kind, text)``) before its rerun, shown once."""
    flash: tuple[FlashKind, str] | None = st.session_state.pop(key, None)
    if flash:
        kind, text = flash
        {"ok": st.success, "warn": st.warning}.get(kind, st.error)(text)


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def plain(text: str) -> str:
    """User text (a name, a description) made inert inside Streamlit markdown."""
    return _MARKDOWN.sub(r"\\\1", text)


def mark(ok: bool) -> str:
    return "✓" if ok else "✗"


# ---- account status and KPIs ------------------------------------------------------------------

BadgeColour = Literal["red", "orange", "blue", "green", "violet", "gray"]

#: status -> (badge colour, words a person reads)
_STATUS_LOOK: dict[str, tuple[BadgeColour, str]] = {
    "ACTIVE": ("green", "Active"),
    "RESTRICTED": ("orange", "Restricted"),
    "PENDING": ("blue", "Pending"),
    "DISABLED": ("red", "Disabled"),
    "REJECTED": ("violet", "Rejected"),
    "NOT_CONNECTED": ("gray", "Not connected"),
}


def _look(status: str) -> tuple[BadgeColour, str]:
    return _STATUS_LOOK.get(status, ("gray", status.title()))


def status_label(status: str) -> str:
    """A status in plain words (in a table cell, a pill by :func:`status_column`)."""
    return _look(status)[1]


def status_pills(frame: pd.DataFrame, column: str = "Status") -> pd.DataFrame:
    """The frame with each status as a one-item list, for :func:`status_column`'s pills."""
    pills = frame.copy()
    pills[column] = pd.Series([[value] if value else [] for value in frame[column]],
                              index=frame.index, dtype=object)
    return pills


def status_column(label: str = "Status") -> Any:
    """The status column as a pill in the badge colours. A column setting costs nothing per
    row, where a pandas Styler had Streamlit format every cell of the table on each run."""
    looks = list(_STATUS_LOOK.values())
    return st.column_config.MultiselectColumn(
        label, options=[words for _, words in looks], color=[colour for colour, _ in looks],
        disabled=True)


def status_badge(status: str) -> None:
    """A coloured badge for one account's status."""
    colour, label = _look(status)
    st.badge(label, color=colour)


def kpi_tile(label: str, value: str, *, delta: str | float | None = None,
             help: str | None = None, inverse: bool = False) -> None:
    """One KPI with its delta (``inverse``: a rise is bad, e.g. past-due accounts)."""
    st.metric(label, value, delta=delta, help=help, border=True,
              delta_color="inverse" if inverse else "normal")


# ---- dates and paging -------------------------------------------------------------------------


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


def page_offset(key: str, *, filters: object, page_size: int = PAGE_SIZE) -> int:
    """The offset for the page number kept under ``key``; back to page 1 when filters change.

    Read before the query (the pager widget itself is drawn under the table, once the total
    is known), so a filtered set is counted once per run.
    """
    state = st.session_state
    fingerprint = repr(filters)
    if state.get(f"{key}_filters") != fingerprint:
        state[f"{key}_filters"] = fingerprint
        state[key] = 1
    return (int(state.get(key) or 1) - 1) * page_size


def last_page_offset(total: int, page_size: int = PAGE_SIZE) -> int:
    """The offset of the last page of ``total`` rows (the set shrank under the chosen page)."""
    return (total - 1) // page_size * page_size


def pager(total: int, *, key: str, page_size: int = PAGE_SIZE, at_least: bool = False) -> None:
    """The page number input under a table (see :func:`page_offset`).

    ``at_least``: counting stopped at ``total`` (a search the summaries cannot count, issue
    22), so the rows are "more than" it and the last page is not known.
    """
    pages = max(1, math.ceil(total / page_size))
    if int(st.session_state.get(key) or 1) > pages:
        st.session_state[key] = pages
    rows = (f"more than {total:,} rows" if at_least
            else f"{total:,} row{'s' if total != 1 else ''}")
    if pages == 1 and not at_least:
        st.caption(rows)
        return
    left, right = st.columns([1, 3])
    number = left.number_input("Page", min_value=1, max_value=pages, step=1, key=key)
    right.caption(f"Page {number} of {'at least ' if at_least else ''}{pages:,} · {rows}")


# ---- CSV --------------------------------------------------------------------------------------


def _download(label: str, data: bytes | Callable[[], bytes], *, file_name: str, key: str) -> None:
    st.download_button(label, data=data, file_name=file_name, mime="text/csv", key=key,
                       on_click="ignore", icon=":material/download:")


def csv_download(label: str, rows: Iterable[Mapping[str, Any]], columns: Sequence[str], *,
                 file_name: str, key: str) -> None:
    """A download of a small result already in memory, its columns named as in ``lib``
    (written when the button is clicked)."""
    _download(label, partial(rows_to_csv, list(rows), columns), file_name=file_name, key=key)


def frame_with_csv(frame: pd.DataFrame, *, key: str, file_name: str,
                   column_config: Mapping[str, Any] | None = None) -> None:
    """A table a person reads and, below it, the same rows as a CSV (the same human columns),
    written only when the button is clicked (every run of the page would write it otherwise)."""
    st.dataframe(frame, hide_index=True, width="stretch", key=f"{key}_table",
                 column_config=dict(column_config or {}))
    _download("Download CSV", partial(frame_to_csv, frame), file_name=file_name,
              key=f"{key}_csv")


def table_with_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, key: str,
                   file_name: str, column_config: Mapping[str, Any] | None = None,
                   labels: Mapping[str, str] | None = None) -> None:
    """:func:`frame_with_csv` for ``rows`` restricted to ``columns``, with human headers."""
    frame_with_csv(humanise(rows, columns, labels), key=key, file_name=file_name,
                   column_config=column_config)


def deferred_csv(label: str, factory: sessionmaker[Session],
                 query: Callable[[Session], Iterable[Mapping[str, Any]]],
                 columns: Sequence[str], *, key: str, file_name: str) -> None:
    """A download of a possibly large result, queried only when the button is clicked.

    Streamlit builds it in its download thread, so ``query`` gets a session of its own from
    ``factory``. Bind the filters shown now into ``query`` (``functools.partial``), not names
    a later run of the page may rebind.
    """

    def build() -> bytes:
        with factory() as session:
            return rows_to_csv(query(session), columns)

    _download(label, build, file_name=file_name, key=key)


def prepared_csv(label: str, build: Callable[[], bytes], *, fingerprint: str, file_name: str,
                 key: str) -> None:
    """A big export built in the page's own run when "Prepare" is clicked, for exactly the
    filters shown (``fingerprint``); then its download button.

    Unlike :func:`deferred_csv`, ``build`` runs in the script thread, so it may show a notice
    (a truncated export says so) and its lib error is shown like any other.
    """
    stored = st.session_state.get(f"{key}_data")
    if st.button(f"Prepare {label}", key=f"{key}_prepare", icon=":material/table_view:"):
        try:
            stored = (fingerprint, build())
        except ConnectOpsError as exc:
            show_error(exc)
            stored = None
        st.session_state[f"{key}_data"] = stored
    if stored and stored[0] == fingerprint:
        _download(f"Download {label}", stored[1], file_name=file_name, key=key)
