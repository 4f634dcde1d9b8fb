"""Requirements due: every connected account with something to provide, soonest deadline first,
what is asked most (a bar chart in plain words), and an export that says what to do per account.

The export carries a remediation text rather than an onboarding link: links are single use and
die after about five minutes (see ``lib.requirements_queries``).
"""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd
import streamlit as st

from dashboard import cache
from dashboard.context import get_context
from dashboard.outreach import contact_columns, outreach_panel, with_contact_columns
from dashboard.widgets import (
    PAGE_SIZE,
    channel,
    chart,
    deferred_csv,
    page_offset,
    pager,
    require_page,
    show_lib_error,
    status_cell,
    styled_status,
    table_with_csv,
    when,
)
from lib.errors import ConnectOpsError
from lib.outreach import MAX_BATCH, due_freelancer_ids
from lib.requirements_queries import CATEGORIES, EXPORT_COLUMNS, iter_export_rows
from lib.roles import Action

operator = require_page(Action.VIEW_REQUIREMENTS)
context = get_context()

st.title("Requirements due")
st.caption("Connected accounts with anything currently due, past due, eventually due or in "
           "verification at Stripe, soonest deadline first (overdue at the top).")

deadline_column, contacted_column = st.columns(2)
within = deadline_column.number_input(
    "Deadline within N days", min_value=0, max_value=365, value=None, step=1,
    placeholder="Any deadline (or none)", key="requirements_within_days",
    help="Overdue deadlines are included: they are the most urgent.")
within_days = None if within is None else int(within)
quiet = contacted_column.number_input(
    "Due and not contacted in N days", min_value=0, max_value=365, value=None, step=1,
    placeholder="Contacted or not", key="requirements_not_contacted_days",
    help="Only accounts with something currently or past due whose freelancer was not emailed "
         "about it in that many days.")
not_contacted = None if quiet is None else int(quiet)

offset = page_offset("requirements_page", filters=(within_days, not_contacted))
try:
    counts = cache.requirement_counts(context.session_factory, operator, within_days)
    page = cache.requirements_page(context.session_factory, operator, within_days, PAGE_SIZE,
                                   offset, not_contacted)
except ConnectOpsError as exc:
    show_lib_error(exc)
    st.stop()

if page.total == 0:
    st.info("No connected account has anything due" +
            (f" with a deadline within {within_days} days." if within_days is not None else "."),
            icon=":material/task_alt:")
    st.stop()

# ---- what is asked most ----------------------------------------------------------------------
st.subheader("What Stripe is asking for")
count_rows = [asdict(c) for c in counts]
if count_rows:
    frame = pd.DataFrame(count_rows)
    urgency = [name for _, name in CATEGORIES]
    chart(frame, "bar", key="requirements_counts_chart",
          y=channel("label", "nominal", None, sort="-x", axis={"labelLimit": 320}),
          x=channel("accounts", "quantitative", "Accounts"),
          color=channel("category", "nominal", "When", sort=urgency),
          yOffset=channel("category", "nominal", sort=urgency),
          tooltip=["category", "label", "accounts"])
    table_with_csv(count_rows, ["category", "label", "accounts"], key="requirements_counts",
                   file_name="requirements-by-type.csv")

# ---- the accounts ----------------------------------------------------------------------------
st.subheader("Accounts")
table = pd.DataFrame([{
    "Deadline": when(r.deadline) or "none", "Freelancer": r.name, "Email": r.email,
    "Status": status_cell(r.status), "Stripe account": r.stripe_account_id,
    "Type": r.account_type or "",
    **{name: "; ".join(r.labels(key)) for key, name in CATEGORIES},
    "What to do": r.remediation,
} for r in page.rows])
ids = [r.freelancer_id for r in page.rows]
table = with_contact_columns(table, ids, contact_columns(context, operator, ids))
st.dataframe(styled_status(table), hide_index=True, width="stretch", key="requirements_table")
pager(page.total, key="requirements_page")

if operator.can(Action.EXPORT):
    factory = context.session_factory

    def _export_rows():  # type: ignore[no-untyped-def]
        # Runs in Streamlit's download thread: its own session, the filter shown now.
        with factory() as session:
            yield from iter_export_rows(session, operator=operator, within_days=within_days)

    deferred_csv(f"Download CSV with remediation ({page.total:,} accounts)", _export_rows,
                 EXPORT_COLUMNS, key="requirements_export", file_name="requirements-due.csv")
    st.caption("Each row names what to do: for Express accounts generate an onboarding link "
               "on the Onboarding links page (links are single use and last about 5 minutes, "
               "so none are pre-generated); for Standard accounts ask the freelancer to update "
               "their own Stripe Dashboard.")

if operator.can(Action.SEND_OUTREACH):
    st.subheader("Email freelancers what Stripe needs")

    def _all_matching() -> list[int]:
        with context.session_factory() as session:
            return due_freelancer_ids(session, operator=operator, within_days=within_days,
                                      not_contacted_days=not_contacted)

    outreach_panel(context, operator, key="requirements_outreach",
                   choices={r.freelancer_id: f"{r.name} · {r.email}" for r in page.rows},
                   all_matching=_all_matching,
                   all_label="Every freelancer matching the filters with something currently or "
                             f"past due (up to {MAX_BATCH:,})")
