"""The fault sweep's world: the emulator, a short-timeout gateway, the companion app in-process.

The gateway under test has no SDK retries and a sub-second read timeout, so every injected
fault reaches the product (the worst case) and "delay past the timeout" costs about a second.
A patient gateway arranges the state a scenario starts from, so set-up never trips a fault.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from emulator.testing import EmulatorHandle
from lib.accounts import upsert_account
from lib.freelancers import create_freelancer
from lib.models import ConnectionMethod
from lib.roles import Role
from lib.settings import Settings
from lib.stripe_gateway import StripeGateway
from lib.tokens import issue_token
from scripts.processes import wait_until
from server.app import create_app
from tests.factories import (
    TEST_CONNECT_WEBHOOK_SECRET,
    TEST_JWT_SECRET,
    TEST_SECRET_KEY,
    TEST_WEBHOOK_SECRET,
    make_settings,
)

#: The gateway's read timeout in the sweep, and how long a "delay" fault holds a request.
READ_TIMEOUT = 0.8
DELAY_SECONDS = 1.5
#: Scenarios that retry while Stripe still holds the first attempt need a wider margin: the
#: retry must arrive before the held request runs, even on a loaded machine.
HELD_RETRY_DELAY_SECONDS = 3.0


def sweep_settings(emulator: EmulatorHandle, **overrides: Any) -> Settings:
    """Settings pointed at the emulator with no SDK retries and a short read timeout."""
    values: dict[str, Any] = {
        "stripe_api_base": emulator.base_url, "stripe_connect_base": emulator.base_url,
        "stripe_max_network_retries": 0, "stripe_timeout_seconds": READ_TIMEOUT,
        "stripe_connect_timeout_seconds": 2, "payout_approval_threshold_minor": 1_000_000,
    }
    values.update(overrides)
    return make_settings(**values)


def signed(event: dict[str, Any], secret: str) -> tuple[bytes, dict[str, str]]:
    """A webhook body and its Stripe-Signature header (HMAC-SHA256 of "t.body")."""
    body = json.dumps(event).encode()
    stamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={stamp},v1={mac}", "Content-Type": "application/json"}


@dataclass
class Sweep:
    """Everything a scenario touches, and small helpers over it."""

    emu: EmulatorHandle
    settings: Settings
    gateway: StripeGateway
    patient: StripeGateway
    session_factory: sessionmaker[Session]
    http: TestClient
    #: The id of an armed ``delay`` fault not yet settled (see ``settle_held``).
    held_fault: str | None = None

    def settle_held(self) -> None:
        """Wait until a request held by a delay fault has run at the emulator.

        The hold starts when the request reaches the emulator, after the product's own work
        (on a loaded machine, well after ``arm``): first the emulator takes the armed fault
        (the request has arrived), then it says when nothing is being served any more.
        """
        if self.held_fault is not None:
            held, self.held_fault = self.held_fault, None
            wait_until(lambda: held not in self._armed_faults(), timeout=30,
                       what="the request the delay fault holds reaching the emulator")
        self.emu.wait_idle()

    def _armed_faults(self) -> set[str]:
        armed = self.emu.http.get("/_emulator/faults").json()["requests"]
        return {str(fault["id"]) for fault in armed}

    # ---- the emulator -----------------------------------------------------------------------

    def arm(self, fault: str, path: str, method: str, *, delay: float = DELAY_SECONDS) -> None:
        spec: dict[str, Any] = {"method": method, "count": 1}
        if fault == "http_500":
            # The sweep's 500 is one before Stripe started executing: nothing is saved under the
            # key, so the documented recoveries apply. A 500 Stripe saved under a payout's key is
            # never settled by retrying (tests/lib/payouts/test_saved_server_error.py,
            # test_a_saved_500_through_the_payout_api below).
            spec["saved"] = False
        if fault == "delay":
            spec["seconds"] = delay
        armed = self.emu.inject_fault(fault, path, **spec)
        if fault == "delay":
            self.held_fault = str(armed["id"])

    def counts(self) -> dict[str, int]:
        return dict(self.emu.state()["counts"])

    def full(self) -> dict[str, Any]:
        return dict(self.emu.state(full=True)["state"])

    def connected_at_stripe(self, account_id: str) -> bool:
        return bool(self.full()["connections"].get(account_id, {}).get("active"))

    # ---- rows and tokens --------------------------------------------------------------------

    def freelancer(self, email: str = "ada@example.com") -> int:
        with self.session_factory.begin() as session:
            return create_freelancer(session, name="Ada Lovelace", email=email, country="US").id

    def express_freelancer(self, *, onboarded: bool = True, mirrored: bool = True) -> tuple[int, str]:
        """A freelancer attached to an Express account the platform created."""
        account = self.patient.create_express_account(
            email="payee@example.com", country="US", metadata={},
            idempotency_key=f"sweep-acct-{uuid.uuid4().hex}")
        if onboarded:
            self.emu.set_account(account.id, onboarding="complete")
        data = self.patient.retrieve_account(account.id).data
        with self.session_factory.begin() as session:
            freelancer = create_freelancer(session, name="Paula Payee",
                                           email=f"{uuid.uuid4().hex[:8]}@example.com")
            freelancer.stripe_account_id = account.id
            freelancer.connection_method = ConnectionMethod.ACCOUNT_LINK.value
            if mirrored:
                upsert_account(session, account=data)
            return freelancer.id, account.id

    def freelancer_headers(self, freelancer_id: int) -> dict[str, str]:
        token = issue_token(secret=TEST_JWT_SECRET, subject=str(freelancer_id),
                            role=Role.FREELANCER)
        return {"Authorization": f"Bearer {token}"}

    def admin_headers(self, key: str) -> dict[str, str]:
        token = issue_token(secret=TEST_JWT_SECRET, subject="alice", role=Role.ADMIN)
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                "Idempotency-Key": key}

    def deliver(self, event: dict[str, Any], *, connect: bool) -> Any:
        """POST a signed event to the companion's platform or Connect endpoint."""
        secret = TEST_CONNECT_WEBHOOK_SECRET if connect else TEST_WEBHOOK_SECRET
        body, headers = signed(event, secret)
        path = "/api/v1/stripe/connect-webhooks" if connect else "/api/v1/stripe/webhooks"
        return self.http.post(path, content=body, headers=headers)

    def cli_environment(self, monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
        """The environment a scheduler gives ``python -m lib.sync`` / ``lib.payouts``."""
        monkeypatch.setenv("STRIPE_SECRET_KEY", TEST_SECRET_KEY)
        monkeypatch.setenv("STRIPE_API_BASE", self.emu.base_url)
        monkeypatch.setenv("STRIPE_CONNECT_BASE", self.emu.base_url)
        monkeypatch.setenv("STRIPE_MAX_NETWORK_RETRIES", "0")
        monkeypatch.setenv("STRIPE_TIMEOUT_SECONDS", str(READ_TIMEOUT))
        monkeypatch.setenv("DATABASE_URL", database_url)


@pytest.fixture
def sweep(emulator: EmulatorHandle, session_factory: sessionmaker[Session]) -> Iterator[Sweep]:
    settings = sweep_settings(emulator)
    emulator.configure(backend_url=settings.backend_url, webhook_url=None,
                       connect_webhook_url=None)
    emulator.set_balance(1_000_000, "usd")
    gateway = StripeGateway(settings)
    patient = StripeGateway(make_settings(stripe_api_base=emulator.base_url,
                                          stripe_connect_base=emulator.base_url))
    app = create_app(settings, session_factory=session_factory, gateway=gateway)
    with TestClient(app, follow_redirects=False, raise_server_exceptions=False) as http:
        world = Sweep(emulator, settings, gateway, patient, session_factory, http)
        yield world
    # A held request must not run against the next test's fresh emulator.
    try:
        world.settle_held()
    finally:
        emulator.clear_faults()
