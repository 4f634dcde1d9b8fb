"""Connected accounts' payouts to their bank, from ``payout.*`` events (issue 21).

Out-of-order and repeated delivery never moves a payout back (a state machine delivers random
interleavings of every event of a few payouts and checks the rows after each step), failure
codes read as plain words, each freelancer's failures are grouped with whether a later payout
went through, and the real path works end to end: the emulator fails a connected account's
payout, signs ``payout.failed`` to the companion, and the row appears.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import select

from lib.accounts import upsert_account
from lib.bank_payouts import (
    FAILURE_REASONS,
    apply_payout_event,
    failed_payouts,
    failure_reason,
    failures_by_freelancer,
    iter_failure_rows,
)
from lib.connect_flow import detach
from lib.db import make_engine, make_session_factory
from lib.errors import PermissionDeniedError
from lib.freelancers import create_freelancer
from lib.migrate import upgrade
from lib.models import BankPayout, Freelancer, WebhookEvent
from lib.roles import Operator
from lib.stripe_gateway import StripeGateway
from scripts.processes import wait_until
from tests.factories import make_settings
from tests.factories_dashboard import add_freelancer, add_payout
from tests.support.servers import free_port, running_companion

FINANCE = Operator.from_role_names("fiona", ["finance"])
MANAGER = Operator.from_role_names("mia", ["manager"])
T0 = 1_790_000_000


def payout_event(payout_id: str, status: str, *, account: str | None = "acct_bank1",
                 created: int = T0, failure_code: str | None = None, amount: int = 12_500,
                 currency: str = "usd", event_id: str | None = None) -> dict[str, Any]:
    kind = {"pending": "payout.created", "in_transit": "payout.updated",
            "paid": "payout.paid", "failed": "payout.failed",
            "canceled": "payout.canceled"}[status]
    body: dict[str, Any] = {
        "id": event_id or f"evt_{payout_id}_{status}_{created}", "object": "event",
        "type": kind, "created": created, "livemode": False,
        "data": {"object": {
            "id": payout_id, "object": "payout", "amount": amount, "currency": currency,
            "status": status, "arrival_date": T0 + 86_400, "created": T0 - 60,
            "failure_code": failure_code,
            "failure_message": "The bank account has been closed." if failure_code else None,
            "livemode": False, "automatic": True, "method": "standard"}},
    }
    if account:
        body["account"] = account
    return body


def rows(session_factory) -> dict[str, BankPayout]:
    with session_factory() as session:
        return {r.stripe_payout_id: r for r in session.scalars(select(BankPayout))}


#: Payout events call no Stripe API; the handler's gateway points nowhere.
NO_STRIPE = StripeGateway(make_settings(stripe_api_base="http://127.0.0.1:9",
                                        stripe_connect_base="http://127.0.0.1:9"))


def apply(session_factory, event: dict[str, Any]) -> str | None:
    return apply_payout_event(session_factory, NO_STRIPE, event)


def note_of(session_factory, event: dict[str, Any]) -> str:
    """:func:`apply` of an event the handler must answer with a note (why it did nothing)."""
    note = apply(session_factory, event)
    assert note is not None
    return note


@pytest.fixture
def payee(session_factory) -> int:
    with session_factory.begin() as session:
        freelancer = create_freelancer(session, name="Barbara Liskov", email="bl@example.com")
        freelancer.stripe_account_id = "acct_bank1"
        session.flush()
        return freelancer.id


def test_a_failed_payout_is_kept_with_its_reason_in_plain_words(session_factory, payee) -> None:
    assert apply(session_factory, payout_event("po_1", "pending")) is None
    assert apply(session_factory, payout_event("po_1", "failed", created=T0 + 60,
                                               failure_code="account_closed")) is None
    row = rows(session_factory)["po_1"]
    assert (row.status, row.failure_code, row.freelancer_id) == ("failed", "account_closed", payee)
    assert (row.amount_minor, row.currency) == (12_500, "usd")
    assert row.settled_at == datetime.fromtimestamp(T0 + 60, tz=UTC)
    with session_factory() as session:
        page = failed_payouts(session, operator=FINANCE)
    [failed] = page.rows
    assert failed.reason == "The bank account has been closed."
    assert failed.remedy == "Add a new bank account in payment settings."
    assert failed.amount == "$125.00 USD"
    assert failed.freelancer_name == "Barbara Liskov"


def test_late_or_repeated_events_never_move_a_payout_back(session_factory, payee) -> None:
    failed = payout_event("po_2", "failed", created=T0 + 60, failure_code="no_account")
    assert apply(session_factory, failed) is None
    # The paid and created events of the same payout arrive after the failure.
    assert note_of(session_factory, payout_event("po_2", "paid", created=T0 + 30)).startswith(
        "ignored")
    assert note_of(session_factory, payout_event("po_2", "pending", created=T0)).startswith(
        "ignored")
    assert note_of(session_factory, failed).startswith("ignored")
    assert rows(session_factory)["po_2"].status == "failed"
    # Stripe: a payout shown paid may later fail. That moves forward.
    apply(session_factory, payout_event("po_3", "paid", created=T0 + 10))
    apply(session_factory, payout_event("po_3", "failed", created=T0 + 99_000,
                                        failure_code="account_frozen"))
    assert rows(session_factory)["po_3"].failure_code == "account_frozen"


def test_platform_payouts_and_non_payouts_are_ignored(session_factory) -> None:
    assert note_of(session_factory, payout_event("po_p", "paid", account=None)).startswith(
        "ignored: a payout of the platform's own balance")
    broken = payout_event("po_x", "paid")
    broken["data"]["object"]["object"] = "transfer"
    assert note_of(session_factory, broken).startswith("ignored")
    assert rows(session_factory) == {}


def test_an_unknown_code_still_reads_as_a_refusal() -> None:
    assert failure_reason("something_new") == (
        "The bank refused the payout (Stripe gave no known code).")
    assert all(words.endswith(".") and remedy for words, remedy in FAILURE_REASONS.values())


def test_the_owner_is_found_after_a_disconnect(session_factory) -> None:
    with session_factory.begin() as session:
        freelancer = add_freelancer(session, state="active")
        add_payout(session, freelancer=freelancer)
        account_id, freelancer_id = freelancer.stripe_account_id, freelancer.id
        detach(session, freelancer=freelancer)
    apply(session_factory, payout_event("po_4", "failed", account=account_id,
                                        failure_code="declined"))
    assert rows(session_factory)["po_4"].freelancer_id == freelancer_id


def test_failures_are_grouped_per_freelancer_with_whether_a_later_one_went_through(
    session_factory, payee,
) -> None:
    apply(session_factory, payout_event("po_a", "failed", created=T0,
                                        failure_code="invalid_account_number"))
    apply(session_factory, payout_event("po_b", "failed", created=T0 + 100, currency="eur",
                                        amount=900, failure_code="account_closed"))
    with session_factory() as session:
        [one] = failures_by_freelancer(session, operator=FINANCE)
    assert (one.freelancer_id, one.failures, one.last_failure_code, one.paid_since) == (
        payee, 2, "account_closed", False)
    assert one.failed_amounts == "€9.00 EUR, $125.00 USD"
    apply(session_factory, payout_event("po_c", "paid", created=T0 + 500))
    with session_factory() as session:
        [one] = failures_by_freelancer(session, operator=FINANCE)
        exported = list(iter_failure_rows(session, operator=FINANCE))
    assert one.paid_since is True
    assert [r["failure_code"] for r in exported] == ["account_closed", "invalid_account_number"]


def test_reading_needs_the_role(session_factory) -> None:
    with session_factory() as session, pytest.raises(PermissionDeniedError):
        failed_payouts(session, operator=MANAGER)


# ---- random interleavings ---------------------------------------------------------------------

STATUS_ORDER = ("pending", "in_transit", "paid", "failed")


class PayoutEventsMachine(RuleBasedStateMachine):
    """Each payout's events (created, in transit, paid, maybe failed) in any order, repeated.

    Expected after every step: each payout's row has the furthest status delivered so far
    (failed > paid > in_transit > pending), and a failed row keeps its failure code.
    """

    def __init__(self) -> None:
        super().__init__()
        self.engine = make_engine(f"sqlite:///{_DB_DIR}/machine-{id(self)}.db")
        upgrade(self.engine)
        self.factory = make_session_factory(self.engine)
        self.delivered: dict[str, set[str]] = {}

    @rule(payout=st.sampled_from(["po_m1", "po_m2", "po_m3"]),
          status=st.sampled_from(STATUS_ORDER))
    def deliver(self, payout: str, status: str) -> None:
        created = T0 + 10 * STATUS_ORDER.index(status)
        apply(self.factory, payout_event(payout, status, created=created,
                                         failure_code="account_closed" if status == "failed"
                                         else None))
        self.delivered.setdefault(payout, set()).add(status)

    @precondition(lambda self: bool(self.delivered))
    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        payout = data.draw(st.sampled_from(sorted(self.delivered)))
        status = data.draw(st.sampled_from(sorted(self.delivered[payout])))
        self.deliver(payout=payout, status=status)

    @invariant()
    def furthest_status_wins(self) -> None:
        stored = rows(self.factory)
        assert set(stored) == set(self.delivered)
        for payout, statuses in self.delivered.items():
            expected = max(statuses, key=STATUS_ORDER.index)
            assert stored[payout].status == expected
            if expected == "failed":
                assert stored[payout].failure_code == "account_closed"

    def teardown(self) -> None:
        self.engine.dispose()


_DB_DIR = "."


def test_random_interleavings_of_payout_events(tmp_path) -> None:
    global _DB_DIR
    _DB_DIR = str(tmp_path)
    PayoutEventsMachine.TestCase.settings = hypothesis_settings(
        max_examples=25, stateful_step_count=12, deadline=None)
    PayoutEventsMachine.TestCase().runTest()


# ---- end to end -------------------------------------------------------------------------------


def test_the_emulator_fails_a_bank_payout_and_the_companion_records_it(
    emulator, session_factory,
) -> None:
    port = free_port()
    settings = make_settings(stripe_api_base=emulator.base_url,
                             stripe_connect_base=emulator.base_url,
                             backend_url=f"http://127.0.0.1:{port}",
                             stripe_max_network_retries=0, stripe_timeout_seconds=5)
    gateway = StripeGateway(settings)
    with running_companion(emulator, settings, port, session_factory):
        account = gateway.create_express_account(email="k@example.com", country="US",
                                                 metadata={}, idempotency_key="acct-bank-e2e")
        emulator.set_account(account.id, onboarding="complete")
        with session_factory.begin() as session:
            freelancer = create_freelancer(session, name="Ken Thompson", email="k@example.com")
            freelancer.stripe_account_id = account.id
            upsert_account(session, account=gateway.retrieve_account(account.id).data)
            freelancer_id = freelancer.id
        emulator.set_balance(5_000, "usd", account=account.id)
        emulator._post("/_emulator/payouts/fail_next", {"failure_code": "no_account"})
        # The connected account's own payout to its bank (Stripe-Account header).
        client = gateway._client
        client.v1.payouts.create({"amount": 4_000, "currency": "usd"},
                                 {"stripe_account": account.id})
        assert emulator.flush_webhooks()

        def recorded() -> bool:
            with session_factory() as session:
                row = session.scalars(select(BankPayout)).one_or_none()
                return row is not None and row.status == "failed"

        wait_until(recorded, timeout=15, what="the bank payout recorded failed")
    with session_factory() as session:
        row = session.scalars(select(BankPayout)).one()
        assert (row.freelancer_id, row.failure_code, row.amount_minor) == (
            freelancer_id, "no_account", 4_000)
        assert session.get_one(Freelancer, freelancer_id).stripe_account_id == account.id
        types = set(session.scalars(select(WebhookEvent.type)))
    assert {"payout.created", "payout.failed"} <= types
    assert rows(session_factory)[row.stripe_payout_id].settled_at is not None
    assert row.settled_at is not None and row.stripe_created is not None
    assert row.settled_at - row.stripe_created < timedelta(hours=1)
