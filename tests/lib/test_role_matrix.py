"""Every action in lib/ x every role: allowed exactly where intended, every refusal audited once.

The expected matrix is written out below on purpose, not derived from ``lib.roles.PERMISSIONS``:
a mistaken change there must fail here. Every cell calls the real lib function (with the emulator
where it calls Stripe) with data it can act on, so an allowed call has to succeed outright. A
refused call must raise ``PermissionDeniedError`` with a clear message, add exactly one audit
entry, and write nothing else: neither to the database nor at Stripe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import streamlit as st
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from streamlit.testing.v1 import AppTest

from emulator.testing import EmulatorHandle
from lib import (
    account_queries,
    alerts,
    audit_queries,
    bank_payouts,
    connection_metrics,
    connection_timing,
    finance_reports,
    freelancer_links,
    funding,
    outbox,
    outreach,
    requirements_queries,
    timeline,
)
from lib.accounts import upsert_account
from lib.audit import REFUSED
from lib.connect_flow import create_oauth_link, create_onboarding_link, disconnect
from lib.db import make_engine, make_session_factory, utcnow
from lib.destinations import confirm_destination, unconfirmed_destinations
from lib.errors import PermissionDeniedError
from lib.freelancers import create_freelancer
from lib.insights import overview_kpis
from lib.link_queries import recent_links
from lib.models import (
    AuditLog,
    Base,
    Freelancer,
    MessageChannel,
    MessageKind,
    MessageStatus,
    OutboxMessage,
    Payout,
    PayoutReversal,
    WebhookEvent,
)
from lib.operator_accounts import DEMO_AUTH_PATH
from lib.payouts import queries as payout_queries
from lib.payouts.approval import approve_payout, reject_payout
from lib.payouts.bulk import confirm_bulk, preview_bulk
from lib.payouts.decisions import (
    awaiting_decision,
    awaiting_page,
    confirm_decision,
    propose_decision,
    withdraw_decision,
)
from lib.payouts.execution import execute_payout, retry_unsettled
from lib.payouts.ledger import request_payout
from lib.payouts.reconciliation import reconcile
from lib.payouts.reversal import (
    approve_reversal,
    execute_reversal,
    reject_reversal,
    request_reversal,
    retry_reversal,
    retry_unsettled_reversals,
    reverse_payout,
)
from lib.roles import Action, Operator, Role
from lib.settings import PROJECT_ROOT, Settings
from lib.stripe_gateway import StripeGateway
from lib.sync import refresh_account, sync_all_accounts
from lib.tokens import issue_token
from lib.webhook_queries import failed_events, last_events_per_type
from lib.webhooks import replay_event
from server.app import create_app
from tests.factories import TEST_CLIENT_ID, TEST_JWT_SECRET, TEST_SECRET_KEY, make_settings

ROLES = ("admin", "finance", "manager", "none", "anonymous", "freelancer")

#: Y = allowed, - = refused. One row per action function in lib/.
MATRIX = """
case                     admin finance manager none anonymous freelancer
oauth_link                 Y      -       -      -      -         Y
onboarding_link            Y      -       -      -      -         Y
disconnect                 Y      -       -      -      -         Y
confirm_destination        Y      -       -      -      -         Y
unconfirmed_destinations   Y      Y       -      -      -         -
recent_links               Y      -       -      -      -         -
refresh_account            Y      -       -      -      -         -
sync_accounts              Y      -       -      -      -         -
request_payout             Y      -       -      -      -         -
execute_payout             Y      Y       -      -      -         -
retry_unsettled            Y      Y       -      -      -         -
preview_bulk               Y      -       -      -      -         -
confirm_bulk               Y      -       -      -      -         -
approve_payout             Y      Y       -      -      -         -
reject_payout              Y      Y       -      -      -         -
reverse_payout             Y      -       -      -      -         -
retry_reversal             Y      -       -      -      -         -
request_reversal           Y      -       -      -      -         -
execute_reversal           Y      -       -      -      -         -
retry_unsettled_reversals  Y      -       -      -      -         -
approve_reversal           Y      Y       -      -      -         -
reject_reversal            Y      Y       -      -      -         -
reconcile                  Y      Y       -      -      -         -
awaiting_decision          Y      Y       -      -      -         -
awaiting_page              Y      Y       -      -      -         -
propose_decision           Y      Y       -      -      -         -
confirm_decision           Y      Y       -      -      -         -
withdraw_decision          Y      Y       -      -      -         -
replay_webhook             Y      -       -      -      -         -
export_accounts            Y      Y       -      -      -         -
export_requirements        Y      Y       -      -      -         -
export_payouts             Y      Y       -      -      -         -
export_audit               Y      Y       -      -      -         -
list_audit                 Y      Y       -      -      -         -
audit_filter_values        Y      Y       -      -      -         -
overview_kpis              Y      -       Y      -      -         -
metrics_success_rate       Y      -       Y      -      -         -
metrics_funnel             Y      -       Y      -      -         -
metrics_failure_reasons    Y      -       Y      -      -         -
metrics_time_to_connect    Y      -       Y      -      -         -
list_accounts              Y      Y       -      -      -         -
account_detail             Y      Y       -      -      -         -
country_options            Y      Y       -      -      -         -
list_requirements          Y      Y       -      -      -         -
requirement_counts         Y      Y       -      -      -         -
list_payouts               Y      Y       -      -      -         -
retry_choices              Y      Y       -      -      -         -
payout_totals              Y      Y       -      -      -         -
webhook_event_types        Y      -       -      -      -         -
failed_webhooks            Y      -       -      -      -         -
funding_position           Y      Y       -      -      -         -
funds_needed               Y      -       Y      -      -         -
note_bulk_preview          Y      -       -      -      -         -
failed_bank_payouts        Y      Y       -      -      -         -
bank_failures_per_person   Y      Y       -      -      -         -
export_bank_failures       Y      Y       -      -      -         -
settings_link              Y      Y       -      -      -         -
freelancer_timeline        Y      Y       -      -      -         -
export_timeline            Y      Y       -      -      -         -
metrics_median_to_connect  Y      -       Y      -      -         -
report_payouts_by_month    Y      Y       -      -      -         -
report_connect_durations   Y      Y       -      -      -         -
report_requirement_ageing  Y      Y       -      -      -         -
report_bank_failure_rates  Y      Y       -      -      -         -
preview_outreach           Y      Y       -      -      -         -
send_outreach              Y      Y       -      -      -         -
outreach_summaries         Y      Y       -      -      -         -
outreach_history           Y      Y       -      -      -         -
list_alert_rules           Y      -       -      -      -         -
save_alert_rule            Y      -       -      -      -         -
recent_alerts              Y      -       Y      -      -         -
list_outbox                Y      -       -      -      -         -
retry_message              Y      -       -      -      -         -
"""


def _parse(table: str) -> dict[str, dict[str, bool]]:
    header, *rows = [line.split() for line in table.strip().splitlines()]
    assert header[1:] == list(ROLES)
    parsed = {}
    for row in rows:
        assert len(row) == len(header) and set(row[1:]) <= {"Y", "-"}, row
        parsed[row[0]] = {role: mark == "Y" for role, mark in zip(ROLES, row[1:], strict=True)}
    return parsed


EXPECTED = _parse(MATRIX)

SIGNED_IN: dict[str, Operator] = {
    "admin": Operator("alice", frozenset({Role.ADMIN})),
    "finance": Operator("fiona", frozenset({Role.FINANCE})),
    "manager": Operator("mia", frozenset({Role.MANAGER})),
    "none": Operator("nora", frozenset()),  # signed in, no role
}
OPERATORS: dict[str, Operator | None] = {**SIGNED_IN, "anonymous": None}
#: Requests the payouts others approve (an approver must not be the requester).
REQUESTER = Operator("arthur", frozenset({Role.ADMIN}))


@dataclass
class World:
    emu: EmulatorHandle
    settings: Settings
    gateway: StripeGateway
    session_factory: sessionmaker[Session]
    #: The freelancer whose connection the case acts on (the freelancer operator is them).
    subject: int | None = None
    _made: int = field(default=0)

    def freelancer(self, *, connected: bool) -> Freelancer:
        """A freelancer; ``connected``: with an onboarded Express account, mirrored."""
        self._made += 1
        email = f"matrix{self._made}@example.com"
        account = None
        if connected:
            account = self.gateway.create_express_account(
                email=email, country="US", metadata={}, idempotency_key=f"matrix-{self._made}")
            self.emu.set_account(account.id, onboarding="complete")
        with self.session_factory.begin() as session:
            freelancer = create_freelancer(session, name=f"Mia Trix {self._made}", email=email,
                                           country="US")
            if account is not None:
                upsert_account(session, account=self.gateway.retrieve_account(account.id).data)
                freelancer.stripe_account_id = account.id
        self.subject = freelancer.id
        return freelancer

    def payout(self, *, amount: str = "25.00", token: str = "matrix") -> int:
        """A payout request by REQUESTER (``pending``, or awaiting approval when large)."""
        freelancer = self.freelancer(connected=True)
        with self.session_factory.begin() as session:
            return request_payout(
                session, operator=REQUESTER, freelancer_id=freelancer.id, amount=amount,
                currency="usd", description="Invoice 1", client_request_token=token,
                settings=self.settings,
            ).id

    def paid_payout(self) -> Payout:
        self.emu.set_balance(100_000, "usd")
        return execute_payout(self.session_factory, gateway=self.gateway,
                              payout_id=self.payout(), operator=REQUESTER)

    def csv(self) -> bytes:
        self.emu.set_balance(100_000, "usd")
        email = self.freelancer_email(self.freelancer(connected=True).id)
        return (f"freelancer_email,freelancer_id,amount,currency,description\n"
                f"{email},,12.50,usd,Bulk line\n").encode()

    def freelancer_email(self, freelancer_id: int) -> str:
        with self.session_factory() as session:
            return session.get_one(Freelancer, freelancer_id).email

    def reads(self, call: Callable[[Session, Operator], object]) -> Runner:
        """A read that takes a session: run it in a plain session (iterators consumed)."""
        def run(operator: Operator) -> object:
            with self.session_factory() as session:
                result = call(session, operator)
                return list(result) if isinstance(result, Iterable) else result
        return run

    def writes(self, call: Callable[[Session, Operator], object]) -> Runner:
        """An action that takes the caller's session: inside one transaction, like the pages."""
        def run(operator: Operator) -> object:
            with self.session_factory.begin() as session:
                return call(session, operator)
        return run


