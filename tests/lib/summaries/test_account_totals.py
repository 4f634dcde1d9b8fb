"""The Accounts pager's total: from the summaries, exactly the rows the filters list; a filter
the summaries cannot serve is counted up to a cap and said to be "more than"."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from lib import account_queries
from lib.account_queries import _ON_ACCOUNT, AccountFilter, DueFilter, _where, list_accounts
from lib.account_status import ConnectionStatus
from lib.models import ConnectedAccount, Freelancer
from lib.roles import Operator
from tests.factories_dashboard import add_freelancer

FINANCE = Operator.from_role_names("fin", ["finance"])
STATES = ["active", "restricted", "disabled", "pending", "not_connected", "rejected"]


def _exact(session: Session, filters: AccountFilter) -> int:
    statement = (select(func.count(Freelancer.id)).select_from(Freelancer)
                 .outerjoin(ConnectedAccount, _ON_ACCOUNT))
    return int(session.scalar(_where(statement, filters)) or 0)


@pytest.fixture
def planted(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        for index, state in enumerate(STATES * 3):
            add_freelancer(session, state=state, email=f"a{index}@example.com")
        # Connected, but the mirror is not written yet: listed as PENDING.
        session.add(Freelancer(name="Unmirrored", email="u@example.com",
                               stripe_account_id="acct_unmirrored"))
        # Disconnected with a stale mirror left behind: NOT_CONNECTED.
        gone = add_freelancer(session, state="active", email="gone@example.com")
        gone.stripe_account_id = None


@pytest.mark.slow
def test_totals_from_summaries_equal_an_exact_count(
    session_factory: sessionmaker[Session], planted: None,
) -> None:
    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(statuses=st.lists(st.sampled_from([s.value for s in ConnectionStatus]),
                             unique=True, max_size=3),
           due=st.sampled_from(list(DueFilter)))
    def check(statuses: list[str], due: DueFilter) -> None:
        filters = AccountFilter(statuses=tuple(statuses), due=due)
        with session_factory() as session:
            page = list_accounts(session, operator=FINANCE, filters=filters)
            assert (page.total, page.total_is_lower_bound) == (_exact(session, filters), False)

    check()


def test_a_search_is_counted_up_to_the_cap(
    session_factory: sessionmaker[Session], planted: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(account_queries, "COUNT_CAP", 5)
    with session_factory() as session:
        wide = list_accounts(session, operator=FINANCE, filters=AccountFilter(search="example"))
        narrow = list_accounts(session, operator=FINANCE, filters=AccountFilter(search="gone@"))
    assert (wide.total, wide.total_is_lower_bound) == (5, True)
    assert len(wide.rows) == 20 and wide.has_next is False
    assert (narrow.total, narrow.total_is_lower_bound) == (1, False)
