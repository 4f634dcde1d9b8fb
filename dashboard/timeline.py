"""The freelancer's timeline in the account detail: filters, the list, its CSV.

The query is ``lib.timeline`` (roles checked there); this module only draws it, so the
Accounts page calls one function.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import streamlit as st

from dashboard.context import AppContext
from dashboard.page_helpers import show_error
from dashboard.tables import TIME_ZONE, show_table
from lib.errors import ConnectOpsError
from lib.exports import rows_to_csv
from lib.roles import Action, Operator
from lib.timeline import (
    EXPORT_COLUMNS,
    KIND_LABELS,
    Kind,
    freelancer_timeline,
    timeline_export_rows,
)


def _bounds(chosen: object) -> tuple[datetime | None, datetime | None]:
    values = list(chosen) if isinstance(chosen, tuple | list) else (
        [chosen] if isinstance(chosen, date) else [])
    since = datetime.combine(values[0], time(), tzinfo=UTC) if values else None
    until = (datetime.combine(values[1], time(), tzinfo=UTC) + timedelta(days=1)
             if len(values) > 1 else None)
    return since, until


def render_timeline(context: AppContext, operator: Operator, freelancer_id: int) -> None:
    """The timeline of ``freelancer_id`` with its filters and export."""
    st.markdown("**Timeline**")
    kinds_shown = [k for k in Kind if k is not Kind.AUDIT or operator.can(Action.VIEW_AUDIT_LOG)]
    # The story first; the audit entries behind it (one per step of each payout) on demand.
    left, right = st.columns([3, 2])
    chosen_kinds = left.multiselect(
        "Show", kinds_shown, default=[k for k in kinds_shown if k is not Kind.AUDIT],
        format_func=KIND_LABELS.__getitem__, key=f"accounts_timeline_kinds_{freelancer_id}",
        help="Audit entries (who did what, step by step) are off by default: add them here.")
    chosen_dates = right.date_input(f"Between ({TIME_ZONE})", value=[],
                                    key=f"accounts_timeline_dates_{freelancer_id}",
                                    help="Leave empty for the whole story.")
    since, until = _bounds(chosen_dates)
    try:
        with context.session_factory() as session:
            timeline = freelancer_timeline(session, operator=operator,
                                           freelancer_id=freelancer_id, kinds=chosen_kinds,
                                           since=since, until=until)
    except ConnectOpsError as exc:
        show_error(exc)
        return
    if not timeline.entries:
        st.caption("Nothing happened in this window." if since or until or
                   len(chosen_kinds) < len(kinds_shown) else "No history yet.")
        return
    show_table([{
        "at": e.at, "kind": KIND_LABELS[e.kind], "event": e.event, "detail": e.detail,
        "amount": e.amount, "by": e.by, "reference": e.reference,
    } for e in timeline.entries], list(EXPORT_COLUMNS), key=f"accounts_timeline_{freelancer_id}",
        labels={"at": f"When ({TIME_ZONE})", "kind": "What"}, note_zone=False,
        height=min(38 + 35 * len(timeline.entries), 420),
        column_config={"Detail": st.column_config.TextColumn(width="large"),
                       "Event": st.column_config.TextColumn(width="medium")})
    counts = ", ".join(f"{n} {KIND_LABELS[k].lower()}" for k, n in timeline.counts().items() if n)
    st.caption(f"{len(timeline.entries)} entries, newest first: {counts}."
               + (" The oldest entries of a busy source are left out; narrow the dates."
                  if timeline.truncated else ""))
    if operator.can(Action.EXPORT):
        factory = context.session_factory
        kinds = list(chosen_kinds)

        def _csv() -> bytes:
            # Runs in Streamlit's download thread: its own session, the filters shown now.
            with factory() as session:
                rows = timeline_export_rows(session, operator=operator,
                                            freelancer_id=freelancer_id, kinds=kinds,
                                            since=since, until=until)
            return rows_to_csv(rows, EXPORT_COLUMNS)

        st.download_button("Download timeline (CSV)", data=_csv,
                           file_name=f"freelancer-{freelancer_id}-timeline.csv",
                           mime="text/csv", key=f"accounts_timeline_csv_{freelancer_id}",
                           on_click="ignore", icon=":material/download:")
