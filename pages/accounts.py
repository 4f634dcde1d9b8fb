"""Accounts: every freelancer and their Stripe account, filtered and paged in SQL, exportable,
with a detail view and the admin actions (refresh, links, disconnect, send payout).

The table shows one page (50 rows) of the filtered set; the CSV holds every row the filters
select, queried only when the download is clicked. First / Previous / Next / Last page by keyset
(the rows after or before the ones shown), so a deep page costs what the first does; a page
number typed into the pager is served by offset. Actions call ``lib`` with the operator, so
the role check that matters is lib's; buttons are only hidden from roles that cannot use them.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, time
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import cache
from dashboard.context import get_context
from dashboard.destinations import destination_panel, unconfirmed_flag
from dashboard.navigation import PAGES_DIR
from dashboard.outreach import account_outreach
from dashboard.page_helpers import (
    PAGE_SIZE,
    deferred_csv,
    page_offset,
    pager,
    require_page,
    show_error,
    status_badge,
    status_label,
    styled_status,
)
from dashboard.tables import money, when
from dashboard.timeline import render_timeline
from lib import labels
from lib.account_queries import (
    EXPORT_COLUMNS,
    MAX_EXPORT,
    AccountCursor,
    AccountDetail,
    AccountFilter,
    DueFilter,
    account_detail,
    iter_export_rows,
)
from lib.account_status import ConnectionStatus
from lib.connect_flow import create_oauth_link, create_onboarding_link, disconnect
from lib.errors import ConnectOpsError
from lib.roles import Action
from lib.sync import refresh_account

operator = require_page(Action.VIEW_ACCOUNTS)
context = get_context()
state = st.session_state

DUE_LABELS = {DueFilter.ANY: "Any", DueFilter.DUE: "Something due",
              DueFilter.PAST_DUE: "Past due", DueFilter.NOTHING_DUE: "Nothing due"}

st.title("Accounts")
unconfirmed_flag(context, operator)  # new payout destinations held until confirmed

# ---- filters ---------------------------------------------------------------------------------
try:
    countries = cache.country_options(context.session_factory, operator)
except ConnectOpsError as exc:
    show_error(exc)
    st.stop()

left, middle, right, far = st.columns([3, 2, 1, 2])
statuses = left.multiselect("Status", [s.value for s in ConnectionStatus],
                            format_func=status_label, key="accounts_status_filter")
due = middle.selectbox("Requirements", list(DueFilter), format_func=DUE_LABELS.__getitem__,
                       key="accounts_due_filter")
country = right.selectbox("Country", ["Any", *countries], key="accounts_country_filter")
since = far.date_input("Connected since", value=None, key="accounts_connected_since")
search = st.text_input("Search", placeholder="Name, email or acct_… id",
                       key="accounts_search")

filters = AccountFilter(
    statuses=tuple(statuses), due=DueFilter(due),
    country=None if country == "Any" else country,
    connected_since=datetime.combine(since, time(), tzinfo=UTC) if since else None,
    search=search.strip(),
)

# ---- the page of rows ------------------------------------------------------------------------
#: How the pager's buttons reached the page shown: (page number, filters, "after" | "before" |
#: "end", cursor, rows). A page number typed in (or any other state) is served by offset.
POSITION = "accounts_page_position"


def _go(number: int, kind: str | None, cursor: AccountCursor | None, rows: int) -> None:
    """A pager button: move to page ``number`` by keyset (``kind`` None: by offset)."""
    state["accounts_page"] = number
    state[POSITION] = (number, repr(filters), kind, cursor, rows) if kind else None


def _keyset(number: int) -> dict[str, Any]:
    """list_accounts' keyset arguments when a button led to page ``number`` under these filters."""
    saved = state.get(POSITION)
    if not saved or saved[0] != number or saved[1] != repr(filters):
        return {}
    _, _, kind, cursor, rows = saved
    if kind == "end":
        return {"from_end": True, "limit": rows}
    return {kind: cursor}


