"""The freelancer API and webhooks end to end: a live companion service, the emulator
delivering signed webhooks to it, and the unmodified SDK behind the gateway."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from emulator.page_driver import consent, onboard
from lib.freelancers import create_freelancer
from lib.models import WebhookEvent
from lib.roles import Role
from lib.stripe_gateway import StripeGateway
from lib.tokens import issue_token
from scripts.processes import wait_until
from tests.conftest import requires_postgresql
from tests.factories import TEST_JWT_SECRET, make_settings
from tests.support.servers import free_port, running_companion
from tests.support.worker import wait_until_settled

API = "/api/v1/freelancer"


@pytest.fixture
def live(emulator, session_factory) -> Iterator[dict]:
    port = free_port()
    settings = make_settings(stripe_api_base=emulator.base_url,
                             stripe_connect_base=emulator.base_url,
                             backend_url=f"http://127.0.0.1:{port}")
    with running_companion(emulator, settings, port, session_factory) as url:
        with httpx.Client(base_url=url, timeout=20, follow_redirects=False) as http:
            yield {"url": url, "http": http, "settings": settings, "emulator": emulator,
                   "gateway": StripeGateway(settings), "session_factory": session_factory}


def _freelancer(live: dict, email: str = "ada@example.com") -> tuple[int, dict]:
    with live["session_factory"].begin() as session:
        freelancer_id = create_freelancer(session, name="Ada Lovelace", email=email).id
    token = issue_token(secret=TEST_JWT_SECRET, subject=str(freelancer_id), role=Role.FREELANCER)
    return freelancer_id, {"Authorization": f"Bearer {token}"}


def _status(live: dict, headers: dict, refresh: bool = False) -> dict:
    response = live["http"].get(f"{API}/stripe-connect-status",
                                params={"refresh": "true"} if refresh else None, headers=headers)
    assert response.status_code == 200
    return response.json()["data"]


def _connect(live: dict, headers: dict, **consent_options) -> httpx.Response:
    response = live["http"].get(f"{API}/stripe-connect-url", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["message"] == "Stripe Connect URL generated"
    assert body["data"]["expiresIn"] == 3600
    redirect = consent(body["data"]["connectUrl"], **consent_options)
    return live["http"].get(f"{API}/stripe-connect-callback", params=redirect)


def test_guide_flow_connect_status_disconnect(live) -> None:
    _freelancer_id, headers = _freelancer(live)
    assert _status(live, headers) == {"isConnected": False, "status": "NOT_CONNECTED",
                                      "verified": False, "accountId": None,
                                      "destinationConfirmed": None, "accountDetails": None}
    callback = _connect(live, headers)
    assert callback.status_code == 302
    location = urlsplit(callback.headers["location"])
    assert location.path == "/freelancer/stripe/success"
    account_id = parse_qs(location.query)["accountId"][0]
    status = _status(live, headers)
    assert status["isConnected"] and status["status"] == "ACTIVE" and status["verified"]
    assert status["destinationConfirmed"] is False  # a new connection waits for confirmation
    assert status["accountDetails"] == {
        "id": account_id, "chargesEnabled": True, "payoutsEnabled": True,
        "detailsSubmitted": True, "requirementsCurrentlyDue": [], "requirementsPastDue": [],
        "currentDeadline": None, "disabledReason": None, "email": "ada@example.com",
        "businessName": None, "bankName": "STRIPE TEST BANK", "bankLast4": "6789"}
    response = live["http"].delete(f"{API}/stripe-connect", headers=headers)
    assert response.status_code == 200
    assert response.json() == {"success": True,
                               "message": "Stripe account disconnected successfully"}
    assert _status(live, headers)["status"] == "NOT_CONNECTED"
    assert live["http"].delete(f"{API}/stripe-connect", headers=headers).status_code == 409


def test_callback_errors_redirect_with_reason_only_to_own_pages(live) -> None:
    _freelancer_id, headers = _freelancer(live)
    cases = {
        (): "missing_parameters",
        (("state", "forged"), ("code", "ac_1")): "invalid_state",
        (("state", "x"), ("error", "access_denied")): "invalid_state",
    }
    for params, reason in cases.items():
        response = live["http"].get(f"{API}/stripe-connect-callback", params=dict(params))
        assert response.status_code == 302
        assert response.headers["location"] == f"/freelancer/stripe/error?reason={reason}"
    denied = _connect(live, headers, decision="deny")
    assert denied.headers["location"] == "/freelancer/stripe/error?reason=access_denied"


def test_stripe_error_other_than_access_denied_redirects_as_exchange_failed(live) -> None:
    """The error's text is never reflected into the redirect: only a known reason is."""
    _freelancer_id, headers = _freelancer(live)
    url = live["http"].get(f"{API}/stripe-connect-url", headers=headers).json()["data"]["connectUrl"]
    state = consent(url, decision="deny")["state"]
    response = live["http"].get(f"{API}/stripe-connect-callback", params={
        "state": state, "error": "https://evil.example/<script>", "error_description": "x"})
    assert response.status_code == 302
    assert response.headers["location"] == "/freelancer/stripe/error?reason=exchange_failed"


