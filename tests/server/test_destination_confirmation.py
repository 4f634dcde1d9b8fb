"""A new payout destination is held until it is confirmed (issue 19).

A second person completes a freelancer's OAuth link with *their* Stripe account: the connection
succeeds (Stripe cannot tell), but no payout goes to it until the freelancer, shown what Stripe
reports about the account, confirms it is theirs, or an admin confirms it with a reason (audited).
A live companion and the emulator; the emulator's transfers are the proof of what was paid.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from emulator.page_driver import consent, onboard
from lib.destinations import confirm_destination
from lib.errors import ConflictError, ValidationError
from lib.freelancers import create_freelancer
from lib.models import AuditLog, Freelancer
from lib.roles import Operator, Role
from lib.tokens import issue_token
from tests.factories import TEST_JWT_SECRET, make_settings
from tests.support.servers import free_port, running_companion

API = "/api/v1/freelancer"
ADMIN = Operator("alice", frozenset({Role.ADMIN}))
#: The seeded Standard account of someone else (emulator/account_state.py).
GRACE = ("grace@example.com", "Hopper Consulting")


@pytest.fixture
def live(emulator, session_factory) -> Iterator[dict[str, Any]]:
    port = free_port()
    settings = make_settings(stripe_api_base=emulator.base_url,
                             stripe_connect_base=emulator.base_url,
                             backend_url=f"http://127.0.0.1:{port}")
    emulator.set_balance(1_000_000, "usd")
    with running_companion(emulator, settings, port, session_factory) as url:
        with httpx.Client(base_url=url, timeout=20, follow_redirects=False) as http:
            yield {"url": url, "http": http, "emulator": emulator,
                   "session_factory": session_factory}


def _headers(subject: str, role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(secret=TEST_JWT_SECRET, subject=subject, role=role)}"}


def _freelancer(live: dict[str, Any]) -> tuple[int, dict[str, str]]:
    with live["session_factory"].begin() as session:
        freelancer_id = create_freelancer(session, name="Ada Lovelace", email="ada@example.com",
                                          country="US").id
    return freelancer_id, _headers(str(freelancer_id), Role.FREELANCER)


def _account_of(live: dict[str, Any], email: str) -> str:
    accounts = live["emulator"].state(full=True)["state"]["accounts"]
    return next(a["id"] for a in accounts.values() if a.get("email") == email)


def _someone_else_connects(live: dict[str, Any], headers: dict[str, str]) -> str:
    """The freelancer's OAuth link, completed by another person with their own account."""
    url = live["http"].get(f"{API}/stripe-connect-url", headers=headers).json()["data"]["connectUrl"]
    theirs = _account_of(live, GRACE[0])
    callback = live["http"].get(f"{API}/stripe-connect-callback", params=consent(url, account=theirs))
    assert callback.status_code == 302
    assert callback.headers["location"] == f"/freelancer/stripe/success?accountId={theirs}"
    return theirs


def _pay(live: dict[str, Any], freelancer_id: int, key: str) -> httpx.Response:
    return live["http"].post(
        "/api/v1/admin/payouts",
        json={"freelancerId": freelancer_id, "amount": "25.00", "currency": "usd"},
        headers={**_headers("alice", Role.ADMIN), "Idempotency-Key": key})


def _transfers(live: dict[str, Any]) -> int:
    return int(live["emulator"].state()["counts"]["transfers"])


def _assert_held(live: dict[str, Any], freelancer_id: int, account_id: str) -> None:
    held = _pay(live, freelancer_id, "invoice-7")
    assert held.status_code == 409, held.text
    body = held.json()
    assert body["code"] == "preflight_failed"
    failing = [c for c in body["data"]["checks"] if not c["ok"]]
    assert [c["name"] for c in failing] == ["destination_confirmed"]
    assert failing[0]["message"].startswith(
        f"Payouts to {account_id} are held: it became Ada Lovelace's payout destination on ")
    assert failing[0]["message"].endswith(
        "Ada Lovelace confirms it on their payment settings page, or an admin confirms it on "
        "the Accounts page with a reason.")
    assert _transfers(live) == 0


def _confirmations(live: dict[str, Any]) -> list[AuditLog]:
    with live["session_factory"]() as session:
        return list(session.scalars(select(AuditLog).where(
            AuditLog.action == "connect.destination_confirm").order_by(AuditLog.id)))


