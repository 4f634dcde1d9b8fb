"""Schemathesis fuzzes the companion service against its own ``/openapi.json``.

Every operation gets generated input (valid and invalid: the examples, coverage and fuzzing
phases) three times: anonymously, with a freelancer's token and with an admin's, so the
authenticated paths run and not only their 401s. The service is configured as deployed
beside the platform's frontend (its HS256 tokens accepted, CORS for its origin), and the
freelancer calls with a platform token, the admin with the companion's own. The freelancer is
connected to an active
emulator account and the platform has a balance, so status refreshes, disconnects and payouts
really reach the emulator. Checks: no 5xx, and every response conforms to the documented
schema (status code documented, content type, body). Webhook endpoints only ever see unsigned
or garbage input here, which must be a 400; without a token every authenticated operation
must be a 401.

Bounded and reproducible: at most 50 fuzzed examples per operation, a derandomised run, no
shrinking (a failure is reported as generated, with its curl command) and no example
database, so CI and a laptop run the same cases.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import jwt
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from sqlalchemy.orm import sessionmaker

from lib.accounts import upsert_account
from lib.freelancers import create_freelancer
from lib.payouts.execution import execute_payout
from lib.payouts.ledger import request_payout
from lib.roles import Operator, Role
from lib.stripe_gateway import StripeGateway
from lib.tokens import issue_token
from server.app import create_app
from tests.factories import TEST_JWT_SECRET, make_settings

MAX_EXAMPLES = 50
ADMIN = "fuzz-admin"
PLATFORM_ISSUER = "https://auth.marketplace.example/"
PLATFORM_SECRET = "the-platforms-hs256-secret-for-the-fuzz-run-0123"
#: As the service is deployed beside the platform's frontend: its tokens and its origin (CORS).
DEPLOYED_WITH = {
    "frontend_url": "https://app.marketplace.example",
    "platform_jwt_issuer": PLATFORM_ISSUER, "platform_jwt_audience": "connect-ops",
    "platform_jwt_algorithm": "HS256", "platform_jwt_secret": PLATFORM_SECRET,
    "platform_jwt_freelancer_id_claim": "freelancer_id",
}

#: "Schema-valid request rejected" (positive_data_acceptance) expects 2xx, 3xx, 401, 403, 404,
#: 409 or 429. Two operations refuse some schema-valid requests by design, for reasons JSON
#: Schema cannot state: a webhook without Stripe's HMAC (the fuzzer cannot sign) and a payout
#: whose amount breaks its currency's rules (decimals per currency, minimums, the cap).
_ACCEPTED = ["2xx", "3xx", 401, 403, 404, 409, 429]
CONFIG = schemathesis.Config.from_dict({
    "generation": {
        "mode": "all",
        "max-examples": MAX_EXAMPLES,
        "deterministic": True,
        "no-shrink": True,
        "database": "none",
    },
    "operations": [
        {"include-tag": "webhooks",
         "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, 400]}}},
        {"include-path": "/api/v1/admin/payouts",
         "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, 422]}}},
        {"include-path": "/api/v1/admin/payouts/{payout_id}/reversals",
         "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, 422]}}},
    ],
})

#: The role each authenticated operation is for; the other identities must be refused.
ROLE_OF_PATH = {
    "/api/v1/freelancer/stripe-connect-url": "freelancer",
    "/api/v1/freelancer/stripe-connect-status": "freelancer",
    "/api/v1/freelancer/stripe-connect": "freelancer",
    "/api/v1/freelancer/stripe-connect-confirm": "freelancer",
    "/api/v1/admin/payouts": "admin",
    "/api/v1/admin/payouts/{payout_id}/reversals": "admin",
}


@pytest.fixture(params=["anonymous", "freelancer", "admin"])
def identity(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def world(emulator, session_factory) -> Iterator[dict]:
    """The service on a migrated test database, a connected freelancer and the two tokens."""
    settings = make_settings(stripe_api_base=emulator.base_url,
                             stripe_connect_base=emulator.base_url, **DEPLOYED_WITH)
    gateway = StripeGateway(settings)
    account = gateway.create_express_account(email="fuzz@example.com", country="US",
                                             metadata={}, idempotency_key="acct-fuzz")
    emulator.set_account(account.id, onboarding="complete")
    with session_factory.begin() as session:
        freelancer = create_freelancer(session, name="Fuzz Freelancer", email="fuzz@example.com")
        freelancer.stripe_account_id = account.id
        upsert_account(session, account=gateway.retrieve_account(account.id).data)
        freelancer_id = freelancer.id
    # The payout example in the OpenAPI document (the guide's request) pays freelancer 1.
    assert freelancer_id == 1
    # The reversal example reverses payout 1: a paid one, with plenty left to reverse.
    with session_factory.begin() as session:
        payout_id = request_payout(session, operator=Operator(ADMIN, frozenset({Role.ADMIN})),
                                   freelancer_id=freelancer_id, amount="500.00", currency="usd",
                                   description="fuzz", client_request_token=None,
                                   settings=settings).id
    paid = execute_payout(session_factory, gateway=gateway, payout_id=payout_id,
                          operator=Operator(ADMIN, frozenset({Role.ADMIN})))
    assert (payout_id, paid.status) == (1, "paid")
    now = int(time.time())
    tokens = {
        # The freelancer calls as the platform's frontend does: with the platform's own token.
        "freelancer": jwt.encode({"iss": PLATFORM_ISSUER, "aud": "connect-ops", "sub": "u-1",
                                  "role": "freelancer", "freelancer_id": freelancer_id,
                                  "iat": now, "exp": now + 3600},
                                 PLATFORM_SECRET, algorithm="HS256"),
        "admin": issue_token(secret=TEST_JWT_SECRET, subject=ADMIN, role=Role.ADMIN),
    }
    app = create_app(settings, session_factory=session_factory)
    # The fuzzed document is the one this very app serves.
    assert app.openapi() == DOCUMENT_APP.openapi()
    with TestClient(app):  # runs the app's lifespan around the whole run
        yield {"app": app, "tokens": tokens, "seen": [], "account_id": account.id}


def _document_app() -> FastAPI:
    """The service as any deployment builds it; only its OpenAPI document is read from it."""
    return create_app(make_settings(), session_factory=sessionmaker())


DOCUMENT_APP = _document_app()
# schemathesis.pytest.from_fixture would load the schema from the per-test app, but its lazy
# loader sets pytest's private Node._nodeid, which pytest 9.2 no longer has. So the document
# is loaded once here and every case is sent to the per-test app (``app=`` below).
schema = schemathesis.openapi.from_asgi("/openapi.json", DOCUMENT_APP, config=CONFIG)
# Two excludes rather than include + exclude: the loaded schema already carries a match-all
# include filter, and includes are OR-ed, so an include would select every operation.
authenticated = schema.exclude(lambda ctx: ctx.operation.path not in ROLE_OF_PATH)
public = schema.exclude(lambda ctx: ctx.operation.path in ROLE_OF_PATH)


def _probes_another_method(case: schemathesis.Case) -> bool:
    """schemathesis also sends undeclared methods; its own check wants their 405."""
    return case.method.upper() != case.operation.method.upper()


@pytest.fixture
def served_its_role(world: dict, identity: str, request: pytest.FixtureRequest) -> Iterator[None]:
    """After the run: the operation's own role got a success, not only refusals (a broken
    token or world would otherwise leave a fuzz run that only ever sees 401s and 403s)."""
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        return  # the run stopped at its failure; that failure is the report
    mine = [status for path, status in world["seen"] if ROLE_OF_PATH[path] == identity]
    if mine:
        assert any(200 <= status < 300 for status in mine), f"no success in {sorted(set(mine))}"


CONFIRM_PATH = "/api/v1/freelancer/stripe-connect-confirm"


def _name_the_account_sometimes(case: schemathesis.Case, account_id: str) -> None:
    """Half of the well-formed confirmations name the freelancer's own account.

    Generated ``acct_…`` ids never name it, so every confirmation would be a 409 and the
    operation's success path never fuzzed (``served_its_role`` would rightly fail).
    """
    body = case.body
    if case.operation.path != CONFIRM_PATH or not isinstance(body, dict):
        return
    named = body.get("accountId")
    # Only a schema-valid body: a negative case must stay as invalid as it was generated.
    if (set(body) == {"accountId"} and isinstance(named, str)
            and re.fullmatch(r"acct_[A-Za-z0-9]{1,64}", named) and ord(named[-1]) % 2 == 0):
        body["accountId"] = account_id


@authenticated.parametrize()
# One world per operation and identity on purpose: state built by earlier examples (a
# disconnect, a payout) is what later ones must cope with.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
def test_authenticated_operations(
    case: schemathesis.Case, world: dict, identity: str, served_its_role: None,
) -> None:
    token = world["tokens"].get(identity)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    _name_the_account_sometimes(case, world["account_id"])
    response = case.call_and_validate(headers=headers, app=world["app"])
    if _probes_another_method(case):
        return
    world["seen"].append((case.operation.path, response.status_code))
    if identity == "anonymous":
        assert response.status_code == 401, response.text
    elif identity != ROLE_OF_PATH[case.operation.path]:
        # Another role's token: refused (or its input refused first), never served.
        assert response.status_code in (403, 422), response.text


@public.parametrize()
# Stripe and browsers call these without a token. (The parameter also gives each operation its
# own test id: without one, pytest 9.2 names every operation's test alike.)
@pytest.mark.parametrize("identity", ["anonymous"])
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
def test_public_operations(case: schemathesis.Case, world: dict, identity: str) -> None:
    response = case.call_and_validate(app=world["app"])
    if _probes_another_method(case):
        return
    if "webhooks" in (case.operation.tags or ()):
        # Nothing here carries a valid Stripe signature: refused before the database is touched.
        assert response.status_code == 400, response.text


# ---- what the fuzz run found, pinned ---------------------------------------------------------
# Generated input finds these only when the derandomised stream happens to draw them (any edit
# to a test function reshuffles it), so each 500 it found is also a fixed case here.


@pytest.fixture
def client(session_factory) -> Iterator[TestClient]:
    app = create_app(make_settings(stripe_api_base="http://127.0.0.1:9",
                                   stripe_connect_base="http://127.0.0.1:9"),
                     session_factory=session_factory)
    with TestClient(app, follow_redirects=False) as c:
        yield c


@pytest.mark.parametrize("path", ["stripe-connect-return", "stripe-connect-refresh"])
@pytest.mark.parametrize("attempt", ["1.±¥", "±¥.!Ýº\x03èç", "1." + "é" * 2000, "."])
def test_tampered_onboarding_link_redirects_to_sign_in(client, path, attempt) -> None:
    response = client.get(f"/api/v1/freelancer/{path}", params={"attempt": attempt})
    assert response.status_code == 302
    assert response.headers["location"] == "/freelancer/payment-settings?onboarding=expired"


@pytest.mark.parametrize("freelancer_id", ["²", "٣", "99999999999999999999999", 2**31, 2**70, 0])
def test_absurd_freelancer_id_is_refused_not_a_500(client, freelancer_id) -> None:
    admin = issue_token(secret=TEST_JWT_SECRET, subject=ADMIN, role=Role.ADMIN)
    response = client.post("/api/v1/admin/payouts",
                           json={"freelancerId": freelancer_id, "amount": "5", "currency": "usd"},
                           headers={"Authorization": f"Bearer {admin}"})
    assert response.status_code == 422
    assert response.json() == {"success": False, "code": "validation_error",
                               "message": "freelancerId must be a freelancer's numeric id."}


@pytest.mark.parametrize("subject", ["99999999999999999999999", str(2**31), "٣"])
@pytest.mark.parametrize(("method", "path"), [("GET", "stripe-connect-url"),
                                              ("GET", "stripe-connect-status"),
                                              ("DELETE", "stripe-connect")])
def test_freelancer_token_naming_no_possible_id_is_401(client, subject, method, path) -> None:
    token = issue_token(secret=TEST_JWT_SECRET, subject=subject, role=Role.FREELANCER)
    response = client.request(method, f"/api/v1/freelancer/{path}",
                              headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["message"] == "The token's subject is not a freelancer id."


def test_idempotency_key_must_be_printable_ascii(client) -> None:
    admin = issue_token(secret=TEST_JWT_SECRET, subject=ADMIN, role=Role.ADMIN)
    response = client.post("/api/v1/admin/payouts",
                           json={"freelancerId": 1, "amount": "5", "currency": "usd"},
                           headers={"Authorization": f"Bearer {admin}",
                                    "Idempotency-Key": "key\tnine"})
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
