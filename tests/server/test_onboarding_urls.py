"""Hosted onboarding's refresh and return URLs (issue 19): short-lived, single-purpose, bound.

Stripe's browser redirects carry no login of ours, so an old URL (a browser's history, a shared
machine, an email scanner's log) must act on nothing: no Express account created, no Account
Link issued, the freelancer asked to sign in to the payment settings instead. A live companion
with the emulator behind it; the emulator's state is the proof that nothing reached Stripe.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from emulator.page_driver import onboard
from lib.db import utcnow
from lib.freelancers import create_freelancer
from lib.models import AuditLog, ConnectionAttempt, Freelancer
from lib.roles import Role
from lib.tokens import issue_token
from tests.factories import TEST_JWT_SECRET, make_settings
from tests.support.servers import free_port, running_companion

API = "/api/v1/freelancer"
SIGN_IN = "/freelancer/payment-settings?onboarding=expired"


@pytest.fixture
def live(emulator, session_factory) -> Iterator[dict[str, Any]]:
    port = free_port()
    settings = make_settings(stripe_api_base=emulator.base_url,
                             stripe_connect_base=emulator.base_url,
                             backend_url=f"http://127.0.0.1:{port}")
    with running_companion(emulator, settings, port, session_factory) as url:
        with httpx.Client(base_url=url, timeout=20, follow_redirects=False) as http:
            yield {"url": url, "http": http, "emulator": emulator,
                   "session_factory": session_factory}


def _freelancer(live: dict[str, Any]) -> tuple[int, dict[str, str]]:
    with live["session_factory"].begin() as session:
        freelancer_id = create_freelancer(session, name="Ada Lovelace",
                                          email="ada@example.com", country="US").id
    token = issue_token(secret=TEST_JWT_SECRET, subject=str(freelancer_id), role=Role.FREELANCER)
    return freelancer_id, {"Authorization": f"Bearer {token}"}


def _onboarding_link(live: dict[str, Any], headers: dict[str, str]) -> str:
    response = live["http"].get(f"{API}/stripe-connect-url", params={"method": "onboarding"},
                                headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["connectUrl"])


def _urls_of(live: dict[str, Any], link: str) -> tuple[str, str]:
    """(refresh URL, return URL) of a link, as Stripe sends the browser to them."""
    returned_to = onboard(link, action="incomplete")  # opening the link spends it at Stripe
    refresh = onboard(link)  # a used link sends the browser to refresh_url
    assert "/stripe-connect-return?attempt=" in returned_to
    assert "/stripe-connect-refresh?attempt=" in refresh
    return refresh.removeprefix(live["url"]), returned_to.removeprefix(live["url"])


def _stripe_side(live: dict[str, Any]) -> tuple[int, int]:
    """(accounts, account links) at the emulator."""
    state = live["emulator"].state(full=True)
    return state["counts"]["accounts"], len(state["state"]["account_links"])


def _ours(live: dict[str, Any], freelancer_id: int) -> tuple[str | None, int]:
    """(the freelancer's account, how many attempts) in our database."""
    with live["session_factory"]() as session:
        account = session.get_one(Freelancer, freelancer_id).stripe_account_id
        attempts = session.scalar(select(func.count()).select_from(ConnectionAttempt).where(
            ConnectionAttempt.freelancer_id == freelancer_id))
    return account, int(attempts or 0)


def _refusals(live: dict[str, Any]) -> list[tuple[str, str]]:
    with live["session_factory"]() as session:
        return [(e.action, e.result) for e in session.scalars(
            select(AuditLog).where(AuditLog.result.like("refused:%")).order_by(AuditLog.id))]


def _asked_to_sign_in(live: dict[str, Any], response: httpx.Response) -> None:
    """Redirected to the payment settings' login, which (with no session) asks to sign in."""
    assert response.status_code == 302, response.text
    assert response.headers["location"] == SIGN_IN
    page = live["http"].get(response.headers["location"])
    assert page.status_code == 401
    assert "That onboarding link had expired or was already used" in page.text
    assert "Sign in to your payment settings" in page.text


def test_an_old_refresh_url_replayed_after_disconnect_creates_nothing(live) -> None:
    freelancer_id, headers = _freelancer(live)
    refresh, _ = _urls_of(live, _onboarding_link(live, headers))
    assert live["http"].delete(f"{API}/stripe-connect", headers=headers).status_code == 200
    before_stripe, before_ours = _stripe_side(live), _ours(live, freelancer_id)
    assert before_ours[0] is None

    _asked_to_sign_in(live, live["http"].get(refresh))

    assert _stripe_side(live) == before_stripe, "an account or a link was created at Stripe"
    assert _ours(live, freelancer_id) == before_ours, "the freelancer was reconnected"
    assert _refusals(live) == [("connect.onboarding_refresh", "refused:disconnected")]


def test_an_expired_refresh_url_creates_nothing(live, monkeypatch) -> None:
    freelancer_id, headers = _freelancer(live)
    refresh, _ = _urls_of(live, _onboarding_link(live, headers))
    before_stripe, before_ours = _stripe_side(live), _ours(live, freelancer_id)
    later = utcnow() + timedelta(hours=1, seconds=1)
    monkeypatch.setattr("lib.onboarding_urls.utcnow", lambda: later)

    _asked_to_sign_in(live, live["http"].get(refresh))

    assert _stripe_side(live) == before_stripe, "a link was issued at Stripe"
    assert _ours(live, freelancer_id) == before_ours
    assert _refusals(live) == [("connect.onboarding_refresh", "refused:expired")]


def test_a_refresh_url_works_once(live) -> None:
    freelancer_id, headers = _freelancer(live)
    refresh, _ = _urls_of(live, _onboarding_link(live, headers))
    fresh = live["http"].get(refresh)
    assert fresh.status_code == 302
    assert fresh.headers["location"].startswith(live["emulator"].base_url + "/_emulator/onboarding/")
    after_first = _stripe_side(live), _ours(live, freelancer_id)

    _asked_to_sign_in(live, live["http"].get(refresh))

    assert (_stripe_side(live), _ours(live, freelancer_id)) == after_first
    assert _refusals(live) == [("connect.onboarding_refresh", "refused:already_used")]


def test_a_return_url_works_once_and_never_as_a_refresh_url(live) -> None:
    freelancer_id, headers = _freelancer(live)
    refresh, returned = _urls_of(live, _onboarding_link(live, headers))
    swapped = {
        f"{API}/stripe-connect-refresh?{returned.partition('?')[2]}",
        f"{API}/stripe-connect-return?{refresh.partition('?')[2]}",
    }
    before = _stripe_side(live), _ours(live, freelancer_id)
    for url in swapped:  # each URL's signature names its purpose
        _asked_to_sign_in(live, live["http"].get(url))
    assert (_stripe_side(live), _ours(live, freelancer_id)) == before

    back = live["http"].get(returned)
    assert back.headers["location"] == "/freelancer/payment-settings?onboarding=incomplete"
    _asked_to_sign_in(live, live["http"].get(returned))
    assert _refusals(live) == [("connect.onboarding_return", "refused:already_used")]


def test_urls_from_before_a_reconnect_stay_dead(live) -> None:
    """Disconnected and onboarded again with a new Express account: the first link's URLs are
    of another generation and another account; they act on neither."""
    freelancer_id, headers = _freelancer(live)
    old_refresh, old_return = _urls_of(live, _onboarding_link(live, headers))
    assert live["http"].delete(f"{API}/stripe-connect", headers=headers).status_code == 200
    _onboarding_link(live, headers)  # a new account, a new generation
    before = _stripe_side(live), _ours(live, freelancer_id)
    assert before[1][0] is not None

    _asked_to_sign_in(live, live["http"].get(old_refresh))
    _asked_to_sign_in(live, live["http"].get(old_return))

    assert (_stripe_side(live), _ours(live, freelancer_id)) == before
    assert _refusals(live) == [("connect.onboarding_refresh", "refused:disconnected"),
                               ("connect.onboarding_return", "refused:disconnected")]


def test_a_signed_in_freelancer_continues_from_the_payment_settings(live) -> None:
    """The sign-in the stale URL leads to: with a session, the page says what happened and
    offers a fresh link behind the login."""
    freelancer_id, headers = _freelancer(live)
    refresh, _ = _urls_of(live, _onboarding_link(live, headers))
    live["http"].get(refresh)  # spent
    token = issue_token(secret=TEST_JWT_SECRET, subject=str(freelancer_id), role=Role.FREELANCER)
    login = live["http"].get("/freelancer/login", params={"token": token})
    assert login.status_code == 303
    replay = live["http"].get(refresh)
    page = live["http"].get(replay.headers["location"])
    assert page.status_code == 200
    assert "That onboarding link had expired or was already used, so it did nothing." in page.text
    assert "Finish onboarding" in page.text