#: A case's call, made as one operator. The anonymous column hands it None, against the
#: signature on purpose: that is how an unauthenticated caller arrives, and authorize()
#: must refuse it at run time (test_role_matrix casts it, once).
Runner = Callable[[Operator], object]


@dataclass(frozen=True)
class Case:
    #: The action whose refusal the message names.
    action: Action
    #: Builds what the call acts on (outside the measured window) and returns the call.
    prepare: Callable[[World], Runner]
    #: The audit entry a refusal writes, when not ``authorize.<action>``.
    audit_action: str | None = None


def _oauth_link(w: World) -> Runner:
    fid = w.freelancer(connected=False).id
    return w.writes(lambda s, op: create_oauth_link(
        s, gateway=w.gateway, settings=w.settings, operator=op, freelancer_id=fid))


def _onboarding_link(w: World) -> Runner:
    fid = w.freelancer(connected=False).id
    return lambda op: create_onboarding_link(w.session_factory, gateway=w.gateway,
                                             settings=w.settings, operator=op, freelancer_id=fid)


def _disconnect(w: World) -> Runner:
    fid = w.freelancer(connected=True).id
    return lambda op: disconnect(w.session_factory, gateway=w.gateway, operator=op,
                                 freelancer_id=fid)


def _confirm_destination(w: World) -> Runner:
    freelancer = w.freelancer(connected=True)
    fid, account_id = freelancer.id, freelancer.stripe_account_id
    assert account_id is not None
    with w.session_factory.begin() as session:  # as a connect flow leaves it: held
        session.get_one(Freelancer, fid).unconfirmed_account_id = account_id

    def run(op: Operator) -> object:
        with w.session_factory.begin() as session:
            assert confirm_destination(session, operator=op, freelancer_id=fid,
                                       account_id=account_id, reason="Phoned Mia, ticket 12")
        return None
    return run


