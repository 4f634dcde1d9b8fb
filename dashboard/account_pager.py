"""The Accounts table's paging: First / Previous / Next / Last by keyset, a typed page by offset.

The buttons seek from the rows shown (after the last, before the first, or back from the end),
so a deep page costs what the first does. Each button remembers how it reached its page:
``(page number, filters, "after" | "before" | "end", cursor, rows)`` under :data:`POSITION`. A
page number typed into the pager (or any other state) is served by offset.
"""

from __future__ import annotations

import math
from typing import Any

import streamlit as st

from dashboard import cache
from dashboard.context import AppContext
from dashboard.page_helpers import PAGE_SIZE, page_offset, pager
from lib.account_queries import AccountCursor, AccountFilter, AccountPage
from lib.roles import Operator

PAGE = "accounts_page"
POSITION = "accounts_page_position"


def load_page(context: AppContext, operator: Operator,
              filters: AccountFilter) -> tuple[AccountPage, int]:
    """The page of rows to show and its number (lib's errors are the caller's to show)."""
    offset = page_offset(PAGE, filters=filters)
    number = offset // PAGE_SIZE + 1
    keyset = _keyset(number, repr(filters))
    page = cache.account_page(context.session_factory, operator, filters,
                              keyset.pop("limit", PAGE_SIZE), 0 if keyset else offset, **keyset)
    if keyset and not page.rows and page.total:
        # The rows the cursor pointed at are gone (deleted, renamed): this page number by offset.
        st.session_state[POSITION] = None
        page = cache.account_page(context.session_factory, operator, filters, PAGE_SIZE, offset)
    return page, number


def pager_buttons(page: AccountPage, number: int, filters: AccountFilter) -> None:
    """The page number input, then the four buttons when there is more than one page."""
    pager(page.total, key=PAGE, at_least=page.total_is_lower_bound)
    pages = max(1, math.ceil(page.total / PAGE_SIZE))
    if pages == 1 and not page.total_is_lower_bound:
        return
    shown = repr(filters)
    first, previous, following, last = st.columns(4)
    first.button("First", key="accounts_page_first", icon=":material/first_page:",
                 disabled=number <= 1, on_click=_go, args=(1, shown, None, None, PAGE_SIZE))
    previous.button("Previous", key="accounts_page_previous", icon=":material/chevron_left:",
                    disabled=not page.has_previous or number <= 1, on_click=_go,
                    args=(number - 1, shown, "before", page.first, PAGE_SIZE))
    following.button("Next", key="accounts_page_next", icon=":material/chevron_right:",
                     disabled=not page.has_next, on_click=_go,
                     args=(number + 1, shown, "after", page.last, PAGE_SIZE))
    last.button("Last", key="accounts_page_last", icon=":material/last_page:",
                # A counted-up-to total has no known last page (narrow the search instead).
                disabled=number >= pages or page.total_is_lower_bound, on_click=_go,
                args=(pages, shown, "end", None, page.total - (pages - 1) * PAGE_SIZE))


def _go(number: int, filters: str, kind: str | None, cursor: AccountCursor | None,
        rows: int) -> None:
    """A pager button: move to page ``number`` by keyset (``kind`` None: by offset)."""
    st.session_state[PAGE] = number
    st.session_state[POSITION] = (number, filters, kind, cursor, rows) if kind else None


def _keyset(number: int, filters: str) -> dict[str, Any]:
    """list_accounts' keyset arguments when a button led to page ``number`` under these filters."""
    saved = st.session_state.get(POSITION)
    if not saved or saved[0] != number or saved[1] != filters:
        return {}
    _, _, kind, cursor, rows = saved
    if kind == "end":
        return {"from_end": True, "limit": rows}
    return {kind: cursor}