def test_someone_elses_account_is_held_until_the_freelancer_confirms(live) -> None:
    freelancer_id, headers = _freelancer(live)
    theirs = _someone_else_connects(live, headers)

    _assert_held(live, freelancer_id, theirs)
    # What the freelancer is shown to decide: the account as Stripe reports it.
    status = live["http"].get(f"{API}/stripe-connect-status", headers=headers).json()["data"]
    assert status["destinationConfirmed"] is False
    details = status["accountDetails"]
    assert (details["id"], details["email"], details["businessName"]) == (theirs, *GRACE)
    assert (details["bankName"], details["bankLast4"]) == ("STRIPE TEST BANK", "6789")

    # A confirmation naming another account (a stale page) changes nothing.
    stale = live["http"].post(f"{API}/stripe-connect-confirm", json={"accountId": "acct_other1"},
                              headers=headers)
    assert stale.status_code == 409
    _assert_held(live, freelancer_id, theirs)

    confirmed = live["http"].post(f"{API}/stripe-connect-confirm", json={"accountId": theirs},
                                  headers=headers)
    assert confirmed.status_code == 200
    assert confirmed.json() == {"success": True, "message": "Payout destination confirmed"}
    paid = _pay(live, freelancer_id, "invoice-7")  # the held payout, retried with its key
    assert paid.status_code == 200, paid.text
    assert paid.json()["data"]["status"] == "paid" and _transfers(live) == 1
    [entry] = _confirmations(live)
    assert (entry.actor, entry.actor_role, entry.result) == (
        f"freelancer:{freelancer_id}", "freelancer", "confirmed")
    assert entry.input == {"account": theirs, "email": GRACE[0], "business_name": GRACE[1],
                           "bank": "STRIPE TEST BANK ••••6789", "by": "freelancer"}
    again = live["http"].post(f"{API}/stripe-connect-confirm", json={"accountId": theirs},
                              headers=headers)
    assert again.json()["message"] == "Payout destination was already confirmed"
    assert len(_confirmations(live)) == 1


def test_an_admin_confirms_with_a_reason_and_it_is_audited(live) -> None:
    freelancer_id, headers = _freelancer(live)
    theirs = _someone_else_connects(live, headers)
    factory = live["session_factory"]

    with pytest.raises(ValidationError, match="Give the reason"), factory.begin() as session:
        confirm_destination(session, operator=ADMIN, freelancer_id=freelancer_id,
                            account_id=theirs, reason="  ")
    _assert_held(live, freelancer_id, theirs)
    with pytest.raises(ConflictError), factory.begin() as session:
        confirm_destination(session, operator=ADMIN, freelancer_id=freelancer_id,
                            account_id="acct_notthisone", reason="Called Ada, ticket 4411")
    assert _confirmations(live) == []

    with factory.begin() as session:
        assert confirm_destination(session, operator=ADMIN, freelancer_id=freelancer_id,
                                   account_id=theirs, reason="Called Ada, ticket 4411")
    assert _pay(live, freelancer_id, "invoice-8").status_code == 200
    assert _transfers(live) == 1
    [entry] = _confirmations(live)
    assert (entry.actor, entry.actor_role, entry.target, entry.result, entry.detail) == (
        "alice", "admin", f"freelancer:{freelancer_id}", "confirmed", "Called Ada, ticket 4411")
    assert entry.input["by"] == "admin" and entry.input["account"] == theirs
    with factory() as session:
        row = session.get_one(Freelancer, freelancer_id)
        assert (row.unconfirmed_account_id, row.destination_confirmed_by) == (None, "alice")


def test_every_new_connection_is_held_again(live) -> None:
    """Disconnect clears the hold; connecting again (even the same account) holds again; a
    new Express account from onboarding is held too, and shows the bank it pays out to."""
    freelancer_id, headers = _freelancer(live)
    theirs = _someone_else_connects(live, headers)
    with live["session_factory"].begin() as session:
        confirm_destination(session, operator=ADMIN, freelancer_id=freelancer_id,
                            account_id=theirs, reason="Checked with the freelancer")
    assert live["http"].delete(f"{API}/stripe-connect", headers=headers).status_code == 200
    with live["session_factory"]() as session:
        assert session.get_one(Freelancer, freelancer_id).unconfirmed_account_id is None

    link = live["http"].get(f"{API}/stripe-connect-url", params={"method": "onboarding"},
                            headers=headers).json()["data"]["connectUrl"]
    back = live["http"].get(onboard(link, business_name="Ada Designs").removeprefix(live["url"]))
    account_id = parse_qs(urlsplit(back.headers["location"]).query)["accountId"][0]
    _assert_held(live, freelancer_id, account_id)
    details = live["http"].get(f"{API}/stripe-connect-status",
                               headers=headers).json()["data"]["accountDetails"]
    assert (details["email"], details["businessName"], details["bankLast4"]) == (
        "ada@example.com", "Ada Designs", "6789")


def test_the_payment_settings_page_asks_and_confirms(live) -> None:
    freelancer_id, headers = _freelancer(live)
    theirs = _someone_else_connects(live, headers)
    token = issue_token(secret=TEST_JWT_SECRET, subject=str(freelancer_id), role=Role.FREELANCER)
    assert live["http"].get("/freelancer/login", params={"token": token}).status_code == 303
    page = live["http"].get("/freelancer/payment-settings")
    assert page.status_code == 200
    assert "Is this your Stripe account?" in page.text
    for shown in (theirs, *GRACE, "STRIPE TEST BANK ••••6789"):
        assert shown in page.text
    csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]

    forged = live["http"].post("/freelancer/confirm-destination",
                               data={"account_id": theirs, "csrf_token": "forged"})
    assert forged.status_code == 403
    _assert_held(live, freelancer_id, theirs)
    done = live["http"].post("/freelancer/confirm-destination",
                             data={"account_id": theirs, "csrf_token": csrf})
    assert done.status_code == 303
    assert done.headers["location"] == "/freelancer/payment-settings?notice=confirmed"
    after = live["http"].get(done.headers["location"])
    assert "Is this your Stripe account?" not in after.text
    assert "payouts now go to this account" in after.text and GRACE[1] in after.text
    assert _pay(live, freelancer_id, "invoice-9").status_code == 200
