"""Row builders for the dashboard's read tests: many freelancers, accounts, attempts, payouts.

Accounts are Stripe-shaped dicts turned into mirror rows by ``lib.accounts.account_row_values``,
so the promoted columns (status, counts, deadline) are derived exactly as in production.
Everything goes through the models in one transaction per call, fast enough for 500 rows.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from lib.accounts import account_row_values
from lib.db import utcnow
from lib.models import (
    AttemptOutcome,
    ConnectedAccount,
    ConnectionAttempt,
    Freelancer,
    Payout,
    PayoutStatus,
)

_ids = itertools.count(1)

#: States of :func:`account_dict`, in the mix :func:`seed_many` cycles through.
STATES = ("active", "restricted", "pending", "pending_verification", "disabled", "rejected",
          "not_connected")


def account_dict(account_id: str, state: str, *, now: datetime, country: str = "US",
                 account_type: str = "express", deadline_days: int = 5) -> dict[str, Any]:
    """A Stripe account object in ``state`` (see :data:`STATES`)."""
    requirements: dict[str, Any] = {
        "currently_due": [], "eventually_due": [], "past_due": [], "pending_verification": [],
        "disabled_reason": None, "current_deadline": None,
    }
    account: dict[str, Any] = {
        "id": account_id, "object": "account", "type": account_type, "country": country,
        "email": f"{account_id}@example.com", "default_currency": "usd",
        "charges_enabled": True, "payouts_enabled": True, "details_submitted": True,
        "capabilities": {"transfers": "active"}, "requirements": requirements,
        "future_requirements": {}, "created": int((now - timedelta(days=30)).timestamp()),
    }
    deadline = int((now + timedelta(days=deadline_days)).timestamp())
    if state == "restricted":
        requirements.update(currently_due=["individual.verification.document"],
                            eventually_due=["individual.verification.document",
                                            "individual.id_number"],
                            current_deadline=deadline)
    elif state == "pending":
        account.update(details_submitted=False, charges_enabled=False, payouts_enabled=False,
                       capabilities={"transfers": "inactive"})
        requirements.update(currently_due=["external_account", "tos_acceptance.date"],
                            eventually_due=["external_account", "tos_acceptance.date"])
    elif state == "pending_verification":
        requirements.update(pending_verification=["individual.verification.document"])
    elif state == "disabled":
        account.update(payouts_enabled=False, capabilities={"transfers": "inactive"})
        requirements.update(currently_due=["external_account"], past_due=["external_account"],
                            eventually_due=["external_account"],
                            disabled_reason="requirements.past_due",
                            current_deadline=int((now - timedelta(days=2)).timestamp()))
    elif state == "rejected":
        account.update(payouts_enabled=False, charges_enabled=False)
        requirements.update(disabled_reason="rejected.fraud")
    elif state != "active":
        raise ValueError(f"unknown state {state!r}")
    return account


def add_freelancer(
    session: Session, *, state: str = "active", name: str | None = None,
    email: str | None = None, country: str = "US", now: datetime | None = None,
    connected_at: datetime | None = None, account_type: str = "express",
    deadline_days: int = 5, method: str = "account_link",
) -> Freelancer:
    """One freelancer; connected to a mirrored account unless ``state`` is not_connected."""
    moment = now or utcnow()
    number = next(_ids)
    freelancer = Freelancer(
        name=name or f"Freelancer {number:05d}",
        email=email or f"freelancer{number}@example.com", country=country,
        created_at=moment - timedelta(days=60),
    )
    if state != "not_connected":
        account_id = f"acct_test{number:012d}"
        values = account_row_values(
            account_dict(account_id, state, now=moment, country=country,
                         account_type=account_type, deadline_days=deadline_days),
            fetched_at=moment)
        session.add(ConnectedAccount(**values))
        freelancer.stripe_account_id = account_id
        freelancer.connection_method = method
        freelancer.connected_at = connected_at or moment - timedelta(days=10)
    session.add(freelancer)
    session.flush()
    return freelancer


def add_attempt(
    session: Session, *, freelancer_id: int, started_at: datetime, outcome: str,
    method: str = "account_link", reason: str | None = None,
    took: timedelta | None = None, returned: bool = False,
) -> ConnectionAttempt:
    """An attempt; ``took`` sets finished_at = started_at + took."""
    attempt = ConnectionAttempt(
        freelancer_id=freelancer_id, method=method, issued_by="admin", started_at=started_at,
        outcome=outcome, failure_reason=reason,
        finished_at=started_at + took if took is not None else None,
        returned_at=started_at + (took or timedelta(minutes=1)) if returned else None,
    )
    session.add(attempt)
    return attempt


def add_payout(
    session: Session, *, freelancer: Freelancer, amount_minor: int = 10_000,
    currency: str = "usd", status: str = PayoutStatus.PAID.value,
    created_at: datetime | None = None,
) -> Payout:
    number = next(_ids)
    payout = Payout(
        freelancer_id=freelancer.id, stripe_account_id=freelancer.stripe_account_id,
        amount_minor=amount_minor, currency=currency, status=status,
        idempotency_key=f"test-payout-{number}", requested_by="admin",
        description=f"Invoice {number}", created_at=created_at or utcnow(),
        stripe_transfer_id=f"tr_test{number}" if status == PayoutStatus.PAID.value else None,
    )
    session.add(payout)
    return payout


def seed_many(session_factory: sessionmaker[Session], count: int,
              now: datetime | None = None) -> None:
    """``count`` freelancers cycling through every state, each with an attempt and a payout."""
    moment = now or utcnow()
    countries = ("US", "GB", "FR", "DE")
    with session_factory.begin() as session:
        for index in range(count):
            state = STATES[index % len(STATES)]
            freelancer = add_freelancer(session, state=state, now=moment,
                                        country=countries[index % len(countries)])
            started = moment - timedelta(days=index % 80, hours=1)
            connected = state != "not_connected"
            add_attempt(session, freelancer_id=freelancer.id, started_at=started,
                        outcome=(AttemptOutcome.SUCCEEDED if connected
                                 else AttemptOutcome.FAILED).value,
                        method="oauth" if index % 2 else "account_link",
                        reason=None if connected else "access_denied",
                        took=timedelta(minutes=3 + index % 50))
            if state == "active":
                add_payout(session, freelancer=freelancer, amount_minor=1_000 + index,
                           created_at=moment - timedelta(days=index % 20))


# ---- AppTest helpers for the four read pages ---------------------------------------------------

ROLES = ("admin", "finance", "manager")


def open_page(app: Any, page: str, user: str) -> Any:
    """Log ``user`` in (session pre-set) and open ``pages/<page>`` through the router.

    AppTest resolves ``switch_page`` paths from the main script's folder (``dashboard/``).
    A page the role may not open is not registered, so ``switch_page`` raises ValueError.
    """
    at = app(as_user=user).run()
    assert not at.exception, at.exception
    at.switch_page(f"../pages/{page}")
    return at.run()


def run_page_directly(page: str, user: str) -> Any:
    """Run a page file without the router, with ``user``'s session (a page reached another way)."""
    from streamlit.testing.v1 import AppTest

    from lib.settings import PROJECT_ROOT

    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / page), default_timeout=30)
    at.session_state["authentication_status"] = True
    at.session_state["username"] = user
    at.session_state["roles"] = [user]
    return at.run()


