"""Short-lived caches around lib reads: the one place the dashboard caches data.

Each wrapper is keyed by *all* its arguments, the operator included, so the lib call (and its
role check) runs for every distinct operator and filter set; nothing per-user leaks to another
user and nothing secret is cached. The session factory is passed as ``_factory`` (not hashed:
one process talks to one database). TTLs are short because admins act on the same data:
after an action the page clears the affected caches (:func:`clear_account_reads`).
"""

from __future__ import annotations

import threading

import streamlit as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from lib import (
    account_queries,
    connection_metrics,
    funding,
    insights,
    requirements_queries,
)
from lib.account_queries import AccountCursor, AccountFilter, AccountPage
from lib.connection_metrics import DateRange, Grain
from lib.connection_report import ConnectionReport, connection_report
from lib.models import AuditLog, WebhookEvent
from lib.requirements_queries import RequirementCount, RequirementFilter, RequirementsPage
from lib.roles import Operator
from lib.stripe_gateway import StripeGateway

Factory = sessionmaker[Session]


@st.cache_data(ttl=60, show_spinner=False, max_entries=64)
def overview_kpis(_factory: Factory, operator: Operator) -> insights.OverviewKpis:
    with _factory() as session:
        return insights.overview_kpis(session, operator=operator)


@st.cache_data(ttl=30, show_spinner=False, max_entries=256)
def account_page(_factory: Factory, operator: Operator, filters: AccountFilter, limit: int,
                 offset: int, after: AccountCursor | None = None,
                 before: AccountCursor | None = None, from_end: bool = False) -> AccountPage:
    with _factory() as session:
        return account_queries.list_accounts(session, operator=operator, filters=filters,
                                             limit=limit, offset=offset, after=after,
                                             before=before, from_end=from_end)


@st.cache_data(ttl=300, show_spinner=False, max_entries=16)
def country_options(_factory: Factory, operator: Operator) -> list[str]:
    with _factory() as session:
        return account_queries.country_options(session, operator=operator)


@st.cache_data(ttl=60, show_spinner=False, max_entries=128)
def requirements_page(_factory: Factory, operator: Operator, within_days: int | None,
                      limit: int, offset: int,
                      requirement: RequirementFilter | None = None,
                      not_contacted_days: int | None = None) -> RequirementsPage:
    with _factory() as session:
        return requirements_queries.list_requirements_due(
            session, operator=operator, within_days=within_days, limit=limit, offset=offset,
            requirement=requirement, not_contacted_days=not_contacted_days)


#: Longer: it aggregates the whole requirement index (tens of ms at 100,000 accounts).
@st.cache_data(ttl=300, show_spinner=False, max_entries=64)
def requirement_counts(_factory: Factory, operator: Operator,
                       within_days: int | None) -> list[RequirementCount]:
    with _factory() as session:
        return requirements_queries.requirement_counts(session, operator=operator,
                                                       within_days=within_days)


@st.cache_data(ttl=300, show_spinner=False, max_entries=64)
def metrics(_factory: Factory, operator: Operator, period: DateRange,
            grain: Grain) -> ConnectionReport:
    """Every series of the Connection metrics page for one range and grain."""
    with _factory() as session:
        return connection_report(session, operator=operator, period=period, grain=grain)


@st.cache_data(ttl=300, show_spinner=False, max_entries=64)
def decided_attempts(_factory: Factory, operator: Operator, period: DateRange) -> int:
    with _factory() as session:
        return connection_metrics.decided_attempts(session, operator=operator, period=period)


#: The Stripe balance read behind the Funding page and the Overview's "funds needed": short, so
#: a top-up shows soon; keyed by operator like every wrapper here.
@st.cache_data(ttl=60, show_spinner=False, max_entries=32)
def funding_position(_factory: Factory, _gateway: StripeGateway,
                     operator: Operator) -> funding.FundingPosition:
    return funding.funding_position(_factory, gateway=_gateway, operator=operator)


@st.cache_data(ttl=60, show_spinner=False, max_entries=32)
def funds_needed(_factory: Factory, _gateway: StripeGateway,
                 operator: Operator) -> list[funding.Shortfall] | None:
    return funding.funds_needed(_factory, gateway=_gateway, operator=operator)


def clear_account_reads() -> None:
    """After an action on an account: the next run reads the new state."""
    for cached in (overview_kpis, account_page, country_options, requirements_page,
                   requirement_counts):
        cached.clear()


_LAST_CHANGE: dict[str, tuple[int, int, object]] = {}
_LAST_CHANGE_LOCK = threading.Lock()


#: The newest ids and the newest processing time in one statement (one round trip per script
#: run): each MAX() is one seek to the end of an index, whatever the size of the table. The
#: worker processes an event after it was stored, so a new event id alone would clear the
#: caches before the change it brings is in the database.
_CHANGE_MARKER = select(
    select(func.coalesce(func.max(AuditLog.id), 0)).scalar_subquery(),
    select(func.coalesce(func.max(WebhookEvent.id), 0)).scalar_subquery(),
    select(func.max(WebhookEvent.processed_at)).scalar_subquery(),
)


def invalidate_after_changes(factory: Factory) -> None:
    """Drop every cached read when anything was done since the last run (cheap: three MAX()).

    Every action writes the audit log, every webhook lands in ``webhook_events`` and is then
    processed by the worker, so a new row in either, or a newly processed event, means cached
    figures may be stale: an operator sees the result of their own
    action at once, and the TTLs only bound how long *nothing* is re-read.
    """
    with factory() as session:
        # By index: mypy reads the unpacked values of an untyped three-column Row as object.
        row = session.execute(_CHANGE_MARKER).one()
        audit_id, event_id, processed_at = row[0], row[1], row[2]
    marker = (int(audit_id or 0), int(event_id or 0), processed_at)
    with _LAST_CHANGE_LOCK:
        previous = _LAST_CHANGE.get("marker")
        _LAST_CHANGE["marker"] = marker
    if previous is not None and previous != marker:
        st.cache_data.clear()
