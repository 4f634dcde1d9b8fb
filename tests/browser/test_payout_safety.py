"""Issue 17 in real Chromium: the repeat-payment question, currency limits, a reversal, and two
people deciding a payout no retry may settle (screenshots at 1440x900)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from emulator.testing import EmulatorHandle
from lib.accounts import upsert_account
from lib.db import utcnow
from lib.freelancers import create_freelancer
from lib.models import Payout, PayoutReversal
from lib.payouts.ledger import request_payout
from lib.roles import Operator, Role
from lib.settings import Settings
from lib.stripe_gateway import StripeGateway
from tests.browser.test_dashboard import (
    Screenshot,
    dashboard,  # noqa: F401 (fixture)
    log_in,
    log_out,
    open_page,
    settle,
    shoot,
)

pytestmark = pytest.mark.browser


def _payee(session_factory: sessionmaker[Session], settings: Settings, emulator: EmulatorHandle) -> int:
    gateway = StripeGateway(settings)
    account = gateway.create_express_account(email="ada@example.com", country="US", metadata={},
                                             idempotency_key="browser-safety-acct")
    emulator.set_account(account.id, onboarding="complete")
    emulator.set_balance(10_000_000, "usd")
    with session_factory.begin() as session:
        freelancer = create_freelancer(session, name="Ada Lovelace", email="ada@example.com",
                                       country="US")
        upsert_account(session, account=gateway.retrieve_account(account.id).data)
        freelancer.stripe_account_id = account.id
        session.flush()
        return freelancer.id


def _pay(page: Page, amount: str, description: str) -> None:
    page.get_by_role("textbox", name="Amount").fill(amount)
    page.get_by_role("textbox", name="Description").fill(description)
    page.get_by_role("button", name="Check payout").click()
    settle(page)


def test_repeat_payment_reversal_and_a_two_person_decision(
    page: Page, dashboard: str, emulator_server: EmulatorHandle,  # noqa: F811
    session_factory: sessionmaker[Session], service_settings: Settings, screenshot: Screenshot,
) -> None:
    page.set_viewport_size({"width": 1440, "height": 900})
    freelancer_id = _payee(session_factory, service_settings, emulator_server)

    log_in(page, dashboard, "admin")
    open_page(page, "Payouts")
    _pay(page, "25.00", "Invoice 9")
    expect(page.get_by_text("Limits in USD")).to_be_visible()
    page.get_by_role("button", name="Confirm and send payout").click()
    expect(page.get_by_text("paid to Ada Lovelace")).to_be_visible(timeout=20_000)
    settle(page)
    page.get_by_role("button", name="Request another payout").click()
    settle(page)

    # The same payment again: the page names the first one and asks before paying.
    _pay(page, "25.00", "invoice 9")
    expect(page.get_by_text("already pays Ada Lovelace")).to_be_visible()
    confirm = page.get_by_role("button", name="Confirm and send payout")
    expect(confirm).to_be_disabled()
    shoot(page, screenshot, "01-repeat-payment-question")
    page.get_by_text("Yes: pay again").click()
    settle(page)
    expect(confirm).to_be_enabled()
    confirm.click()
    expect(page.get_by_text("paid to Ada Lovelace")).to_be_visible(timeout=20_000)
    assert emulator_server.state()["counts"]["transfers"] == 2

    # Reverse part of the first payout on the Reversals page.
    with session_factory() as session:
        first = session.scalars(select(Payout).order_by(Payout.id)).first()
        assert first is not None
    open_page(page, "Reversals")
    page.get_by_role("spinbutton", name="Payout number").fill(str(first.id))
    page.keyboard.press("Enter")
    settle(page)
    expect(page.get_by_text("$15.00 USD can still be reversed").or_(
        page.get_by_text("$25.00 USD can still be reversed"))).to_be_visible()
    page.get_by_role("textbox", name="Amount in USD").fill("10.00")
    page.get_by_role("textbox", name="Reason (required)").fill("Invoice 9 was paid twice")
    page.get_by_role("button", name="Reverse").click()
    expect(page.get_by_text("made at Stripe")).to_be_visible(timeout=20_000)
    settle(page)
    shoot(page, screenshot, "02-reversal-made")
    with session_factory() as session:
        (reversal,) = session.scalars(select(PayoutReversal)).all()
        assert (reversal.status, reversal.amount_minor) == ("succeeded", 1000)

    # A payout sent two days ago with no known outcome: finance proposes, admin confirms.
    with session_factory.begin() as session:
        lost = request_payout(session, operator=Operator("admin", frozenset({Role.ADMIN})),
                              freelancer_id=freelancer_id, amount="7.00", currency="usd",
                              description="Lost answer", client_request_token=None,
                              settings=service_settings)
        lost.status, lost.error_code = "unknown", "stripe_connection_error"
        lost.submitted_at = lost.created_at = utcnow() - timedelta(days=2)
        lost_id = lost.id
    log_out(page)
    log_in(page, dashboard, "finance")
    open_page(page, "Reconciliation")
    expect(page.get_by_text("Needs a person's decision")).to_be_visible()
    page.get_by_text("It was never made").click()
    page.get_by_role("textbox", name="How you know (required)").fill(
        "Not in Stripe's dashboard for that day")
    page.get_by_role("button", name="Propose this decision").click()
    expect(page.get_by_text("a second person confirms")).to_be_visible(timeout=20_000)
    settle(page)
    expect(page.get_by_role("button", name="Confirm")).to_be_disabled()
    shoot(page, screenshot, "03-decision-proposed", rendered=False)
    log_out(page)
    log_in(page, dashboard, "admin")
    open_page(page, "Reconciliation")
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("confirmed; the ledger now says so")).to_be_visible(timeout=20_000)
    shoot(page, screenshot, "04-decision-confirmed", rendered=False)
    with session_factory() as session:
        row = session.get(Payout, lost_id)
        assert row is not None and (row.status, row.error_code) == ("failed", "decided_not_paid")
    assert page.get_by_test_id("stException").count() == 0