def test_frontend_url_is_the_only_redirect_target(emulator, session_factory) -> None:
    port = free_port()
    settings = make_settings(stripe_api_base=emulator.base_url,
                             stripe_connect_base=emulator.base_url,
                             backend_url=f"http://127.0.0.1:{port}",
                             frontend_url="https://app.example.com")
    with running_companion(emulator, settings, port, session_factory) as url:
        response = httpx.get(f"{url}{API}/stripe-connect-callback",
                             params={"state": "s", "code": "c",
                                     "redirect_uri": "https://evil.example",
                                     "next": "https://evil.example"})
    assert response.status_code == 302
    assert response.headers["location"] == (
        "https://app.example.com/freelancer/stripe/error?reason=invalid_state")


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer nope"}, 401), ({"Authorization": "Basic x"}, 401)],
)
def test_api_needs_a_freelancer_token(live, headers, status) -> None:
    response = live["http"].get(f"{API}/stripe-connect-status", headers=headers)
    assert response.status_code == status
    assert response.json()["success"] is False


def test_admin_token_is_forbidden_on_freelancer_api(live) -> None:
    token = issue_token(secret=TEST_JWT_SECRET, subject="alice", role=Role.ADMIN)
    response = live["http"].get(f"{API}/stripe-connect-status",
                                headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403


def test_unknown_freelancer_is_404(live) -> None:
    token = issue_token(secret=TEST_JWT_SECRET, subject="9999", role=Role.FREELANCER)
    response = live["http"].get(f"{API}/stripe-connect-status",
                                headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 404


def test_onboarding_method_returns_an_account_link(live) -> None:
    _freelancer_id, headers = _freelancer(live)
    response = live["http"].get(f"{API}/stripe-connect-url", params={"method": "onboarding"},
                                headers=headers)
    assert response.status_code == 200
    url = response.json()["data"]["connectUrl"]
    assert url.startswith(live["emulator"].base_url + "/_emulator/onboarding/")
    assert 0 < response.json()["data"]["expiresIn"] <= 300


def test_webhooks_move_the_mirror_restricted_then_disabled(live) -> None:
    _freelancer_id, headers = _freelancer(live)
    account_id = parse_qs(urlsplit(_connect(live, headers).headers["location"]).query)[
        "accountId"][0]
    emulator = live["emulator"]
    deadline = int(time.time()) + 5 * 86_400
    emulator.set_account(account_id, requirements={
        "currently_due": ["individual.verification.document"],
        "eventually_due": ["individual.verification.document"], "current_deadline": deadline})
    assert emulator.flush_webhooks()
    wait_until(lambda: _status(live, headers)["status"] == "RESTRICTED", timeout=10,
               what="the status RESTRICTED")
    assert _status(live, headers)["accountDetails"]["currentDeadline"] == deadline
    emulator.set_account(account_id, payouts_enabled=False, requirements={
        "past_due": ["individual.verification.document"],
        "disabled_reason": "requirements.past_due"})
    assert emulator.flush_webhooks()
    wait_until(lambda: _status(live, headers)["status"] == "DISABLED", timeout=10,
               what="the status DISABLED")


def test_deauthorized_at_stripe_shows_not_connected(live) -> None:
    _freelancer_id, headers = _freelancer(live)
    account_id = parse_qs(urlsplit(_connect(live, headers).headers["location"]).query)[
        "accountId"][0]
    live["gateway"].oauth_deauthorize(account_id)  # the freelancer revokes us at Stripe
    assert live["emulator"].flush_webhooks()
    wait_until(lambda: _status(live, headers)["status"] == "NOT_CONNECTED", timeout=10,
               what="the status NOT_CONNECTED")


def test_duplicate_and_out_of_order_webhooks_processed_once(live) -> None:
    _freelancer_id, headers = _freelancer(live)
    account_id = parse_qs(urlsplit(_connect(live, headers).headers["location"]).query)[
        "accountId"][0]
    emulator = live["emulator"]
    assert emulator.flush_webhooks()
    emulator.inject_fault("duplicate", count=2)
    emulator.set_account(account_id, requirements={"currently_due": ["external_account"]})
    assert emulator.flush_webhooks()
    emulator.inject_fault("out_of_order", count=2)
    emulator.set_account(account_id, requirements={"currently_due": []})
    emulator.set_account(account_id, requirements={
        "currently_due": ["individual.id_number"], "eventually_due": ["individual.id_number"]})
    assert emulator.flush_webhooks()
    deliveries = [d for d in emulator.deliveries() if d.get("ok")]
    ids = [d["event_id"] for d in deliveries]
    assert len(ids) > len(set(ids))  # duplicates really were delivered
    factory = live["session_factory"]
    wait_until_settled(factory)  # the worker processes what the intake stored
    with factory() as session:
        rows = session.scalars(select(WebhookEvent).where(
            WebhookEvent.type == "account.updated")).all()
    assert {r.status for r in rows} == {"processed"}
    assert all(r.attempts == 1 for r in rows)
    # Whatever the order, the mirror shows Stripe's latest state.
    status = _status(live, headers)
    assert status["accountDetails"]["requirementsCurrentlyDue"] == ["individual.id_number"]
    assert status["status"] == "RESTRICTED"


@requires_postgresql()
def test_twenty_concurrent_callbacks_exchange_once(live) -> None:
    _freelancer_id, headers = _freelancer(live)
    response = live["http"].get(f"{API}/stripe-connect-url", headers=headers)
    redirect = consent(response.json()["data"]["connectUrl"])
    barrier = threading.Barrier(20)

    def hit(_: int) -> str:
        with httpx.Client(base_url=live["url"], timeout=30) as http:
            barrier.wait()
            answer = http.get(f"{API}/stripe-connect-callback", params=redirect)
        return answer.headers["location"]

    with ThreadPoolExecutor(max_workers=20) as pool:
        locations = list(pool.map(hit, range(20)))
    successes = [loc for loc in locations if "/stripe/success" in loc]
    assert len(successes) == 1
    assert locations.count("/freelancer/stripe/error?reason=invalid_state") == 19
    account_id = parse_qs(urlsplit(successes[0]).query)["accountId"][0]
    # Exchanged once: the connection was not revoked by a second exchange.
    connection = live["emulator"].state(full=True)["state"]["connections"][account_id]
    assert connection["active"] is True
    assert _status(live, headers, refresh=True)["status"] == "ACTIVE"


def test_onboarding_return_and_refresh_endpoints(live) -> None:
    _freelancer_id, headers = _freelancer(live)
    response = live["http"].get(f"{API}/stripe-connect-url", params={"method": "onboarding"},
                                headers=headers)
    link = response.json()["data"]["connectUrl"]
    returned_to = onboard(link, action="complete")
    back = live["http"].get(returned_to.removeprefix(live["url"]))
    assert back.status_code == 302
    assert back.headers["location"].startswith("/freelancer/stripe/success?accountId=acct_")
    assert _status(live, headers)["status"] == "ACTIVE"
    # The used link now sends the browser to refresh_url, which mints a fresh link at Stripe.
    refresh_url = onboard(link)
    assert "/stripe-connect-refresh?attempt=" in refresh_url
    fresh = live["http"].get(refresh_url.removeprefix(live["url"]))
    assert fresh.status_code == 302
    assert fresh.headers["location"].startswith(live["emulator"].base_url + "/_emulator/onboarding/")
    assert fresh.headers["location"] != link


@pytest.mark.parametrize("path", ["stripe-connect-return", "stripe-connect-refresh"])
@pytest.mark.parametrize("attempt", [None, "1", "1.deadbeef", "1.0.9999999999.deadbeef",
                                     "x" * 300])
def test_onboarding_endpoints_refuse_unsigned_attempts(live, path, attempt) -> None:
    params = {"attempt": attempt} if attempt is not None else None
    response = live["http"].get(f"{API}/{path}", params=params)
    assert response.status_code == 302
    assert response.headers["location"] == "/freelancer/payment-settings?onboarding=expired"


def test_absurd_callback_parameters_still_redirect(live) -> None:
    response = live["http"].get(f"{API}/stripe-connect-callback",
                                params={"state": "s" * 5000, "code": "c" * 5000})
    assert response.status_code == 302
    assert response.headers["location"] == "/freelancer/stripe/error?reason=invalid_state"
    response = live["http"].get(f"{API}/stripe-connect-callback?state=%FF%FE&code=%00")
    assert response.status_code == 302
    assert response.headers["location"] == "/freelancer/stripe/error?reason=invalid_state"
