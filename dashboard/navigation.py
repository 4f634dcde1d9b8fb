"""Which pages each role sees. Hiding a page is a convenience; lib/ enforces every action."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from lib.roles import Action, Operator

PAGES_DIR = Path(__file__).resolve().parent.parent / "pages"


@dataclass(frozen=True)
class PageSpec:
    file: str
    title: str
    icon: str
    #: The page is offered when the operator may perform any of these.
    needs: frozenset[Action]


#: In menu order. Hiding is a convenience: every action on a page is also checked in lib/.
PAGES: tuple[PageSpec, ...] = (
    PageSpec("overview.py", "Overview", ":material/dashboard:",
             frozenset({Action.VIEW_OVERVIEW})),
    PageSpec("accounts.py", "Accounts", ":material/group:", frozenset({Action.VIEW_ACCOUNTS})),
    PageSpec("requirements.py", "Requirements due", ":material/assignment_late:",
             frozenset({Action.VIEW_REQUIREMENTS})),
    PageSpec("metrics.py", "Connection metrics", ":material/monitoring:",
             frozenset({Action.VIEW_METRICS})),
    PageSpec("onboarding_links.py", "Onboarding links", ":material/link:",
             frozenset({Action.GENERATE_LINK})),
    PageSpec("payouts.py", "Payouts", ":material/payments:", frozenset({Action.VIEW_PAYOUTS})),
    PageSpec("approvals.py", "Approvals", ":material/approval:",
             frozenset({Action.APPROVE_PAYOUT})),
    PageSpec("reconciliation.py", "Reconciliation", ":material/balance:",
             frozenset({Action.RECONCILE})),
    PageSpec("webhooks.py", "Webhooks and sync", ":material/sync:",
             frozenset({Action.VIEW_WEBHOOKS})),
    PageSpec("alerts.py", "Alerts", ":material/notifications:",
             frozenset({Action.MANAGE_ALERTS})),
    PageSpec("outbox.py", "Outbox", ":material/outbox:", frozenset({Action.VIEW_OUTBOX})),
    PageSpec("audit_log.py", "Audit log", ":material/history:",
             frozenset({Action.VIEW_AUDIT_LOG})),
)


def pages_for(operator: Operator) -> list[st.Page]:
    """The ``st.Page`` list this operator may open."""
    return [
        st.Page(str(PAGES_DIR / spec.file), title=spec.title, icon=spec.icon,
                url_path=spec.file.removesuffix(".py"))
        for spec in PAGES
        if any(operator.can(action) for action in spec.needs)
    ]
