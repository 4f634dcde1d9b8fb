"""Fixtures and helpers for the action pages' AppTests: the dashboard talking to the emulator.

Import the fixtures into a test module (``from tests.dashboard.emulator_env import ...``);
pytest registers fixtures found in a module's namespace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import streamlit as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Element

from emulator.testing import EmulatorHandle
from lib.accounts import upsert_account
from lib.freelancers import create_freelancer
from lib.models import AuditLog, Freelancer, Payout
from lib.roles import Operator, Role
from lib.settings import PROJECT_ROOT, Settings
from lib.stripe_gateway import StripeGateway
from tests.factories import TEST_JWT_SECRET, make_settings

ROLES = ("admin", "finance", "manager")
OPERATORS = {name: Operator(name, frozenset({Role(name)})) for name in ROLES}
#: A second admin and finance person, for two-person rules.
OTHER_ADMIN = Operator("arthur", frozenset({Role.ADMIN}))
OTHER_FINANCE = Operator("felix", frozenset({Role.FINANCE}))


@pytest.fixture
def stripe_env(dashboard_env: None, emulator: EmulatorHandle,
               monkeypatch: pytest.MonkeyPatch) -> EmulatorHandle:
    """The dashboard's env pointed at the (reset) emulator instead of a closed port."""
    for name, value in {
        "STRIPE_API_BASE": emulator.base_url,
        "STRIPE_CONNECT_BASE": emulator.base_url,
        "JWT_SECRET": TEST_JWT_SECRET,
        "BACKEND_URL": "http://127.0.0.1:8000",
        "STRIPE_MAX_NETWORK_RETRIES": "0",
        "STRIPE_TIMEOUT_SECONDS": "5",
    }.items():
        monkeypatch.setenv(name, value)
    st.cache_resource.clear()
    st.cache_data.clear()
    return emulator


@dataclass
class World:
    """The emulator, a gateway like the dashboard's, and builders for rows the pages show."""

    emulator: EmulatorHandle
    settings: Settings
    gateway: StripeGateway
    session_factory: sessionmaker[Session]

    def freelancer(self, *, name: str = "Paula Payee", email: str | None = None,
                   connected: bool = True) -> int:
        """A freelancer, with an onboarded Express account at the emulator when ``connected``."""
        count = self.emulator.state()["counts"]["accounts"]
        email = email or f"payee{count}-{name.split()[0].lower()}@example.com"
        account = None
        if connected:
            created = self.gateway.create_express_account(
                email=email, country="US", metadata={}, idempotency_key=f"test-acct-{email}")
            self.emulator.set_account(created.id, onboarding="complete")
            account = self.gateway.retrieve_account(created.id).data
        with self.session_factory.begin() as session:
            freelancer = create_freelancer(session, name=name, email=email, country="US")
            if account is not None:
                upsert_account(session, account=account)
                freelancer.stripe_account_id = str(account["id"])
            session.flush()
            return freelancer.id

    def transfers(self) -> int:
        return int(self.emulator.state()["counts"]["transfers"])


@pytest.fixture
def world(stripe_env: EmulatorHandle, session_factory: sessionmaker[Session]) -> World:
    settings = make_settings(stripe_api_base=stripe_env.base_url,
                             stripe_connect_base=stripe_env.base_url,
                             stripe_max_network_retries=0, stripe_timeout_seconds=5)
    return World(emulator=stripe_env, settings=settings, gateway=StripeGateway(settings),
                 session_factory=session_factory)


def open_page(app: Callable[..., AppTest], page: str, user: str, **state: object) -> AppTest:
    """Log ``user`` in (session pre-set), then open ``pages/<page>`` through the router."""
    at = app(as_user=user)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, at.exception
    at.switch_page(f"../pages/{page}")
    return at.run()


def run_page_script(page: str, user: str) -> AppTest:
    """Run a page file directly with ``user``'s session, as a page reached another way."""
    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / page), default_timeout=30)
    at.session_state["authentication_status"] = True
    at.session_state["username"] = user
    at.session_state["name"] = user.title()
    at.session_state["roles"] = [user]
    return at.run()


def registered_pages(app: Callable[..., AppTest], user: str) -> list[str]:
    """The titles the router offers ``user`` (from the navigation's sidebar entries)."""
    from dashboard.navigation import PAGES

    operator = OPERATORS[user]
    return [p.file for p in PAGES if any(operator.can(a) for a in p.needs)]


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def texts(at: AppTest) -> str:
    """Everything a person reads on the page, as one string (for loose assertions)."""
    parts: list[str] = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "title",
                 "subheader", "code"):
        parts.extend(str(el.value) for el in at.get(kind) if isinstance(el, Element))
    return "\n".join(parts)


def payout_count(session_factory: sessionmaker[Session]) -> int:
    with session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(Payout)) or 0)


def audit_count(session_factory: sessionmaker[Session], action: str) -> int:
    with session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(AuditLog)
                                  .where(AuditLog.action == action)) or 0)


def freelancer_named(session_factory: sessionmaker[Session], name: str) -> Freelancer | None:
    with session_factory() as session:
        return session.scalars(select(Freelancer).where(Freelancer.name == name)).one_or_none()