def _refresh(w: World) -> Runner:
    account_id = w.freelancer(connected=True).stripe_account_id
    assert account_id is not None
    return lambda op: refresh_account(w.session_factory, gateway=w.gateway, operator=op,
                                      account_id=account_id)


def _request(w: World) -> Runner:
    fid = w.freelancer(connected=True).id
    return w.writes(lambda s, op: request_payout(
        s, operator=op, freelancer_id=fid, amount="10.00", currency="usd",
        description="Invoice 2", client_request_token="matrix-request", settings=w.settings))


def _execute(w: World) -> Runner:
    w.emu.set_balance(100_000, "usd")
    payout_id = w.payout()
    return lambda op: execute_payout(w.session_factory, gateway=w.gateway, payout_id=payout_id,
                                     operator=op)


def _retry_unsettled(w: World) -> Runner:
    return lambda op: retry_unsettled(w.session_factory, gateway=w.gateway, operator=op)


def _preview_bulk(w: World) -> Runner:
    data = w.csv()
    return w.reads(lambda s, op: preview_bulk(s, gateway=w.gateway, operator=op, csv_bytes=data,
                                              settings=w.settings))


def _confirm_bulk(w: World) -> Runner:
    data = w.csv()
    return lambda op: confirm_bulk(w.session_factory, gateway=w.gateway, operator=op,
                                   csv_bytes=data, settings=w.settings)


def _approve(w: World) -> Runner:
    payout_id = w.payout(amount="2000.00")  # above the approval threshold
    return w.writes(lambda s, op: approve_payout(s, operator=op, payout_id=payout_id,
                                                 audit_refusals_with=w.session_factory))


def _reject(w: World) -> Runner:
    payout_id = w.payout(amount="2000.00")
    return w.writes(lambda s, op: reject_payout(s, operator=op, payout_id=payout_id,
                                                reason="Duplicate invoice",
                                                audit_refusals_with=w.session_factory))


def _reverse(w: World) -> Runner:
    payout_id = w.paid_payout().id
    return lambda op: reverse_payout(w.session_factory, gateway=w.gateway, operator=op,
                                     payout_id=payout_id, amount="5.00", reason="Overpaid",
                                     settings=w.settings)


def _request_reversal(w: World) -> Runner:
    payout_id = w.paid_payout().id
    return lambda op: request_reversal(w.session_factory, operator=op, payout_id=payout_id,
                                       amount="5.00", reason="Overpaid", settings=w.settings)


def _pending_reversal(w: World, *, amount: str = "5.00", paid: str = "25.00") -> int:
    """A reversal REQUESTER asked for (awaiting approval when ``amount`` is large)."""
    w.emu.set_balance(1_000_000, "usd")
    payout_id = w.payout(amount=paid)
    with w.session_factory.begin() as session:
        if session.get_one(Payout, payout_id).status == "pending_approval":
            approve_payout(session, operator=SIGNED_IN["finance"], payout_id=payout_id)
    execute_payout(w.session_factory, gateway=w.gateway, payout_id=payout_id,
                   operator=REQUESTER)
    return request_reversal(w.session_factory, operator=REQUESTER, payout_id=payout_id,
                            amount=amount, reason="Overpaid", settings=w.settings).id


def _execute_reversal(w: World) -> Runner:
    reversal_id = _pending_reversal(w)
    return lambda op: execute_reversal(w.session_factory, gateway=w.gateway, operator=op,
                                       reversal_id=reversal_id)


def _retry_unsettled_reversals(w: World) -> Runner:
    return lambda op: retry_unsettled_reversals(w.session_factory, gateway=w.gateway,
                                                operator=op)


def _approve_reversal(w: World) -> Runner:
    reversal_id = _pending_reversal(w, amount="1500.00", paid="2000.00")
    return w.writes(lambda s, op: approve_reversal(s, operator=op, reversal_id=reversal_id))


def _reject_reversal(w: World) -> Runner:
    reversal_id = _pending_reversal(w, amount="1500.00", paid="2000.00")
    return w.writes(lambda s, op: reject_reversal(s, operator=op, reversal_id=reversal_id,
                                                  reason="Not agreed"))


def _past_the_key_window(w: World) -> int:
    """A payout sent two days ago whose outcome was never known: only people may settle it."""
    payout_id = w.payout()
    with w.session_factory.begin() as session:
        row = session.get_one(Payout, payout_id)
        row.status, row.error_code = "unknown", "stripe_connection_error"
        row.submitted_at = row.created_at = utcnow() - timedelta(days=2)
    return payout_id


