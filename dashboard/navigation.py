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
    #: The sidebar heading it is listed under.
    section: str = ""


#: Sidebar headings, in order. With 13 pages an admin's flat menu was cut after ten ("View 3
#: more" hid Reconciliation, Webhooks and the Audit log); grouped and expanded, every page shows.
SUMMARY, FREELANCERS, MONEY, OPERATIONS = "Summary", "Freelancers", "Money", "Operations"


#: In menu order. Hiding is a convenience: every action on a page is also checked in lib/.
PAGES: tuple[PageSpec, ...] = (
    PageSpec("overview.py", "Overview", ":material/dashboard:",
             frozenset({Action.VIEW_OVERVIEW}), SUMMARY),
    PageSpec("metrics.py", "Connection metrics", ":material/monitoring:",
             frozenset({Action.VIEW_METRICS}), SUMMARY),
    PageSpec("accounts.py", "Accounts", ":material/group:", frozenset({Action.VIEW_ACCOUNTS}),
             FREELANCERS),
    PageSpec("requirements.py", "Requirements due", ":material/assignment_late:",
             frozenset({Action.VIEW_REQUIREMENTS}), FREELANCERS),
    PageSpec("onboarding_links.py", "Onboarding links", ":material/link:",
             frozenset({Action.GENERATE_LINK}), FREELANCERS),
    PageSpec("payouts.py", "Payouts", ":material/payments:", frozenset({Action.VIEW_PAYOUTS}),
             MONEY),
    PageSpec("approvals.py", "Approvals", ":material/approval:",
             frozenset({Action.APPROVE_PAYOUT}), MONEY),
    PageSpec("reversals.py", "Reversals", ":material/undo:",
             frozenset({Action.REVERSE_PAYOUT, Action.APPROVE_PAYOUT}), MONEY),
    PageSpec("funding.py", "Funding", ":material/account_balance:",
             frozenset({Action.VIEW_FUNDING}), MONEY),
    PageSpec("bank_payouts.py", "Failed bank payouts", ":material/money_off:",
             frozenset({Action.VIEW_BANK_PAYOUTS}), MONEY),
    PageSpec("reconciliation.py", "Reconciliation", ":material/balance:",
             frozenset({Action.RECONCILE}), MONEY),
    PageSpec("webhooks.py", "Webhooks and sync", ":material/sync:",
             frozenset({Action.VIEW_WEBHOOKS}), OPERATIONS),
    PageSpec("alerts.py", "Alerts", ":material/notifications:",
             frozenset({Action.MANAGE_ALERTS}), OPERATIONS),
    PageSpec("outbox.py", "Outbox", ":material/outbox:", frozenset({Action.VIEW_OUTBOX}),
             OPERATIONS),
    PageSpec("audit_log.py", "Audit log", ":material/history:",
             frozenset({Action.VIEW_AUDIT_LOG}), OPERATIONS),
)


def _specs_for(operator: Operator) -> list[PageSpec]:
    return [spec for spec in PAGES if any(operator.can(action) for action in spec.needs)]


def _page(spec: PageSpec) -> st.Page:
    return st.Page(str(PAGES_DIR / spec.file), title=spec.title, icon=spec.icon,
                   url_path=spec.file.removesuffix(".py"))


def navigation_for(operator: Operator) -> dict[str, list[st.Page]]:
    """The same pages under their sidebar headings (``st.navigation``'s sections)."""
    sections: dict[str, list[st.Page]] = {}
    for spec in _specs_for(operator):
        sections.setdefault(spec.section, []).append(_page(spec))
    return sections
