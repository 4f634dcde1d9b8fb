"""Accounts: every freelancer and their Stripe account, filtered and paged in SQL, exportable,
with a detail view and the admin actions (refresh, links, disconnect, send payout).

The table shows one page (50 rows) of the filtered set, paged by keyset from its buttons
(``dashboard.account_pager``); the CSV holds every row the filters select, queried only when
the download is clicked. The detail is ``dashboard.account_detail``, the actions
``dashboard.account_actions``: they call ``lib`` with the operator, so the role check that
matters is lib's.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from functools import partial

import pandas as pd
import streamlit as st

from dashboard import cache
from dashboard.account_actions import account_actions
from dashboard.account_detail import load_detail, show_account
from dashboard.account_pager import load_page, pager_buttons
from dashboard.context import get_context
from dashboard.destinations import unconfirmed_flag
from dashboard.page_helpers import (
    deferred_csv,
    require_page,
    show_error,
    status_column,
    status_label,
    status_pills,
)
from dashboard.tables import when
from lib.account_queries import (
    EXPORT_COLUMNS,
    MAX_EXPORT,
    AccountFilter,
    DueFilter,
    iter_export_rows,
)
from lib.account_status import ConnectionStatus
from lib.errors import ConnectOpsError
from lib.roles import Action

operator = require_page(Action.VIEW_ACCOUNTS)
context = get_context()
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
search = st.text_input("Search", placeholder="Name, email or acct_… id", key="accounts_search")
filters = AccountFilter(
    statuses=tuple(statuses), due=DueFilter(due),
    country=None if country == "Any" else country,
    connected_since=datetime.combine(since, time(), tzinfo=UTC) if since else None,
    search=search.strip(),
)

# ---- the page of rows ------------------------------------------------------------------------
try:
    page, number = load_page(context, operator, filters)
except ConnectOpsError as exc:
    show_error(exc)
    st.stop()
if page.total == 0 and filters == AccountFilter():
    st.info("No freelancers yet. They appear here once the marketplace creates them or "
            "an onboarding link is generated.", icon=":material/info:")
elif page.total == 0:
    st.info("No freelancer matches these filters.", icon=":material/filter_alt_off:")
else:
    frame = pd.DataFrame([{
        "Freelancer": r.name, "Email": r.email, "Status": status_label(r.status),
        "Stripe account": r.stripe_account_id or "", "Type": r.account_type or "",
        "Country": r.country or "", "Charges": r.charges_enabled, "Payouts": r.payouts_enabled,
        "Due": r.requirements_due, "Past due": r.past_due, "Deadline": when(r.deadline),
        "Last synced": when(r.last_synced),
    } for r in page.rows])
    st.dataframe(status_pills(frame), hide_index=True, width="stretch", key="accounts_table",
                 column_config={
                     "Status": status_column(),
                     "Charges": st.column_config.CheckboxColumn("Charges", width="small"),
                     "Payouts": st.column_config.CheckboxColumn("Payouts", width="small"),
                 })
pager_buttons(page, number, filters)

if page.total and operator.can(Action.EXPORT):
    shown = min(page.total, MAX_EXPORT)
    deferred_csv(f"Download CSV (up to {MAX_EXPORT:,} rows)" if page.total_is_lower_bound
                 else f"Download CSV ({shown:,} row{'s' if shown != 1 else ''})",
                 context.session_factory,
                 partial(iter_export_rows, operator=operator, filters=filters), EXPORT_COLUMNS,
                 key="accounts_export", file_name="accounts.csv")
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
detail = None if selected is None else load_detail(context, operator, int(selected))
if detail is None:
    st.stop()
show_account(context, operator, detail)
account_actions(context, operator, detail)
