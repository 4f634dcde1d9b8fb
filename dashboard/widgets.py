"""Shared rendering for the Overview, Accounts, Requirements and Metrics pages.

The page gate, lib errors as one message, status badges, KPI tiles, a pager, charts, and the two
ways a table becomes a CSV: in memory for small tables (chart data) and deferred for big exports
(the query runs only when the button is clicked, in Streamlit's download thread). Every CSV goes
through ``lib.exports`` (formula-injection safe).

Charts live in ``dashboard/charts.py`` (Altair, each spec built once); tables go through
``dashboard/tables.py`` (human headers, readable cells, UTC).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import tables
from dashboard.auth import current_operator
from dashboard.context import get_context
from dashboard.tables import humanise
from lib.errors import ConnectOpsError, PermissionDeniedError
from lib.exports import frame_to_csv, rows_to_csv
from lib.roles import Action, Operator, authorize

PAGE_SIZE = 50

#: status -> (badge colour, words a person reads, table text colour)
_STATUS_LOOK = {
    "ACTIVE": ("green", "Active", "#067647"),
    "RESTRICTED": ("orange", "Restricted", "#b54708"),
    "PENDING": ("blue", "Pending", "#175cd3"),
    "DISABLED": ("red", "Disabled", "#b42318"),
    "REJECTED": ("violet", "Rejected", "#6941c6"),
    "NOT_CONNECTED": ("gray", "Not connected", "#475467"),
}
_LOOK_BY_LABEL = {label: colour for _, label, colour in _STATUS_LOOK.values()}


def require_page(action: Action) -> Operator:
    """The signed-in operator when their role allows ``action``; otherwise refuse and stop.

    Pages call this first, so a page reached without the router still refuses.
    """
    try:
        return authorize(current_operator(), action,
                         session=get_context().session_factory)
    except PermissionDeniedError as exc:
        st.error(exc.message, icon=":material/block:")
        st.stop()
        raise  # unreachable: st.stop() ends the run


def show_lib_error(exc: ConnectOpsError) -> None:
    """A domain error as one clear message, never a traceback."""
    st.error(exc.message, icon=":material/error:")


def status_label(status: str) -> str:
    return _STATUS_LOOK.get(status, ("gray", status.title(), ""))[1]


def status_cell(status: str) -> str:
    """A status for a table cell, in plain words (coloured by :func:`styled_status`)."""
    return status_label(status)


def styled_status(frame: pd.DataFrame, column: str = "Status") -> Any:
    """The frame with its status column in the badge colours (no emoji: fonts vary)."""
    def colour(value: object) -> str:
        found = _LOOK_BY_LABEL.get(str(value))
        return f"color: {found}; font-weight: 600" if found else ""

    return frame.style.map(colour, subset=[column])


def status_badge(status: str) -> None:
    """A coloured badge for one account's status."""
    colour, label, _ = _STATUS_LOOK.get(status, ("gray", status.title(), ""))
    st.badge(label, color=colour)  # type: ignore[arg-type]


def kpi_tile(label: str, value: str, *, delta: str | float | None = None,
             help: str | None = None, inverse: bool = False) -> None:
    """One KPI with its delta (``inverse``: a rise is bad, e.g. past-due accounts)."""
    st.metric(label, value, delta=delta, help=help, border=True,
              delta_color="inverse" if inverse else "normal")


def when(moment: datetime | None) -> str:
    """A timestamp for tables: UTC, minutes, no microseconds (``dashboard.tables.when``)."""
    return tables.when(moment)


def page_offset(key: str, *, filters: object, page_size: int = PAGE_SIZE) -> int:
    """The offset for the page number kept under ``key``; back to page 1 when filters change.

    Read before the query (the pager widget itself is drawn under the table, once the total
    is known).
    """
    state = st.session_state
    fingerprint = repr(filters)
    if state.get(f"{key}_filters") != fingerprint:
        state[f"{key}_filters"] = fingerprint
        state[key] = 1
    return (int(state.get(key) or 1) - 1) * page_size


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


def table_with_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, key: str,
                   file_name: str, column_config: Mapping[str, Any] | None = None,
                   labels: Mapping[str, str] | None = None) -> None:
    """A small in-memory table and, below it, its CSV: the same rows, human column names."""
    frame = humanise(rows, columns, labels)
    st.dataframe(frame, hide_index=True, width="stretch", key=f"{key}_table",
                 column_config=dict(column_config or {}))
    st.download_button("Download CSV", data=frame_to_csv(frame), file_name=file_name,
                       mime="text/csv", key=f"{key}_csv", on_click="ignore",
                       icon=":material/download:")


def deferred_csv(label: str, rows: Callable[[], Iterable[Mapping[str, Any]]],
                 columns: Sequence[str], *, key: str, file_name: str) -> None:
    """A download of a possibly large result, queried only when the button is clicked.

    ``rows`` must open its own database session: Streamlit calls it from another thread.
    """

    def build() -> bytes:
        return rows_to_csv(rows(), columns)

    st.download_button(label, data=build, file_name=file_name, mime="text/csv", key=key,
                       on_click="ignore", icon=":material/download:")
