"""Audit log: who did what, when, with which input and result. Read only.

Nothing on this page writes: it calls only ``lib.audit_queries`` (reads), the table is a
read-only dataframe, and the log itself refuses updates and deletes in the ORM and the database.
"""

from __future__ import annotations

import streamlit as st

from dashboard.context import get_context
from dashboard.page_helpers import (
    PAGE_SIZE,
    date_range,
    last_page_offset,
    page_offset,
    pager,
    prepared_csv,
    require_page,
    show_error,
)
from dashboard.tables import show_table
from lib.audit_queries import COLUMNS, AuditFilter, distinct_values, export_audit, list_audit
from lib.errors import ConnectOpsError
from lib.exports import rows_to_csv
from lib.roles import Action

operator = require_page(Action.VIEW_AUDIT_LOG)
context = get_context()
ANY = "any"

st.title("Audit log")
st.caption("Every action on money, connections and logins, newest first. This page cannot "
           "change the log.")

with context.session_factory() as session:
    actions = distinct_values(session, operator=operator, column="action")
    results = distinct_values(session, operator=operator, column="result")

c1, c2, c3, c4 = st.columns(4)
actor = c1.text_input("Actor contains", key="audit_log_actor")
action = c2.selectbox("Action", [ANY, *actions], key="audit_log_action")
result = c3.selectbox("Result", [ANY, *results], key="audit_log_result")
with c4:
    start, end = date_range("Between", key="audit_log_dates", days=30)
filters = AuditFilter(actor=actor.strip() or None, action=None if action == ANY else action,
                      result=None if result == ANY else result, occurred_from=start,
                      occurred_to=end)

# The page number is read before the query and its input drawn after (once the total is known),
# so the filtered log is counted once per run instead of once for the pager and again for the page.
offset = page_offset("audit_log_page", filters=filters)
try:
    with context.session_factory() as session:
        page = list_audit(session, operator=operator, filters=filters, limit=PAGE_SIZE,
                          offset=offset)
        if offset and not page.rows and page.total:
            # The log behind the page number shrank (the date window moved on): its last page.
            offset = last_page_offset(page.total)
            page = list_audit(session, operator=operator, filters=filters, limit=PAGE_SIZE,
                              offset=offset)
except ConnectOpsError as exc:
    show_error(exc)
    st.stop()
total = page.total
if total > PAGE_SIZE or page.total_is_lower_bound:
    pager(total, key="audit_log_page", at_least=page.total_is_lower_bound)

if not page.rows:
    st.info("No audit entries match these filters.")
else:
    show_table([{c: getattr(r, c) for c in COLUMNS} for r in page.rows], list(COLUMNS),
               key="audit_log_table")
    if total <= PAGE_SIZE:
        st.caption(f"{total} entr{'ies' if total != 1 else 'y'}")

if operator.can(Action.EXPORT):
    def build() -> bytes:
        with context.session_factory() as session:
            return rows_to_csv(export_audit(session, operator=operator, filters=filters),
                               COLUMNS)

    prepared_csv("audit CSV", build, fingerprint=repr(filters), file_name="audit-log.csv",
                 key="audit_log_export")