def _propose(w: World) -> Runner:
    payout_id = _past_the_key_window(w)
    return lambda op: propose_decision(w.session_factory, gateway=w.gateway, operator=op,
                                       subject="payout", subject_id=payout_id,
                                       outcome="not_paid", stripe_object_id=None,
                                       reason="Not at Stripe")


def _proposed(w: World) -> int:
    return propose_decision(w.session_factory, gateway=w.gateway, operator=REQUESTER,
                            subject="payout", subject_id=_past_the_key_window(w),
                            outcome="not_paid", stripe_object_id=None,
                            reason="Not at Stripe").id


def _confirm(w: World) -> Runner:
    decision_id = _proposed(w)
    return lambda op: confirm_decision(w.session_factory, gateway=w.gateway, operator=op,
                                       decision_id=decision_id)


def _withdraw(w: World) -> Runner:
    decision_id = _proposed(w)
    return w.writes(lambda s, op: withdraw_decision(s, operator=op, decision_id=decision_id,
                                                    reason="Found it"))


def _retry_reversal(w: World) -> Runner:
    payout = w.paid_payout()
    with w.session_factory.begin() as session:
        # As a reversal whose answer from Stripe was lost: reserved, then "unknown".
        row = session.get_one(Payout, payout.id)
        row.amount_reversed_minor = 500
        reversal = PayoutReversal(payout_id=payout.id, amount_minor=500, reason="Overpaid",
                                  status="unknown", idempotency_key="matrix-reversal-1",
                                  requested_by=REQUESTER.username)
        session.add(reversal)
        session.flush()
        reversal_id = reversal.id
    return lambda op: retry_reversal(w.session_factory, gateway=w.gateway, operator=op,
                                     reversal_id=reversal_id)


def _reconcile(w: World) -> Runner:
    w.paid_payout()
    since = utcnow() - timedelta(days=1)
    return lambda op: reconcile(w.session_factory, gateway=w.gateway, operator=op, since=since)


def _replay(w: World) -> Runner:
    with w.session_factory.begin() as session:
        session.add(WebhookEvent(
            stripe_event_id="evt_matrix", type="account.updated", endpoint="connect",
            account="acct_unknown123", received_at=utcnow(), status="failed", attempts=1,
            error="x", payload={"id": "evt_matrix", "type": "account.updated",
                                "account": "acct_unknown123", "livemode": False,
                                "created": 1_780_000_000,
                                "data": {"object": {"id": "acct_unknown123",
                                                    "object": "account"}}},
        ))
    return lambda op: replay_event(w.session_factory, gateway=w.gateway, operator=op,
                                   event_id="evt_matrix")


def _with_account(call: Callable[[Session, Operator], object]) -> Callable[[World], Runner]:
    def prepare(w: World) -> Runner:
        w.freelancer(connected=True)
        return w.reads(call)
    return prepare


def _with_payout(call: Callable[[Session, Operator], object]) -> Callable[[World], Runner]:
    def prepare(w: World) -> Runner:
        w.payout()
        return w.reads(call)
    return prepare


def _account_detail(w: World) -> Runner:
    fid = w.freelancer(connected=True).id
    return w.reads(lambda s, op: account_queries.account_detail(s, operator=op, freelancer_id=fid))


def _plain(call: Callable[[Session, Operator], object]) -> Callable[[World], Runner]:
    return lambda w: w.reads(call)


def _due_freelancer(w: World) -> int:
    """A freelancer whose account Stripe asks something of (an outreach email's subject)."""
    freelancer = w.freelancer(connected=True)
    account_id = freelancer.stripe_account_id
    assert account_id is not None
    w.emu.set_account(account_id, requirements={"currently_due": ["individual.id_number"]})
    with w.session_factory.begin() as session:
        upsert_account(session, account=w.gateway.retrieve_account(account_id).data)
    return freelancer.id


def _preview_outreach(w: World) -> Runner:
    fid = _due_freelancer(w)
    return w.reads(lambda s, op: outreach.preview_outreach(s, operator=op, freelancer_ids=[fid]))


def _send_outreach(w: World) -> Runner:
    fid = _due_freelancer(w)
    return lambda op: outreach.send_outreach(w.session_factory, operator=op,
                                             token="matrix-batch", freelancer_ids=[fid])


def _outreach_history(w: World) -> Runner:
    fid = _due_freelancer(w)
    return w.reads(lambda s, op: outreach.contact_history(s, operator=op, freelancer_id=fid))


def _retry_message(w: World) -> Runner:
    with w.session_factory.begin() as session:
        message_id, _ = outbox.enqueue(
            session, dedupe_key="matrix:1", kind=MessageKind.ALERT, channel=MessageChannel.EMAIL,
            recipient="ops@example.com", subject="s", body_text="t", created_by="system:test")
        session.get_one(OutboxMessage, message_id).status = MessageStatus.DEAD.value
    return w.writes(lambda s, op: outbox.retry_message(s, operator=op, message_id=message_id))


PERIOD = connection_metrics.DateRange(date.today() - timedelta(days=30), date.today())


def _with_payout_factory(call: Callable[[World, Operator], object]
                         ) -> Callable[[World], Runner]:
    """A read that takes the session factory (it calls Stripe), with a payout committed."""
    def prepare(w: World) -> Runner:
        w.payout()
        return lambda op: call(w, op)
    return prepare


def _with_bank_failure(call: Callable[[Session, Operator], object]
                       ) -> Callable[[World], Runner]:
    def prepare(w: World) -> Runner:
        freelancer = w.freelancer(connected=True)
        with w.session_factory.begin() as session:
            bank_payouts.record_payout(session, payout={
                "id": "po_matrix", "object": "payout", "amount": 4_200, "currency": "usd",
                "status": "failed", "failure_code": "account_closed"},
                account_id=str(freelancer.stripe_account_id), event_created=utcnow())
        return w.reads(call)
    return prepare


