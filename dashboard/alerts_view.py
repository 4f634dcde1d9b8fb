"""The Overview's alert list: the episodes the alert rules opened (``lib.alerts``).

Open alerts first, most recent first, as banners; those cleared in the last week in an
expander. One indexed query; the same for every viewer of the Overview.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.context import AppContext
from dashboard.page_helpers import show_error
from dashboard.tables import when
from lib.alerts import recent_alerts
from lib.errors import ConnectOpsError
from lib.roles import Operator

#: Banners shown before the rest is folded into a table.
MAX_BANNERS = 8


def overview_alerts(context: AppContext, operator: Operator) -> None:
    """Open alerts as banners, recently cleared ones in an expander."""
    try:
        with context.session_factory() as session:
            found = recent_alerts(session, operator=operator)
    except ConnectOpsError as exc:
        show_error(exc)
        return
    open_alerts = [a for a in found if a.is_open]
    for alert in open_alerts[:MAX_BANNERS]:
        show = st.error if alert.severity == "error" else st.warning
        show(f"**{alert.rule}** · since {when(alert.opened_at)}: {alert.summary}",
             icon=":material/notifications_active:")
    rest = open_alerts[MAX_BANNERS:]
    cleared = [a for a in found if not a.is_open]
    if rest or cleared:
        with st.expander(f"{len(rest)} more open alert(s), {len(cleared)} cleared in the last "
                         "7 days" if rest else f"{len(cleared)} alert(s) cleared in the last "
                         "7 days"):
            st.dataframe(pd.DataFrame([{
                "Rule": a.rule, "What": a.summary, "Opened": when(a.opened_at),
                "Cleared": when(a.cleared_at) or "open",
            } for a in rest + cleared]), hide_index=True, width="stretch",
                key="overview_alerts_table")
