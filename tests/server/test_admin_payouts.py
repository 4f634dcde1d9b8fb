"""POST /api/v1/admin/payouts: the guide's admin endpoint on the payout engine."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lib.accounts import upsert_account
from lib.freelancers import create_freelancer
from lib.models import Payout
from lib.roles import Role
from lib.stripe_gateway import StripeGateway
from lib.tokens import issue_token
from server.app import create_app
from tests.factories import TEST_JWT_SECRET, make_settings

URL = "/api/v1/admin/payouts"


def bearer(role: Role, subject: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(secret=TEST_JWT_SECRET, subject=subject, role=role)}"}


@pytest.fixture
def world(emulator, session_factory):
    settings = make_settings(stripe_api_base=emulator.base_url,
                             stripe_connect_base=emulator.base_url,
                             payout_approval_threshold_minor=100_000)
    gateway = StripeGateway(settings)
    account = gateway.create_express_account(email="p@example.com", country="US", metadata={},
                                             idempotency_key="acct-admin-api")
    emulator.set_account(account.id, onboarding="complete")
    with session_factory.begin() as session:
        freelancer = create_freelancer(session, name="Paula", email="p@example.com")
        freelancer.stripe_account_id = account.id
        upsert_account(session, account=gateway.retrieve_account(account.id).data)
        freelancer_id = freelancer.id
    with TestClient(create_app(settings, session_factory=session_factory)) as client:
        yield client, freelancer_id


def count(session_factory) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(Payout))


def test_guide_example_pays_exactly(world, emulator, session_factory) -> None:
    client, freelancer_id = world
    body = (f'{{"freelancerId": {freelancer_id}, "amount": 100.50, "currency": "usd", '
            '"payoutType": "MANUAL", "description": "Payment for completed work"}')
    response = client.post(URL, content=body, headers={**bearer(Role.ADMIN),
                                                       "Content-Type": "application/json",
                                                       "Idempotency-Key": "req-1"})
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["status"] == "paid" and data["amountMinor"] == 10050
    assert data["stripeTransferId"].startswith("tr_")
    assert data["amountDisplay"] == "$100.50 USD"
    # A retry with the same key returns the same row; nothing is paid twice.
    again = client.post(URL, content=body, headers={**bearer(Role.ADMIN),
                                                    "Content-Type": "application/json",
                                                    "Idempotency-Key": "req-1"})
    assert again.status_code == 200 and again.json()["data"]["payoutId"] == data["payoutId"]
    assert count(session_factory) == 1
    assert emulator.state()["counts"]["transfers"] == 1


def test_over_threshold_waits_for_approval(world, emulator) -> None:
    client, freelancer_id = world
    response = client.post(URL, json={"freelancerId": freelancer_id, "amount": "2500",
                                      "currency": "usd"}, headers=bearer(Role.ADMIN))
    assert response.status_code == 202
    assert response.json()["data"]["status"] == "pending_approval"
    assert emulator.state()["counts"]["transfers"] == 0


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('{"freelancerId": 1, "amount": 1.005, "currency": "usd"}', "decimal"),
        ('{"freelancerId": 1, "amount": -5, "currency": "usd"}', "positive"),
        ('{"freelancerId": 1, "amount": 1e3, "currency": "usd"}', "exponent"),
        ('{"freelancerId": 1, "amount": 5, "currency": "zzz"}', "ZZZ"),
        ('{"freelancerId": 1, "amount": 5}', "currency is required"),
        ('{"freelancerId": true, "amount": 5, "currency": "usd"}', "freelancerId"),
        ('{"freelancerId": 1, "amount": 5, "currency": "usd", "extra": 1}', "Unknown field"),
        ('[1, 2]', "JSON object"),
        ('not json', "JSON object"),
        ('{"freelancerId": 1, "amount": 5, "currency": "usd", "payoutType": "X"}', "MANUAL"),
    ],
)
def test_bad_bodies_are_422_and_write_nothing(world, session_factory, body, fragment) -> None:
    client, _freelancer_id = world
    response = client.post(URL, content=body, headers={**bearer(Role.ADMIN),
                                                       "Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["success"] is False
    assert fragment in response.json()["message"]
    assert count(session_factory) == 0


@pytest.mark.parametrize(("role", "status"), [(Role.FINANCE, 403), (Role.MANAGER, 403),
                                              (Role.FREELANCER, 403)])
def test_only_admins_request(world, session_factory, role, status) -> None:
    client, freelancer_id = world
    response = client.post(URL, json={"freelancerId": freelancer_id, "amount": "5",
                                      "currency": "usd"}, headers=bearer(role, subject="7"))
    assert response.status_code == status
    assert count(session_factory) == 0


def test_no_token_is_401(world) -> None:
    client, freelancer_id = world
    response = client.post(URL, json={"freelancerId": freelancer_id, "amount": "5",
                                      "currency": "usd"})
    assert response.status_code == 401


def test_insufficient_balance_is_failed_with_reason(world, emulator) -> None:
    client, freelancer_id = world
    emulator.set_balance(100, currency="usd")
    response = client.post(URL, json={"freelancerId": freelancer_id, "amount": "50",
                                      "currency": "usd"}, headers=bearer(Role.ADMIN))
    assert response.status_code == 409
    checks = {c["name"]: c["ok"] for c in response.json()["data"]["checks"]}
    assert checks["balance_available"] is False
    assert emulator.state()["counts"]["transfers"] == 0


def test_unknown_freelancer_is_404(world) -> None:
    client, _ = world
    response = client.post(URL, json={"freelancerId": 999, "amount": "5", "currency": "usd"},
                           headers=bearer(Role.ADMIN))
    assert response.status_code == 404


# ---- without Idempotency-Key the same payout cannot be paid twice by accident (issue 17) -------

@pytest.fixture
def guarded(emulator, session_factory):
    settings = make_settings(stripe_api_base=emulator.base_url,
                             stripe_connect_base=emulator.base_url,
                             payout_approval_threshold_minor=100_000,
                             payout_duplicate_window_days=7)
    gateway = StripeGateway(settings)
    account = gateway.create_express_account(email="g@example.com", country="US", metadata={},
                                             idempotency_key="acct-admin-guarded")
    emulator.set_account(account.id, onboarding="complete")
    with session_factory.begin() as session:
        freelancer = create_freelancer(session, name="Gina", email="g@example.com")
        freelancer.stripe_account_id = account.id
        upsert_account(session, account=gateway.retrieve_account(account.id).data)
        freelancer_id = freelancer.id
    with TestClient(create_app(settings, session_factory=session_factory)) as client:
        yield client, freelancer_id


def test_a_retry_without_idempotency_key_is_refused_as_a_likely_duplicate(
    guarded, emulator, session_factory,
) -> None:
    client, freelancer_id = guarded
    body = {"freelancerId": freelancer_id, "amount": 100.50, "currency": "usd",
            "payoutType": "MANUAL", "description": "Payment for completed work"}
    first = client.post(URL, json=body, headers=bearer(Role.ADMIN))
    assert first.status_code == 200
    earlier = first.json()["data"]["payoutId"]
    # The client timed out and sent the same request again, without a key.
    retry = client.post(URL, json=body, headers=bearer(Role.ADMIN))
    assert retry.status_code == 409
    assert retry.json()["code"] == "likely_duplicate"
    assert retry.json()["data"] == {"earlierId": earlier}
    assert f"#{earlier}" in retry.json()["message"]
    assert count(session_factory) == 1 and emulator.state()["counts"]["transfers"] == 1
    # Naming the earlier payout says the second payment is intended.
    meant = client.post(URL, json=body, headers={**bearer(Role.ADMIN),
                                                 "Confirm-Duplicate-Of": str(earlier)})
    assert meant.status_code == 200 and meant.json()["data"]["payoutId"] != earlier
    assert emulator.state()["counts"]["transfers"] == 2


def test_reversals_through_the_api(guarded, emulator, session_factory) -> None:
    client, freelancer_id = guarded
    paid = client.post(URL, json={"freelancerId": freelancer_id, "amount": "40.00",
                                  "currency": "usd", "description": "Job 9"},
                       headers={**bearer(Role.ADMIN), "Idempotency-Key": "pay-9"})
    payout_id = paid.json()["data"]["payoutId"]
    reversals = f"{URL}/{payout_id}/reversals"
    refused = client.post(reversals, json={"reason": "x"}, headers=bearer(Role.FREELANCER, "1"))
    assert refused.status_code == 403
    assert client.post(reversals, json={"amount": "1.00"}, headers=bearer(Role.ADMIN)
                       ).status_code == 422
    part = client.post(reversals, json={"amount": "10.00", "reason": "Overpaid"},
                       headers={**bearer(Role.ADMIN), "Idempotency-Key": "rev-1"})
    assert part.status_code == 200, part.json()
    view = part.json()["data"]
    assert view["status"] == "succeeded" and view["amountDisplay"] == "$10.00 USD"
    assert view["stripeReversalId"].startswith("trr_")
    again = client.post(reversals, json={"amount": "10.00", "reason": "Overpaid"},
                        headers={**bearer(Role.ADMIN), "Idempotency-Key": "rev-1"})
    assert again.json()["data"]["reversalId"] == view["reversalId"]
    duplicate = client.post(reversals, json={"amount": "10.00", "reason": "Overpaid"},
                            headers=bearer(Role.ADMIN))
    assert duplicate.status_code == 409 and duplicate.json()["data"] == {
        "earlierId": view["reversalId"]}
    rest = client.post(reversals, json={"reason": "Job cancelled"}, headers=bearer(Role.ADMIN))
    assert rest.status_code == 200 and rest.json()["data"]["amountMinor"] == 3000
    assert client.post(reversals, json={"reason": "again"}, headers=bearer(Role.ADMIN)
                       ).status_code == 409
    assert client.post(f"{URL}/999999/reversals", json={"reason": "x"},
                       headers=bearer(Role.ADMIN)).status_code == 404
    with session_factory() as session:
        row = session.get(Payout, payout_id)
        assert row.status == "reversed" and row.amount_reversed_minor == 4000
    stripe = StripeGateway(make_settings(stripe_api_base=emulator.base_url,
                                         stripe_connect_base=emulator.base_url))
    assert stripe.retrieve_transfer(row.stripe_transfer_id)["amount_reversed"] == 4000


@pytest.mark.parametrize("path", ["", "/1/reversals"])
def test_a_255_character_idempotency_key_fits(guarded, path) -> None:
    """The key is scoped to its sender ("api:alice:…"), then hashed when it would not fit."""
    client, freelancer_id = guarded
    key = "k" * 255
    paid = client.post(URL, json={"freelancerId": freelancer_id, "amount": "30.00",
                                  "currency": "usd", "description": "Long key"},
                       headers={**bearer(Role.ADMIN), "Idempotency-Key": key})
    assert paid.status_code == 200, paid.json()
    if not path:
        again = client.post(URL, json={"freelancerId": freelancer_id, "amount": "30.00",
                                       "currency": "usd", "description": "Long key"},
                            headers={**bearer(Role.ADMIN), "Idempotency-Key": key})
        assert again.json()["data"]["payoutId"] == paid.json()["data"]["payoutId"]
        return
    url = f"{URL}/{paid.json()['data']['payoutId']}/reversals"
    first = client.post(url, json={"amount": "1.00", "reason": "r"},
                        headers={**bearer(Role.ADMIN), "Idempotency-Key": key})
    again = client.post(url, json={"amount": "1.00", "reason": "r"},
                        headers={**bearer(Role.ADMIN), "Idempotency-Key": key})
    assert first.status_code == 200 and again.json()["data"]["reversalId"] == first.json()[
        "data"]["reversalId"]