def page_text(at: Any) -> str:
    """Everything a person reads on the page, as one string."""
    parts: list[str] = []
    for kind in ("title", "subheader", "markdown", "caption", "error", "warning", "info",
                 "success", "code", "metric"):
        for element in at.get(kind):
            parts.append(str(getattr(element, "label", "")) + " " + str(element.value))
    return "\n".join(parts)


class QueryCounter:
    """Counts SQL statements any engine runs while active (issue 7: no N+1 on a page)."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements.append(statement)

    def __enter__(self) -> QueryCounter:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.listen(Engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *_exc: object) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.remove(Engine, "before_cursor_execute", self._record)


def queries_to_render(app: Any, page: str, user: str, *, setup: Any = None) -> list[str]:
    """Statements run by one script run of ``page`` with cold caches (after ``setup(at)``)."""
    import streamlit as st

    at = open_page(app, page, user)
    if setup is not None:
        at = setup(at)
    assert not at.exception, at.exception
    st.cache_data.clear()
    with QueryCounter() as counter:
        at.run()
    assert not at.exception, at.exception
    return counter.statements


def statuses(frame: Any, column: str = "Status") -> list[str]:
    """Each row's status pill (a one-item list per cell: ``dashboard.page_helpers.status_pills``)."""
    cells = [list(cell) for cell in frame[column]]
    assert all(len(cell) == 1 for cell in cells), cells
    return [str(cell[0]) for cell in cells]