offset = page_offset("accounts_page", filters=filters)
number = offset // PAGE_SIZE + 1
keyset = _keyset(number)
try:
    page = cache.account_page(context.session_factory, operator, filters,
                              keyset.pop("limit", PAGE_SIZE), 0 if keyset else offset, **keyset)
    if keyset and not page.rows and page.total:
        # The rows the cursor pointed at are gone (deleted, renamed): this page number by offset.
        state[POSITION] = None
        page = cache.account_page(context.session_factory, operator, filters, PAGE_SIZE,
                                  offset)
except ConnectOpsError as exc:
    show_error(exc)
    st.stop()

if page.total == 0:
    if filters == AccountFilter():
        st.info("No freelancers yet. They appear here once the marketplace creates them or "
                "an onboarding link is generated.", icon=":material/info:")
    else:
        st.info("No freelancer matches these filters.", icon=":material/filter_alt_off:")
else:
    frame = pd.DataFrame([{
        "Freelancer": r.name, "Email": r.email, "Status": status_label(r.status),
        "Stripe account": r.stripe_account_id or "", "Type": r.account_type or "",
        "Country": r.country or "", "Charges": r.charges_enabled, "Payouts": r.payouts_enabled,
        "Due": r.requirements_due, "Past due": r.past_due, "Deadline": when(r.deadline),
        "Last synced": when(r.last_synced),
    } for r in page.rows])
    st.dataframe(styled_status(frame), hide_index=True, width="stretch", key="accounts_table",
                 column_config={
                     "Charges": st.column_config.CheckboxColumn("Charges", width="small"),
                     "Payouts": st.column_config.CheckboxColumn("Payouts", width="small"),
                 })
pager(page.total, key="accounts_page", at_least=page.total_is_lower_bound)
pages = max(1, math.ceil(page.total / PAGE_SIZE))
if pages > 1 or page.total_is_lower_bound:
    first, previous, following, last = st.columns(4)
    first.button("First", key="accounts_page_first", icon=":material/first_page:",
                 disabled=number <= 1, on_click=_go, args=(1, None, None, PAGE_SIZE))
    previous.button("Previous", key="accounts_page_previous", icon=":material/chevron_left:",
                    disabled=not page.has_previous or number <= 1, on_click=_go,
                    args=(number - 1, "before", page.first, PAGE_SIZE))
    following.button("Next", key="accounts_page_next", icon=":material/chevron_right:",
                     disabled=not page.has_next, on_click=_go,
                     args=(number + 1, "after", page.last, PAGE_SIZE))
    last.button("Last", key="accounts_page_last", icon=":material/last_page:",
                # A counted-up-to total has no known last page (narrow the search instead).
                disabled=number >= pages or page.total_is_lower_bound, on_click=_go,
                args=(pages, "end", None, page.total - (pages - 1) * PAGE_SIZE))

if page.total and operator.can(Action.EXPORT):
    factory = context.session_factory

    def _export_rows():  # type: ignore[no-untyped-def]
        # Runs in Streamlit's download thread: its own session, the filters shown now.
        with factory() as session:
            yield from iter_export_rows(session, operator=operator, filters=filters)

    shown = min(page.total, MAX_EXPORT)
    label = (f"Download CSV (up to {MAX_EXPORT:,} rows)" if page.total_is_lower_bound
             else f"Download CSV ({shown:,} row{'s' if shown != 1 else ''})")
    deferred_csv(label, _export_rows, EXPORT_COLUMNS, key="accounts_export",
                 file_name="accounts.csv")
    if page.total > MAX_EXPORT:
        st.caption(f"The CSV holds the first {MAX_EXPORT:,} rows; narrow the filters for more.")

# ---- one account in detail -------------------------------------------------------------------
st.divider()
st.subheader("Account detail")
choices = {r.freelancer_id: f"{r.name} · {r.email}" for r in page.rows}
if not choices:
    st.caption("Select a freelancer once the table shows some.")
    st.stop()
selected = st.selectbox("Freelancer (from this page of the table)", list(choices),
                        index=None, format_func=choices.__getitem__,
                        placeholder="Choose a freelancer", key="accounts_detail_freelancer")
if selected is None:
    st.stop()


