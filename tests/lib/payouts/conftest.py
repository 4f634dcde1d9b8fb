"""The emulator for payout tests: one server per module, reset for every test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy.orm import Session, sessionmaker

from emulator.testing import EmulatorHandle, running_emulator
from lib.accounts import upsert_account
from lib.freelancers import create_freelancer
from lib.models import Freelancer
from lib.settings import Settings
from lib.stripe_gateway import StripeGateway
from tests.factories import make_settings


@pytest.fixture(scope="module")
def _emulator() -> Iterator[EmulatorHandle]:
    with running_emulator() as emu:
        yield emu


@pytest.fixture
def emu(_emulator: EmulatorHandle) -> EmulatorHandle:
    _emulator.reset()
    return _emulator


@dataclass
class StripeWorld:
    """An emulator, settings and a gateway pointed at it, and a way to add payable freelancers."""

    emu: EmulatorHandle
    settings: Settings
    gateway: StripeGateway
    session_factory: sessionmaker[Session]

    def gateway_with(self, **overrides: object) -> StripeGateway:
        return StripeGateway(make_settings(stripe_api_base=self.emu.base_url,
                                           stripe_connect_base=self.emu.base_url, **overrides))

    def freelancer(self, *, email: str | None = None, name: str = "Paula Payee") -> Freelancer:
        """A freelancer with an onboarded Express account at the emulator, mirrored locally."""
        account = self.gateway.create_express_account(
            email=email or "payee@example.com", country="US", metadata={},
            idempotency_key=f"test-acct-{email or id(self)}-{self.emu.state()['counts']['accounts']}",
        )
        self.emu.set_account(account.id, onboarding="complete")
        fetched = self.gateway.retrieve_account(account.id).data
        with self.session_factory.begin() as session:
            freelancer = create_freelancer(
                session, name=name,
                email=email or f"p{self.emu.state()['counts']['accounts']}@example.com",
            )
            upsert_account(session, account=fetched)
            freelancer.stripe_account_id = account.id
        return freelancer

    def transfers(self) -> list[dict]:
        return list(self.gateway.iter_transfers())

    def available(self, currency: str = "usd") -> int:
        cell = self.emu.state()["balances"].get("platform", {}).get(currency) or {}
        return int(cell.get("available", 0))


@pytest.fixture
def world(emu: EmulatorHandle, session_factory: sessionmaker[Session]) -> StripeWorld:
    settings = make_settings(stripe_api_base=emu.base_url, stripe_connect_base=emu.base_url,
                             stripe_max_network_retries=0, stripe_timeout_seconds=2,
                             payout_approval_threshold_minor=100_000)
    return StripeWorld(emu=emu, settings=settings, gateway=StripeGateway(settings),
                       session_factory=session_factory)
