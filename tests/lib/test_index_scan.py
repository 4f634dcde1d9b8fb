"""lib.index_scan: distinct values by index seeks, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from lib.account_queries import country_options
from lib.index_scan import distinct_by_seeks
from lib.models import Freelancer
from lib.roles import Operator
from tests.factories_dashboard import add_freelancer

FINANCE = Operator.from_role_names("fin", ["finance"])


def _values(session) -> list[str | None]:
    countries = distinct_by_seeks(Freelancer.country, name="countries")
    return list(session.scalars(select(countries.c.value)))


def test_empty_table_gives_only_the_final_null(session_factory) -> None:
    with session_factory() as session:
        assert _values(session) == [None]


def test_each_value_once_in_order_without_nulls_before_the_end(session_factory) -> None:
    with session_factory.begin() as session:
        for country in ["US", "DE", "US", "GB", "DE", "US"]:
            add_freelancer(session, country=country, state="not_connected")
        session.add(Freelancer(name="No country", email="none@example.com", country=None))
    with session_factory() as session:
        assert _values(session) == ["DE", "GB", "US", None]


def test_country_choices_join_accounts_and_declared_countries(session_factory) -> None:
    with session_factory.begin() as session:
        add_freelancer(session, country="FR")  # connected: its account says FR too
        add_freelancer(session, country="JP", state="not_connected")  # declared only
        add_freelancer(session, country="FR", state="not_connected")
        session.add(Freelancer(name="No country", email="none@example.com", country=None))
    with session_factory() as session:
        assert country_options(session, operator=FINANCE) == ["FR", "JP"]


def test_sqlite_seeks_the_index_instead_of_scanning(session_factory, database_backend) -> None:
    if database_backend != "sqlite":
        pytest.skip("PostgreSQL's plan text differs; the statement is the same")
    countries = distinct_by_seeks(Freelancer.country, name="countries")
    with session_factory() as session:
        compiled = select(countries.c.value).compile(
            session.get_bind(), compile_kwargs={"literal_binds": True})
        plan = " | ".join(str(row[-1]) for row in session.execute(
            text(f"EXPLAIN QUERY PLAN {compiled}")))
    assert "ix_freelancers_country" in plan, plan