def _load(freelancer_id: int) -> AccountDetail | None:
    try:
        with context.session_factory() as session:
            return account_detail(session, operator=operator, freelancer_id=freelancer_id)
    except ConnectOpsError as exc:
        show_error(exc)
        return None


detail = _load(int(selected))
if detail is None:
    st.stop()

title, badge = st.columns([4, 1])
title.markdown(f"### {detail.name}\n{detail.email}")
with badge:
    status_badge(detail.status)

facts = st.columns(4)
facts[0].markdown(f"**Stripe account**  \n`{detail.stripe_account_id or 'none'}`")
facts[1].markdown(f"**Type / method**  \n{(detail.account_type or '–').title()} / "
                  f"{labels.method(detail.connection_method) or '–'}")
facts[2].markdown(f"**Country**  \n{detail.country or '–'}")
facts[3].markdown(f"**Last synced**  \n{when(detail.last_synced) or '–'}")
facts = st.columns(4)
facts[0].markdown(f"**Charges enabled**  \n{'Yes' if detail.charges_enabled else 'No'}")
facts[1].markdown(f"**Payouts enabled**  \n{'Yes' if detail.payouts_enabled else 'No'}")
facts[2].markdown(f"**Details submitted**  \n{'Yes' if detail.details_submitted else 'No'}")
facts[3].markdown(f"**Deadline**  \n{when(detail.deadline) or 'none'}")
if detail.disabled_reason:
    st.warning(f"Disabled reason: {detail.disabled_reason_label} (`{detail.disabled_reason}`)")
destination_panel(context, operator, detail.freelancer_id)

st.markdown("**Requirements**")
if detail.requirements:
    st.dataframe(pd.DataFrame([{"When": r.category, "What": r.label, "Stripe code": r.code}
                               for r in detail.requirements]),
                 hide_index=True, width="stretch", key="accounts_requirements_table")
elif detail.stripe_account_id:
    st.caption("Nothing requested by Stripe.")
else:
    st.caption("No connected account.")

if detail.capabilities:
    st.markdown("**Capabilities**  \n" + ", ".join(
        f"{name}: {value}" for name, value in sorted(detail.capabilities.items())))

st.markdown("**Connection history**")
if detail.attempts:
    st.dataframe(pd.DataFrame([{
        "Started": when(a.started_at), "Method": labels.method(a.method),
        "Issued by": a.issued_by, "Outcome": labels.outcome(a.outcome),
        "Reason": labels.failure_reason(a.failure_reason),
        "Returned": when(a.returned_at), "Finished": when(a.finished_at),
        "Account": a.stripe_account_id or "",
    } for a in detail.attempts]), hide_index=True, width="stretch",
        key="accounts_attempts_table")
else:
    st.caption("No connection attempts.")

st.markdown("**Payout history**")
if detail.payouts:
    st.dataframe(pd.DataFrame([{
        "Created": when(p.created_at), "Amount": money(p.amount_minor, p.currency),
        "Status": labels.payout_status(p.status), "Transfer": p.stripe_transfer_id or "",
        "Description": p.description,
        "Requested by": p.requested_by,
    } for p in detail.payouts]), hide_index=True, width="stretch",
        key="accounts_payouts_table")
    if detail.payouts_total > len(detail.payouts):
        st.caption(f"The latest {len(detail.payouts)} of {detail.payouts_total} payouts; the "
                   "Payouts page lists them all.")
else:
    st.caption("No payouts yet.")

render_timeline(context, operator, detail.freelancer_id)
account_outreach(context, operator, freelancer_id=detail.freelancer_id,
                 label=f"{detail.name} · {detail.email}",
                 due=any(r.category in ("Past due", "Currently due") for r in detail.requirements))

# ---- admin actions ---------------------------------------------------------------------------
ACTIONS = (Action.REFRESH_ACCOUNT, Action.GENERATE_LINK, Action.DISCONNECT, Action.REQUEST_PAYOUT)
if not any(operator.can(a) for a in ACTIONS):
    st.stop()

