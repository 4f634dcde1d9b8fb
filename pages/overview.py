"""Overview: the desk's health at a glance (KPI tiles with deltas) and what needs attention now.

Three statements from ``lib.insights`` (cached for a minute): the summaries kept on write
(issue 22) and the partial days at the windows' ends, whatever the number of accounts. Alerts come first: they are why someone opens this page.
"""

from __future__ import annotations

import streamlit as st

from dashboard import cache
from dashboard.alerts_view import overview_alerts
from dashboard.context import get_context
from dashboard.page_helpers import kpi_tile, require_page, show_error
from lib.errors import ConnectOpsError
from lib.insights import alerts_for
from lib.roles import Action

operator = require_page(Action.VIEW_OVERVIEW)
context = get_context()

st.title("Overview")
try:
    kpis = cache.overview_kpis(context.session_factory, operator)
except ConnectOpsError as exc:
    show_error(exc)
    st.stop()

as_of, refresh = st.columns([4, 1])
as_of.caption(f"As of {kpis.as_of:%Y-%m-%d %H:%M:%S} UTC · cached for up to a minute")
if refresh.button("Refresh now", key="overview_refresh", icon=":material/refresh:"):
    cache.overview_kpis.clear()
    st.rerun()

for alert in alerts_for(kpis):
    (st.error if alert.level == "error" else st.warning)(alert.message, icon=":material/warning:")
needed = cache.funds_needed(context.session_factory, context.gateway, operator)
for short in needed or []:
    st.error(f"Funds needed: {short.currency.upper()} is short by {short.display} for the "
             "payouts already approved or awaiting approval."
             + (" See Funding." if operator.can(Action.VIEW_FUNDING) else ""),
             icon=":material/account_balance:")
if needed is None:
    st.caption("Stripe's balance could not be read just now: funding was not checked.")
overview_alerts(context, operator)  # what the alert rules found (issue 20)

if kpis.connected == 0 and not kpis.payouts_this_month and not kpis.success_rate.denominator:
    st.info("No connected accounts yet. Generate a first link on the Onboarding links page; "
            "the figures appear here as freelancers connect.", icon=":material/info:")

row = st.columns(3)
with row[0]:
    kpi_tile("Connected accounts", f"{kpis.connected:,}",
             delta=f"+{kpis.connected_last_30_days:,} in 30 days",
             help="Freelancers with a connected Stripe account now; the delta counts those "
                  "who connected in the last 30 days.")
with row[1]:
    share = kpis.active_share.percent
    kpi_tile("Share ACTIVE", "–" if share is None else f"{share}%",
             help=f"{kpis.active:,} of {kpis.connected:,} connected accounts can be paid now.")
with row[2]:
    rate = kpis.success_rate.percent
    points = kpis.success_rate_delta_points
    kpi_tile("Connection success (30 days)", "–" if rate is None else f"{rate}%",
             delta=None if points is None else f"{points:+} pts vs previous 30 days",
             help=f"{kpis.success_rate.numerator} of {kpis.success_rate.denominator} attempts "
                  "with an outcome succeeded (pending ones are left out).")

row = st.columns(3)
with row[0]:
    kpi_tile("Requirements due", f"{kpis.requirements_due:,}",
             help="Connected accounts with something currently due.")
with row[1]:
    kpi_tile("Past due", f"{kpis.past_due:,}",
             help="Connected accounts with past-due requirements: payouts stop or have stopped.")
with row[2]:
    kpi_tile("Deadlines in the next 7 days", f"{kpis.deadlines_next_7_days:,}",
             help="Accounts whose current requirements deadline falls within 7 days.")

st.subheader("Payouts paid this month")
st.caption("Each currency on its own, since the 1st (UTC); the change is against the same days "
           "of last month.")
if not kpis.payouts_this_month:
    st.info("No payouts paid this month or in the same days of last month.")
else:
    columns = st.columns(min(4, len(kpis.payouts_this_month)))
    for index, total in enumerate(kpis.payouts_this_month):
        with columns[index % len(columns)]:
            # The delta alone: "vs same days last month" after it was cut off in a quarter
            # of the page at 1440 px (issue 21); the caption above says what it compares.
            kpi_tile(total.currency.upper(), total.display, delta=total.delta_display,
                     help=f"{total.count} paid payout(s) since the 1st (UTC). Currencies are "
                          "never added together.")