def _about_a_freelancer(call: Callable[[Session, Operator, int], object]
                        ) -> Callable[[World], Runner]:
    def prepare(w: World) -> Runner:
        fid = w.freelancer(connected=True).id
        return w.reads(lambda s, op: call(s, op, fid))
    return prepare


def _settings_link(w: World) -> Runner:
    fid = w.freelancer(connected=True).id
    return w.writes(lambda s, op: freelancer_links.payment_settings_link(
        s, operator=op, settings=w.settings, freelancer_id=fid))

CASES: dict[str, Case] = {
    "oauth_link": Case(Action.GENERATE_LINK, _oauth_link),
    "onboarding_link": Case(Action.GENERATE_LINK, _onboarding_link),
    "disconnect": Case(Action.DISCONNECT, _disconnect),
    "confirm_destination": Case(Action.CONFIRM_DESTINATION, _confirm_destination),
    "unconfirmed_destinations": Case(Action.VIEW_ACCOUNTS, _with_account(
        lambda s, op: unconfirmed_destinations(s, operator=op))),
    "recent_links": Case(Action.GENERATE_LINK, _plain(
        lambda s, op: recent_links(s, operator=op))),
    "refresh_account": Case(Action.REFRESH_ACCOUNT, _refresh),
    "sync_accounts": Case(Action.SYNC_ACCOUNTS, lambda w: (
        lambda op: sync_all_accounts(w.session_factory, gateway=w.gateway, operator=op))),
    "request_payout": Case(Action.REQUEST_PAYOUT, _request),
    # Its refusal is written by execute_payout itself, with the payout it was for.
    "execute_payout": Case(Action.REQUEST_PAYOUT, _execute, audit_action="payout.execute"),
    "retry_unsettled": Case(Action.REQUEST_PAYOUT, _retry_unsettled),
    "preview_bulk": Case(Action.REQUEST_PAYOUT, _preview_bulk),
    "confirm_bulk": Case(Action.REQUEST_PAYOUT, _confirm_bulk),
    "approve_payout": Case(Action.APPROVE_PAYOUT, _approve),
    "reject_payout": Case(Action.REJECT_PAYOUT, _reject),
    "reverse_payout": Case(Action.REVERSE_PAYOUT, _reverse),
    "retry_reversal": Case(Action.REVERSE_PAYOUT, _retry_reversal),
    "request_reversal": Case(Action.REVERSE_PAYOUT, _request_reversal),
    "execute_reversal": Case(Action.REVERSE_PAYOUT, _execute_reversal),
    "retry_unsettled_reversals": Case(Action.REVERSE_PAYOUT, _retry_unsettled_reversals),
    "approve_reversal": Case(Action.APPROVE_PAYOUT, _approve_reversal),
    "reject_reversal": Case(Action.REJECT_PAYOUT, _reject_reversal),
    "reconcile": Case(Action.RECONCILE, _reconcile),
    "awaiting_decision": Case(Action.VIEW_PAYOUTS, _plain(
        lambda s, op: awaiting_decision(s, operator=op))),
    "awaiting_page": Case(Action.VIEW_PAYOUTS, _plain(
        lambda s, op: awaiting_page(s, operator=op, limit=50))),
    "propose_decision": Case(Action.DECIDE_SETTLEMENT, _propose),
    "confirm_decision": Case(Action.DECIDE_SETTLEMENT, _confirm),
    "withdraw_decision": Case(Action.DECIDE_SETTLEMENT, _withdraw),
    "replay_webhook": Case(Action.REPLAY_WEBHOOK, _replay),
    "export_accounts": Case(Action.EXPORT, _with_account(
        lambda s, op: account_queries.iter_export_rows(s, operator=op))),
    "export_requirements": Case(Action.EXPORT, _with_account(
        lambda s, op: requirements_queries.iter_export_rows(s, operator=op))),
    "export_payouts": Case(Action.EXPORT, _with_payout(
        lambda s, op: payout_queries.export_rows(s, operator=op))),
    # Reading the log comes first: a manager is refused that, once.
    "export_audit": Case(Action.VIEW_AUDIT_LOG, _with_payout(
        lambda s, op: audit_queries.export_audit(s, operator=op))),
    "list_audit": Case(Action.VIEW_AUDIT_LOG, _with_payout(
        lambda s, op: audit_queries.list_audit(s, operator=op))),
    "audit_filter_values": Case(Action.VIEW_AUDIT_LOG, _with_payout(
        lambda s, op: audit_queries.distinct_values(s, operator=op, column="action"))),
    "overview_kpis": Case(Action.VIEW_OVERVIEW, _with_account(
        lambda s, op: overview_kpis(s, operator=op))),
    "metrics_success_rate": Case(Action.VIEW_METRICS, _plain(
        lambda s, op: connection_metrics.success_rate_series(s, operator=op, period=PERIOD))),
    "metrics_funnel": Case(Action.VIEW_METRICS, _plain(
        lambda s, op: connection_metrics.funnel(s, operator=op, period=PERIOD))),
    "metrics_failure_reasons": Case(Action.VIEW_METRICS, _plain(
        lambda s, op: connection_metrics.failure_reasons_series(s, operator=op, period=PERIOD))),
    "metrics_time_to_connect": Case(Action.VIEW_METRICS, _plain(
        lambda s, op: connection_metrics.time_to_connect(s, operator=op, period=PERIOD))),
    "list_accounts": Case(Action.VIEW_ACCOUNTS, _with_account(
        lambda s, op: account_queries.list_accounts(s, operator=op))),
    "account_detail": Case(Action.VIEW_ACCOUNTS, _account_detail),
    "country_options": Case(Action.VIEW_ACCOUNTS, _with_account(
        lambda s, op: account_queries.country_options(s, operator=op))),
    "list_requirements": Case(Action.VIEW_REQUIREMENTS, _with_account(
        lambda s, op: requirements_queries.list_requirements_due(s, operator=op))),
    "requirement_counts": Case(Action.VIEW_REQUIREMENTS, _with_account(
        lambda s, op: requirements_queries.requirement_counts(s, operator=op))),
    "list_payouts": Case(Action.VIEW_PAYOUTS, _with_payout(
        lambda s, op: payout_queries.list_payouts(s, operator=op))),
    "retry_choices": Case(Action.VIEW_PAYOUTS, _with_payout(
        lambda s, op: payout_queries.retry_choices(s, operator=op, limit=25))),
    "payout_totals": Case(Action.VIEW_PAYOUTS, _with_payout(
        lambda s, op: payout_queries.totals_by_currency(s, operator=op))),
    "webhook_event_types": Case(Action.VIEW_WEBHOOKS, _plain(
        lambda s, op: last_events_per_type(s, operator=op))),
    "failed_webhooks": Case(Action.VIEW_WEBHOOKS, _plain(
        lambda s, op: failed_events(s, operator=op))),
    # Issue 21.
    "funding_position": Case(Action.VIEW_FUNDING, _with_payout_factory(
        lambda w, op: funding.funding_position(w.session_factory, gateway=w.gateway,
                                               operator=op))),
    "funds_needed": Case(Action.VIEW_OVERVIEW, _with_payout_factory(
        lambda w, op: funding.funds_needed(w.session_factory, gateway=w.gateway, operator=op))),
    "note_bulk_preview": Case(Action.REQUEST_PAYOUT, lambda w: w.writes(
        lambda s, op: funding.note_bulk_preview(s, operator=op, fingerprint="f" * 64,
                                                totals=[("usd", 1, 1_250)]))),
    "failed_bank_payouts": Case(Action.VIEW_BANK_PAYOUTS, _with_bank_failure(
        lambda s, op: bank_payouts.failed_payouts(s, operator=op))),
    "bank_failures_per_person": Case(Action.VIEW_BANK_PAYOUTS, _with_bank_failure(
        lambda s, op: bank_payouts.failures_by_freelancer(s, operator=op))),
    "export_bank_failures": Case(Action.EXPORT, _with_bank_failure(
        lambda s, op: bank_payouts.iter_failure_rows(s, operator=op))),
    "settings_link": Case(Action.SEND_SETTINGS_LINK, _settings_link),
    "freelancer_timeline": Case(Action.VIEW_ACCOUNTS, _about_a_freelancer(
        lambda s, op, fid: timeline.freelancer_timeline(s, operator=op, freelancer_id=fid))),
    "export_timeline": Case(Action.EXPORT, _about_a_freelancer(
        lambda s, op, fid: timeline.timeline_export_rows(s, operator=op, freelancer_id=fid))),
    "metrics_median_to_connect": Case(Action.VIEW_METRICS, _plain(
        lambda s, op: connection_timing.median_time_to_connect(s, operator=op, period=PERIOD))),
    "report_payouts_by_month": Case(Action.VIEW_REPORTS, _with_payout(
        lambda s, op: finance_reports.payouts_by_month(s, operator=op))),
    "report_connect_durations": Case(Action.VIEW_REPORTS, _plain(
        lambda s, op: finance_reports.connect_durations(s, operator=op, period=PERIOD))),
    "report_requirement_ageing": Case(Action.VIEW_REPORTS, _with_account(
        lambda s, op: finance_reports.requirement_ageing(s, operator=op))),
    "report_bank_failure_rates": Case(Action.VIEW_REPORTS, _with_bank_failure(
        lambda s, op: finance_reports.bank_failure_rates(s, operator=op))),
    "preview_outreach": Case(Action.SEND_OUTREACH, _preview_outreach),
    "send_outreach": Case(Action.SEND_OUTREACH, _send_outreach),
    "outreach_summaries": Case(Action.VIEW_REQUIREMENTS, _with_account(
        lambda s, op: outreach.contact_summaries(s, operator=op, freelancer_ids=[1]))),
    "outreach_history": Case(Action.VIEW_REQUIREMENTS, _outreach_history),
    "list_alert_rules": Case(Action.MANAGE_ALERTS, _plain(
        lambda s, op: alerts.list_rules(s, operator=op))),
    "save_alert_rule": Case(Action.MANAGE_ALERTS, lambda w: w.writes(
        lambda s, op: alerts.save_rule(s, operator=op, kind="past_due_count", name="Many",
                                       params={"threshold": 5},
                                       email_recipients="ops@example.com"))),
    "recent_alerts": Case(Action.VIEW_OVERVIEW, _plain(
        lambda s, op: alerts.recent_alerts(s, operator=op))),
    "list_outbox": Case(Action.VIEW_OUTBOX, _plain(
        lambda s, op: outbox.list_messages(s, operator=op))),
    "retry_message": Case(Action.RETRY_MESSAGE, _retry_message),
}


