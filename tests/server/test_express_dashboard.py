"""The payment-settings page opens the freelancer's Stripe Express Dashboard (issue 16).

Offered only for an Express account the platform created that finished onboarding: the button
POSTs (with the page's CSRF token) and the service mints a single-use login link on demand and
redirects to it, as Stripe's "Integrate the Express Dashboard" guide asks. Against the emulator,
which serves the link's target once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from emulator.testing import EmulatorHandle, running_emulator
from lib.accounts import upsert_account
from lib.freelancers import create_freelancer, get_freelancer
from lib.models import AuditLog, ConnectionMethod
from lib.settings import Settings
from lib.stripe_gateway import StripeGateway
from server import links
from server.app import create_app
from tests.factories import make_settings

SETTINGS_PATH = "/freelancer/payment-settings"
BUTTON = 'data-testid="express-dashboard"'


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    with running_emulator() as handle:
        yield handle


@pytest.fixture
def world(emulator: EmulatorHandle, session_factory: sessionmaker[Session]
          ) -> Iterator[tuple[TestClient, Settings, StripeGateway]]:
    emulator.reset()
    settings = make_settings(stripe_api_base=emulator.base_url,
                             stripe_connect_base=emulator.base_url)
    with TestClient(create_app(settings, session_factory=session_factory),
                    follow_redirects=False) as client:
        yield client, settings, StripeGateway(settings)


def _freelancer(session_factory: sessionmaker[Session], gateway: StripeGateway,
                emulator: EmulatorHandle, *, country: str, onboarded: bool) -> tuple[int, str]:
    account = gateway.create_express_account(email=f"{country}@example.com", country=country,
                                             metadata={}, idempotency_key=f"dash-{country}")
    if onboarded:
        emulator.set_account(account.id, onboarding="complete")
    with session_factory.begin() as session:
        freelancer = create_freelancer(session, name="Ada Lovelace",
                                       email=f"ada.{country}@example.com", country=country)
        upsert_account(session, account=gateway.retrieve_account(account.id).data)
        freelancer.stripe_account_id = account.id
        freelancer.connection_method = ConnectionMethod.ACCOUNT_LINK.value
        return freelancer.id, account.id


def _signed_in_page(client: TestClient, settings: Settings, freelancer_id: int) -> str:
    parts = urlsplit(links.freelancer_page_link(settings, freelancer_id, timedelta(minutes=5)))
    assert client.get(f"{parts.path}?{parts.query}").status_code == 303
    page = client.get(SETTINGS_PATH)
    assert page.status_code == 200
    return page.text


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


@pytest.mark.parametrize("country", ["US", "GB"])  # full and recipient agreements alike
def test_an_onboarded_express_account_opens_its_dashboard_once(
    world, emulator: EmulatorHandle, session_factory: sessionmaker[Session], country: str,
) -> None:
    client, settings, gateway = world
    freelancer_id, account_id = _freelancer(session_factory, gateway, emulator,
                                            country=country, onboarded=True)
    html = _signed_in_page(client, settings, freelancer_id)
    assert BUTTON in html and "Open your Stripe Express Dashboard" in html

    response = client.post("/freelancer/express-dashboard", data={"csrf_token": _csrf(html)})

    assert response.status_code == 303
    target = response.headers["location"]
    assert target.startswith(f"{emulator.base_url}/_emulator/express/{account_id}/")
    dashboard = httpx.get(target)
    assert dashboard.status_code == 200 and account_id in dashboard.text
    assert httpx.get(target).status_code == 410  # single use
    with session_factory() as session:
        entry = session.scalars(select(AuditLog).where(
            AuditLog.action == "connect.express_dashboard")).one()
    assert entry.result == "issued" and target not in str(entry.input)


def test_no_dashboard_before_onboarding_is_finished(
    world, emulator: EmulatorHandle, session_factory: sessionmaker[Session],
) -> None:
    client, settings, gateway = world
    freelancer_id, _ = _freelancer(session_factory, gateway, emulator, country="US",
                                   onboarded=False)
    html = _signed_in_page(client, settings, freelancer_id)
    assert BUTTON not in html and "Finish onboarding" in html
    response = client.post("/freelancer/express-dashboard", data={"csrf_token": _csrf(html)})
    assert response.status_code == 409 and "onboarding first" in response.text


def test_no_dashboard_for_a_standard_account_or_a_forged_form(
    world, emulator: EmulatorHandle, session_factory: sessionmaker[Session],
) -> None:
    client, settings, gateway = world
    freelancer_id, _ = _freelancer(session_factory, gateway, emulator, country="US",
                                   onboarded=True)
    assert client.post("/freelancer/express-dashboard", data={}).status_code == 401
    html = _signed_in_page(client, settings, freelancer_id)
    assert client.post("/freelancer/express-dashboard",
                       data={"csrf_token": "forged"}).status_code == 403
    with session_factory.begin() as session:  # the same account, had it come through OAuth
        get_freelancer(session, freelancer_id=freelancer_id).connection_method = (
            ConnectionMethod.OAUTH.value)
    html = client.get(SETTINGS_PATH).text
    assert BUTTON not in html
    response = client.post("/freelancer/express-dashboard", data={"csrf_token": _csrf(html)})
    assert response.status_code == 409 and "Express account" in response.text
