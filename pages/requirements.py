"""Requirements due: who must give Stripe what, by when? Every connected account with something
to provide, soonest deadline first; what is asked most (``dashboard.requirement_counts``: bars
coloured by urgency, clicking a bar lists its accounts); an export that says what to do.

The export carries a remediation text rather than an onboarding link: links are single use and
die after about five minutes (see ``lib.requirements_queries``).
"""

from __future__ import annotations

from functools import partial

import pandas as pd
import streamlit as st

from dashboard import cache
from dashboard.context import get_context
from dashboard.outreach import contact_columns, outreach_panel, with_contact_columns
from dashboard.page_helpers import (
    PAGE_SIZE,
    deferred_csv,
    page_offset,
    pager,
    require_page,
    show_error,
    status_column,
    status_label,
    status_pills,
)
from dashboard.requirement_counts import PICKED, asked_most
from dashboard.tables import TIME_ZONE, when
from lib.errors import ConnectOpsError
from lib.outreach import MAX_BATCH, due_freelancer_ids
from lib.requirements_queries import (
    CATEGORIES,
    EXPORT_COLUMNS,
    RequirementFilter,
    iter_export_rows,
)
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

state = st.session_state
try:
    counts = cache.requirement_counts(context.session_factory, operator, within_days)
    options = {(c.bucket, c.label): f"{c.label} ({c.category.lower()}): {c.accounts:,}"
               for c in counts}
    if state.get(PICKED) not in options:
        state.pop(PICKED, None)     # that requirement is not asked within this deadline
    picked = state.get(PICKED)
    requirement = RequirementFilter(*picked) if picked else None
    offset = page_offset("requirements_page", filters=(within_days, requirement, not_contacted))
    page = cache.requirements_page(context.session_factory, operator, within_days, PAGE_SIZE,
                                   offset, requirement, not_contacted)
except ConnectOpsError as exc:
    show_error(exc)
    st.stop()

if page.total == 0:
    st.info("No connected account has anything due" +
            (f" with a deadline within {within_days} days." if within_days is not None else "."),
            icon=":material/task_alt:")
    st.stop()

asked_most(counts)

# ---- the accounts ----------------------------------------------------------------------------
st.subheader("Accounts")
st.selectbox("Accounts asked for", list(options), format_func=options.__getitem__, index=None,
             placeholder="Every requirement (click a bar, or choose one here)", key=PICKED)
if requirement is not None:
    st.caption(f"{'More than ' if page.total_is_lower_bound else ''}{page.total:,} account(s) "
               f"asked for {requirement.label} "
               f"({dict(CATEGORIES)[requirement.bucket].lower()}). Clear the choice above to "
               "list every account.")
table = pd.DataFrame([{
    "Deadline": when(r.deadline) or "none", "Freelancer": r.name, "Email": r.email,
    "Status": status_label(r.status), "Stripe account": r.stripe_account_id,
    "Type": (r.account_type or "").title(),
    **{name: "; ".join(r.labels(key)) for key, name in CATEGORIES},
    "What to do": r.remediation,
} for r in page.rows])
ids = [r.freelancer_id for r in page.rows]
table = with_contact_columns(table, ids, contact_columns(context, operator, ids))
st.dataframe(status_pills(table), hide_index=True, width="stretch", key="requirements_table",
             column_config={"Status": status_column()})
st.caption(f"Deadlines are {TIME_ZONE}.")
pager(page.total, key="requirements_page", at_least=page.total_is_lower_bound)

if operator.can(Action.EXPORT):
    deferred_csv(f"Download CSV with remediation ({'more than ' if page.total_is_lower_bound else ''}"
                 f"{page.total:,} accounts)", context.session_factory,
                 partial(iter_export_rows, operator=operator, within_days=within_days,
                         requirement=requirement),
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