@pytest.fixture
def world(emulator: EmulatorHandle, session_factory: sessionmaker[Session]) -> World:
    settings = make_settings(stripe_api_base=emulator.base_url,
                             stripe_connect_base=emulator.base_url, stripe_max_network_retries=0,
                             stripe_timeout_seconds=5, payout_approval_threshold_minor=100_000)
    emulator.configure(backend_url=settings.backend_url)
    return World(emulator, settings, StripeGateway(settings), session_factory)


def _operator(role: str, world: World) -> Operator | None:
    if role == "freelancer":
        # What a freelancer's token yields (lib.tokens.TokenClaims.operator), for the freelancer
        # the case acts on: their own connection.
        return Operator(f"freelancer:{world.subject or 1}", frozenset({Role.FREELANCER}))
    return OPERATORS[role]


def _database(session_factory: sessionmaker[Session]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but the audit log, to prove a refusal wrote nothing else."""
    with session_factory() as session:
        return {
            table.name: sorted((tuple(row) for row in session.execute(select(table))), key=repr)
            for table in Base.metadata.sorted_tables if table.name != AuditLog.__tablename__
        }


def _stripe(world: World) -> dict[str, Any]:
    """What a call at Stripe would change, to prove a refusal never reached it.

    Counts (every idempotency key and every event included), balances, and the objects money
    moves through; not the accounts themselves, which the emulator ages on its own clock.
    """
    state = world.emu.state(full=True)
    whole = state["state"]
    return {"counts": state["counts"], "balances": state["balances"],
            **{name: whole.get(name) for name in ("transfers", "reversals", "charges",
                                                   "payouts", "events", "connections")}}


def _audit_after(session_factory: sessionmaker[Session], last_id: int) -> list[AuditLog]:
    with session_factory() as session:
        return list(session.scalars(
            select(AuditLog).where(AuditLog.id > last_id).order_by(AuditLog.id)))


def _last_audit_id(session_factory: sessionmaker[Session]) -> int:
    with session_factory() as session:
        return int(session.scalar(select(func.max(AuditLog.id))) or 0)


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _expected_message(operator: Operator | None, action: Action) -> str:
    words = action.value.replace("_", " ")
    if operator is None:
        return f"You must be signed in to {words}."
    return f"{operator.username} ({operator.role_label}) may not {words}."


def test_the_table_covers_every_case_and_every_action() -> None:
    assert set(EXPECTED) == set(CASES)
    covered = {case.action for case in CASES.values()}
    # Managing one's own connection is exercised through the connect flow rows.
    assert covered | {Action.MANAGE_OWN_CONNECTION} == set(Action)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", list(EXPECTED))
def test_role_matrix(world: World, name: str, role: str) -> None:
    case = CASES[name]
    call = case.prepare(world)
    operator = _operator(role, world)
    as_called = cast(Operator, operator)  # None for anonymous: see Runner
    last_id = _last_audit_id(world.session_factory)

    if EXPECTED[name][role]:
        call(as_called)  # any error at all fails the cell: the data is valid
        refusals = [e for e in _audit_after(world.session_factory, last_id)
                    if e.result.startswith("refused")]
        assert refusals == [], f"{name} allowed for {role} but audited a refusal"
        return

    before_db, before_stripe = _database(world.session_factory), _stripe(world)
    with pytest.raises(PermissionDeniedError) as refused:
        call(as_called)
    assert refused.value.message == _expected_message(operator, case.action)
    entries = _audit_after(world.session_factory, last_id)
    assert len(entries) == 1, [(e.action, e.result) for e in entries]
    entry = entries[0]
    assert entry.action == (case.audit_action or f"authorize.{case.action.value}")
    assert entry.result == REFUSED
    assert entry.detail == refused.value.message
    if operator is None:
        assert (entry.actor, entry.actor_role) == ("anonymous", None)
    else:
        assert (entry.actor, entry.actor_role) == (operator.username, operator.role_label)
    if case.audit_action is None:
        roles = sorted(r.value for r in operator.roles) if operator is not None else []
        assert entry.input == {"action": case.action.value, "roles": roles}
    assert _database(world.session_factory) == before_db, "a refused call wrote data"
    assert _stripe(world) == before_stripe, "a refused call reached Stripe"


def test_a_freelancer_cannot_act_on_another_freelancers_connection(world: World) -> None:
    mine = world.freelancer(connected=True).id
    their_freelancer = world.freelancer(connected=True)
    theirs, their_account = their_freelancer.id, str(their_freelancer.stripe_account_id)
    me = Operator(f"freelancer:{mine}", frozenset({Role.FREELANCER}))
    calls: list[Runner] = [
        world.writes(lambda s, op: create_oauth_link(
            s, gateway=world.gateway, settings=world.settings, operator=op,
            freelancer_id=theirs)),
        lambda op: create_onboarding_link(world.session_factory, gateway=world.gateway,
                                          settings=world.settings, operator=op,
                                          freelancer_id=theirs),
        lambda op: disconnect(world.session_factory, gateway=world.gateway, operator=op,
                              freelancer_id=theirs),
        world.writes(lambda s, op: confirm_destination(
            s, operator=op, freelancer_id=theirs, account_id=their_account)),
    ]
    for call in calls:
        last_id = _last_audit_id(world.session_factory)
        before_db, before_stripe = _database(world.session_factory), _stripe(world)
        with pytest.raises(PermissionDeniedError,
                           match="^A freelancer can only manage their own connection.$"):
            call(me)
        [entry] = _audit_after(world.session_factory, last_id)
        assert (entry.actor, entry.actor_role, entry.result) == (me.username, "freelancer",
                                                                  REFUSED)
        assert (entry.action, entry.target) == ("authorize.manage_own_connection",
                                                f"freelancer:{theirs}")
        assert _database(world.session_factory) == before_db
        assert _stripe(world) == before_stripe
    # Their own connection stays theirs to manage.
    disconnect(world.session_factory, gateway=world.gateway, operator=me, freelancer_id=mine)


def test_the_admin_endpoint_refuses_and_audits_a_freelancer_token(
    world: World, session_factory: sessionmaker[Session],
) -> None:
    fid = world.freelancer(connected=True).id
    token = issue_token(secret=TEST_JWT_SECRET, subject=str(fid), role=Role.FREELANCER)
    body = f'{{"freelancerId": {fid}, "amount": "10.00", "currency": "usd"}}'
    last_id = _last_audit_id(session_factory)
    before_db = _database(session_factory)
    with TestClient(create_app(world.settings, session_factory=session_factory)) as client:
        response = client.post("/api/v1/admin/payouts", content=body,
                               headers={"Authorization": f"Bearer {token}",
                                        "Content-Type": "application/json"})
    assert response.status_code == 403
    assert response.json()["message"] == "This endpoint is for operators."
    [entry] = _audit_after(session_factory, last_id)
    assert (entry.actor, entry.actor_role) == (f"freelancer:{fid}", "freelancer")
    assert (entry.action, entry.result) == ("authorize.request_payout", REFUSED)
    assert _database(session_factory) == before_db


def test_a_refusal_inside_a_writing_transaction_survives_its_rollback(
    session_factory: sessionmaker[Session],
) -> None:
    """The caller already wrote (on SQLite it holds the write lock) when it is refused."""
    started = time.monotonic()
    with pytest.raises(PermissionDeniedError), session_factory.begin() as session:
        # A plain INSERT (create_freelancer's savepoint would commit at once on SQLite).
        session.add(Freelancer(name="Rolled Back", email="rolled@example.com"))
        session.flush()
        account_queries.list_accounts(session, operator=SIGNED_IN["manager"])
    # Waiting for the caller's own lock would take the whole busy_timeout (30 s), then fail.
    assert time.monotonic() - started < 10
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Freelancer)) == 0
    [entry] = _audit_after(session_factory, 0)
    assert (entry.actor, entry.action, entry.result) == ("mia", "authorize.view_accounts",
                                                         REFUSED)


def test_a_refusal_the_caller_recovers_from_is_audited_once_and_its_work_kept(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        session.add(Freelancer(name="Kept", email="kept@example.com"))
        session.flush()
        with pytest.raises(PermissionDeniedError):
            account_queries.list_accounts(session, operator=SIGNED_IN["none"])
        with session.begin_nested():  # a savepoint ending is not the caller's end
            session.add(Freelancer(name="Nested", email="nested@example.com"))
        assert _audit_after(session_factory, 0) == [] or _is_postgresql(session)
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Freelancer)) == 2
    [entry] = _audit_after(session_factory, 0)
    assert (entry.actor, entry.actor_role, entry.action) == ("nora", "none",
                                                             "authorize.view_accounts")


def test_a_failing_audit_write_never_hides_the_refusal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'unmigrated.db'}")  # no audit_log table
    try:
        factory = make_session_factory(engine)
        with caplog.at_level(logging.ERROR, logger="lib.audit"), factory() as session, \
                pytest.raises(PermissionDeniedError, match=r"^mia \(manager\) may not export\.$"):
            list(account_queries.iter_export_rows(session, operator=SIGNED_IN["manager"]))
    finally:
        engine.dispose()
    assert "could not audit the refusal of" in caplog.text


@pytest.mark.parametrize(("page", "action"), [("payouts.py", Action.VIEW_PAYOUTS),
                                              ("accounts.py", Action.VIEW_ACCOUNTS)])
def test_a_page_refused_by_its_gate_is_audited(
    page: str, action: Action, database_url: str, session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """A page file run directly (reached without the router) by a manager refuses and audits."""
    monkeypatch.chdir(tmp_path)  # no developer .env is read from here
    for name, value in {"DATABASE_URL": database_url, "STRIPE_SECRET_KEY": TEST_SECRET_KEY,
                        "STRIPE_CONNECT_CLIENT_ID": TEST_CLIENT_ID,
                        "STRIPE_API_BASE": "http://127.0.0.1:9",
                        "STRIPE_CONNECT_BASE": "http://127.0.0.1:9",
                        "AUTH_CONFIG_PATH": str(DEMO_AUTH_PATH),
                        "AUTH_COOKIE_KEY": "cookie-key-for-tests-only-0123456789"}.items():
        monkeypatch.setenv(name, value)
    st.cache_resource.clear()
    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / page), default_timeout=30)
    at.session_state["authentication_status"] = True
    at.session_state["username"] = "mia"
    at.session_state["roles"] = ["manager"]
    at.run()
    st.cache_resource.clear()  # the page's engine points at this test's database only
    assert not at.exception
    message = f"mia (manager) may not {action.value.replace('_', ' ')}."
    assert [e.value for e in at.error] == [message]
    [entry] = _audit_after(session_factory, 0)
    assert (entry.actor, entry.actor_role, entry.action, entry.result, entry.detail) == (
        "mia", "manager", f"authorize.{action.value}", REFUSED, message)


@pytest.mark.parametrize("role", [Role.ADMIN, Role.FINANCE])
def test_the_freelancer_side_refuses_and_audits_an_operator_token(
    world: World, session_factory: sessionmaker[Session], role: Role,
) -> None:
    token = issue_token(secret=TEST_JWT_SECRET, subject="alice", role=role)
    with TestClient(create_app(world.settings, session_factory=session_factory)) as client:
        api = client.get("/api/v1/freelancer/stripe-connect-status",
                         headers={"Authorization": f"Bearer {token}"})
        assert api.status_code == 403
        assert api.json()["message"] == "This endpoint is for freelancers."
        page = client.get(f"/freelancer/login?token={token}", follow_redirects=False)
        assert page.status_code == 401 and "set-cookie" not in page.headers
    entries = _audit_after(session_factory, 0)
    assert [(e.actor, e.actor_role, e.action, e.result, e.detail) for e in entries] == [
        ("alice", role.value, "authorize.manage_own_connection", REFUSED,
         "This endpoint is for freelancers."),
        ("alice", role.value, "authorize.manage_own_connection", REFUSED,
         "This link is not a freelancer's."),
    ]
