"""The Requirements page's chart of what Stripe asks most, and the pick it drives.

Bars are coloured by urgency (past due in red) with the count on each; clicking a bar lists its
accounts under the chart (the pick is kept under :data:`PICKED`, the selectbox's key too).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts
from dashboard.page_helpers import table_with_csv
from lib.requirements_queries import RequirementCount

#: The (list, requirement) whose accounts are listed: set by a click on a bar or the selectbox.
PICKED = "requirements_picked"


def asked_most(counts: list[RequirementCount]) -> None:
    """The chart (a click picks a requirement) and, in an expander, its table and CSV."""
    st.subheader("What Stripe is asking for")
    if not counts:
        return
    rank = {name: index for index, name in enumerate(charts.URGENCY_ORDER)}
    frame = pd.DataFrame([{
        "row": f"{c.bucket}|{c.label}", "label": c.label, "category": c.category,
        "bucket": c.bucket, "accounts": c.accounts,
    } for c in sorted(counts, key=lambda c: (rank.get(c.category, 9), -c.accounts, c.label))])
    charts.show("requirements_due", frame, key="requirements_counts_chart",
                height=max(120, 24 * len(counts)), on_select=_picked_from_chart)
    st.caption("Red: past due (payouts stop or have stopped). Orange: due now. Blue: Stripe is "
               "verifying. Grey: due later. Click a bar to list its accounts below.")
    with st.expander("Table and CSV"):
        table_with_csv([{"category": c.category, "label": c.label, "accounts": c.accounts}
                        for c in counts], ["category", "label", "accounts"],
                       key="requirements_counts", file_name="requirements-by-type.csv",
                       labels={"category": "When", "label": "Requirement"})


def _picked_from_chart() -> None:
    """A bar was clicked: list the accounts it counts (a click on nothing lists them all)."""
    state = st.session_state
    chosen = (state.get("requirements_counts_chart") or {}).get("selection", {}).get("pick")
    if chosen:
        state[PICKED] = (str(chosen[0].get("bucket")), str(chosen[0].get("label")))
    else:
        state.pop(PICKED, None)