st.markdown("**Actions**")
freelancer_id = detail.freelancer_id
buttons = st.columns(5)
clicked: dict[str, bool] = {}
if operator.can(Action.REFRESH_ACCOUNT):
    clicked["refresh"] = buttons[0].button(
        "Refresh from Stripe", key="accounts_refresh", icon=":material/sync:",
        disabled=detail.stripe_account_id is None)
if operator.can(Action.GENERATE_LINK):
    clicked["onboarding"] = buttons[1].button(
        "New onboarding link", key="accounts_onboarding_link", icon=":material/link:",
        help="Hosted onboarding for an Express account (created if needed).")
    clicked["oauth"] = buttons[2].button(
        "New OAuth link", key="accounts_oauth_link", icon=":material/key:",
        help="For a freelancer who already has a Standard Stripe account.")
if operator.can(Action.DISCONNECT):
    clicked["disconnect"] = buttons[3].button(
        "Disconnect…", key="accounts_disconnect", icon=":material/link_off:",
        disabled=detail.stripe_account_id is None)
if operator.can(Action.REQUEST_PAYOUT):
    clicked["payout"] = buttons[4].button(
        "Send payout", key="accounts_send_payout", icon=":material/payments:")


def _act(label: str, run) -> bool:  # type: ignore[no-untyped-def]
    """Run a lib action; its error is one message. True when it succeeded."""
    try:
        with st.spinner(label):
            run()
    except ConnectOpsError as exc:
        show_error(exc)
        return False
    cache.clear_account_reads()
    return True


if clicked.get("refresh") and detail.stripe_account_id:
    account_id = detail.stripe_account_id
    if _act("Reading the account from Stripe…", lambda: refresh_account(
            context.session_factory, gateway=context.gateway, operator=operator,
            account_id=account_id)):
        state["accounts_flash"] = f"Refreshed {account_id} from Stripe."
        st.rerun()

if clicked.get("onboarding") or clicked.get("oauth"):
    def _link() -> None:
        if clicked.get("oauth"):
            with context.session_factory.begin() as session:
                link = create_oauth_link(session, gateway=context.gateway,
                                         settings=context.settings, operator=operator,
                                         freelancer_id=freelancer_id)
        else:
            link = create_onboarding_link(context.session_factory, gateway=context.gateway,
                                          settings=context.settings, operator=operator,
                                          freelancer_id=freelancer_id)
        state["accounts_link"] = (freelancer_id, link.url, link.expires_in, link.method.value)

    _act("Asking Stripe for a link…", _link)

if clicked.get("disconnect"):
    state["accounts_confirm_disconnect"] = freelancer_id

if clicked.get("payout"):
    state["payouts_freelancer_id"] = freelancer_id
    st.switch_page(str(PAGES_DIR / "payouts.py"))

flash = state.pop("accounts_flash", None)
if flash:
    st.success(flash, icon=":material/check_circle:")

link = state.get("accounts_link")
if link and link[0] == freelancer_id:
    _, url, expires_in, method = link
    kind = "OAuth consent" if method == "oauth" else "onboarding"
    st.success(f"New {kind} link: single use, valid for about {max(expires_in // 60, 1)} "
               "minute(s). Send it to the freelancer now.", icon=":material/link:")
    st.code(url, language=None)

if state.get("accounts_confirm_disconnect") == freelancer_id and detail.stripe_account_id:
    st.warning(f"Disconnect {detail.name} from {detail.stripe_account_id}? Payouts to this "
               "freelancer stop until they connect again. The history is kept.",
               icon=":material/warning:")
    yes, no = st.columns(2)
    if yes.button("Yes, disconnect", type="primary", key="accounts_disconnect_confirm"):
        state.pop("accounts_confirm_disconnect", None)
        if _act("Disconnecting…", lambda: disconnect(
                context.session_factory, gateway=context.gateway, operator=operator,
                freelancer_id=freelancer_id)):
            state["accounts_flash"] = f"{detail.name} is disconnected."
            st.rerun()
    if no.button("Cancel", key="accounts_disconnect_cancel"):
        state.pop("accounts_confirm_disconnect", None)
        st.rerun()
