"""Transfer webhooks heal the ledger: a payout whose answer was lost becomes paid when
Stripe's transfer.created arrives, with no reconciliation run."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from lib.accounts import upsert_account
from lib.freelancers import create_freelancer
from lib.models import Freelancer, Payout, WebhookEvent
from lib.payouts.execution import execute_payout
from lib.payouts.ledger import request_payout
from lib.roles import Operator
from lib.stripe_gateway import StripeGateway
from scripts.processes import wait_until
from tests.factories import make_settings
from tests.support.servers import free_port, running_companion

ADMIN = Operator.from_role_names("alice", ["admin"])


@pytest.fixture
def world(emulator, session_factory):
    port = free_port()
    settings = make_settings(stripe_api_base=emulator.base_url,
                             stripe_connect_base=emulator.base_url,
                             backend_url=f"http://127.0.0.1:{port}",
                             stripe_max_network_retries=0, stripe_timeout_seconds=5)
    gateway = StripeGateway(settings)
    with running_companion(emulator, settings, port, session_factory):
        account = gateway.create_express_account(email="p@example.com", country="US",
                                                 metadata={}, idempotency_key="acct-p")
        emulator.set_account(account.id, onboarding="complete")
        with session_factory.begin() as session:
            freelancer = create_freelancer(session, name="Paula", email="p@example.com")
            freelancer.stripe_account_id = account.id
            upsert_account(session, account=gateway.retrieve_account(account.id).data)
            freelancer_id = freelancer.id
        yield settings, gateway, freelancer_id


def _status(session_factory, payout_id: int) -> str:
    with session_factory() as session:
        return session.get(Payout, payout_id).status


def test_lost_answer_is_settled_by_transfer_created(world, emulator, session_factory) -> None:
    settings, gateway, freelancer_id = world
    with session_factory.begin() as session:
        payout = request_payout(session, operator=ADMIN, freelancer_id=freelancer_id,
                                amount="12.34", currency="usd", description="Invoice 7",
                                client_request_token="tok-1", settings=settings)
        payout_id = payout.id
    emulator.inject_fault("commit_then_drop", "/v1/transfers", method="POST", count=1)
    # Hold the events until the flush: delivered at once, transfer.created could settle the
    # payout before the lost answer is recorded, and the "unknown" below would be a race.
    emulator.inject_fault("out_of_order", count=100)
    execute_payout(session_factory, gateway=gateway, payout_id=payout_id, operator=ADMIN)
    assert _status(session_factory, payout_id) == "unknown"
    assert emulator.flush_webhooks()
    wait_until(lambda: _status(session_factory, payout_id) == "paid", timeout=10,
               what="the payout paid by its transfer event")

    def transfer_event_status() -> str:
        with session_factory() as session:
            return session.scalars(select(WebhookEvent.status).where(
                WebhookEvent.type == "transfer.created")).one()

    # The payout is settled in its own transaction (record_paid) and the event marked processed in
    # the worker's next one (a crash between the two retries the event, which changes nothing
    # the second time): on a busy machine the test can look in between.
    wait_until(lambda: transfer_event_status() == "processed", timeout=10,
               what="the transfer event marked processed")
    with session_factory() as session:
        row = session.get(Payout, payout_id)
        assert row.stripe_transfer_id and row.stripe_transfer_id.startswith("tr_")
    assert emulator.state()["counts"]["transfers"] == 1


def test_transfer_without_ledger_row_is_recorded_not_invented(world, emulator,
                                                            session_factory) -> None:
    _settings, gateway, freelancer_id = world
    with session_factory() as session:
        account_id = session.get(Freelancer, freelancer_id).stripe_account_id
    gateway.create_transfer(amount_minor=500, currency="usd", destination=account_id,
                            idempotency_key="outside-the-ledger")
    assert emulator.flush_webhooks()

    def recorded() -> bool:
        with session_factory() as session:
            return session.scalars(select(WebhookEvent.status).where(
                WebhookEvent.type == "transfer.created")).first() == "ignored"

    wait_until(recorded, timeout=10, what="the outside transfer's event ignored")
    with session_factory() as session:
        assert session.scalars(select(Payout)).all() == []
