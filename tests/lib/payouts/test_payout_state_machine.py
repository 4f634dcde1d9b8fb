"""The whole money path as one state machine: random interleavings, invariants every step.

A ``RuleBasedStateMachine`` drives the real payout engine against the emulator through the
unmodified SDK: requests (form tokens, API calls with and without a key, bulk rows, replays) to
three Express freelancers and one connected by OAuth, approvals, rejections, executions and
retries (by the executor that claimed a row, or once its claim is stale), reversals (partial,
full, large ones that need a second person), reconciliation over a short or a long window,
transfer events delivered late, twice or out of order, every emulator fault on the transfer and
reversal calls (a delay past the client's timeout, a 500 Stripe saved under the key before or
after the transfer was made, a 500 before execution, a 429, ``lock_timeout``, commit-then-drop),
a refused API key, the OAuth freelancer revoking the platform's access at Stripe, crashes
between the claim and the call, clock jumps past Stripe's 24 h key window, process restarts (a
new engine: nothing is kept in memory), and people deciding rows no retry may settle. After
every step:

* each ledger row has at most one transfer at Stripe, and each reversal at most one reversal;
* a paid row's transfer is at Stripe with the row's amount and destination;
* nothing the ledger calls unpaid (pending, awaiting approval, failed, rejected) was paid by
  Stripe, and no reversal the ledger calls failed or rejected was made;
* a row (or reversal) that was ever submitted is never pending, awaiting approval or rejected
  again, and never leaves a terminal state (paid may only become reversed);
* a row whose 500 Stripe saved under its key is never sent again (only reconciliation and
  people settle it);
* a payout refused because its destination revoked the platform is failed, and the freelancer
  is no longer attached to that account;
* the money Stripe moved to each destination and currency equals the ledger's paid minus
  reversed, plus what Stripe did for rows the ledger does not know the outcome of yet;
* the reserved reversal amount covers what Stripe took back and never exceeds the payout.

At the end everything is settled the way an operator would (retries within the window,
reconciliation, two people deciding the rest from what Stripe shows), and then the ledger and
Stripe agree exactly and a final reconciliation reports nothing.

Two runs of the machine: many short examples (no shrinking) in every ``make test``, and a
bounded number of long ones (``slow``) on each backend; set ``CONNECT_OPS_STATEFUL_EXAMPLES``
(and ``CONNECT_OPS_STATEFUL_STEPS``) for a longer hunt. A failing sequence is printed as a
runnable program, kept in hypothesis' example database (``.hypothesis/``) and belongs in
``tests/lib/payouts/`` as a regression test.

The machine folds two earlier ones together: issue 17's money path and issue 16's "payouts
under Stripe's rules" (the OAuth freelancer and the revocation, the saved 500 after the
transfer, sends and sweeps of stale claims with a refused key, the short reconciliation window,
and the amount/destination, saved-500 and revoked-destination invariants came from the latter).
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import stripe
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from emulator.page_driver import consent
from emulator.testing import EmulatorHandle, stripe_client
from lib.accounts import upsert_account
from lib.connect_flow import create_oauth_link, handle_oauth_callback
from lib.db import make_engine, make_session_factory, utcnow
from lib.errors import ConnectOpsError
from lib.freelancers import create_freelancer, get_freelancer
from lib.models import (
    AuditLog,
    Base,
    Payout,
    PayoutReversal,
    PayoutStatus,
    ReversalStatus,
    SettlementDecision,
)
from lib.payouts import bulk
from lib.payouts.approval import approve_payout, reject_payout
from lib.payouts.decisions import awaiting_decision, confirm_decision, propose_decision
from lib.payouts.execution import (
    SAVED_SERVER_ERROR,
    STALE_SUBMITTED_AFTER,
    _claim,
    execute_payout,
    retry_unsettled,
)
from lib.payouts.ledger import request_payout
from lib.payouts.reconciliation import reconcile
from lib.payouts.reversal import (
    approve_reversal,
    execute_reversal,
    reject_reversal,
    request_reversal,
    retry_unsettled_reversals,
)
from lib.payouts.webhooks import apply_transfer_event
from lib.roles import Operator, Role
from lib.settings import Settings
from lib.stripe_gateway import StripeGateway
from tests.factories import make_settings

ADMIN = Operator("alice", frozenset({Role.ADMIN}))
ADMIN_2 = Operator("arthur", frozenset({Role.ADMIN}))
FINANCE = Operator("fiona", frozenset({Role.FINANCE}))

#: The long run (``slow``); the short one is many examples of a few steps each.
EXAMPLES = int(os.environ.get("CONNECT_OPS_STATEFUL_EXAMPLES", "40"))
STEPS = int(os.environ.get("CONNECT_OPS_STATEFUL_STEPS", "50"))
SHORT_EXAMPLES, SHORT_STEPS = 100, 10
#: What the run explored (written to test-artifacts/ for the record).
STATS: Counter[str] = Counter()
#: Under a ``delay`` fault the client gives up after TIMEOUT and the emulator holds the request
#: HOLD seconds (past it). Every other call is patient: a loaded machine must not invent faults.
TIMEOUT = 0.5
HOLD = 1.0
PATIENT = 30.0

FAULTS: list[dict[str, Any] | None] = [
    None,
    {"kind": "delay", "seconds": HOLD},
    {"kind": "delay", "seconds": HOLD, "phase": "after"},
    {"kind": "http_500"},  # saved under the key: replayed to every retry (issue 16)
    {"kind": "http_500", "phase": "after"},  # saved, and the transfer had been made
    {"kind": "http_500", "saved": False},  # failed before execution: a retry settles it
    {"kind": "rate_limit"},
    {"kind": "lock_timeout"},
    {"kind": "commit_then_drop"},
]
AMOUNTS = ["12.00", "25.00", "40.00", "1500.00"]  # the last one needs a second approver
#: Who a request pays: three Express freelancers, and the one connected by OAuth (who may
#: revoke the platform's access at Stripe).
EXPRESS = 3
OAUTH = EXPRESS
UNPAID = {PayoutStatus.PENDING.value, PayoutStatus.PENDING_APPROVAL.value,
          PayoutStatus.FAILED.value, PayoutStatus.REJECTED.value}
TERMINAL = {PayoutStatus.PAID.value, PayoutStatus.FAILED.value, PayoutStatus.REJECTED.value,
            PayoutStatus.REVERSED.value}
REVERSAL_TERMINAL = {ReversalStatus.SUCCEEDED.value, ReversalStatus.FAILED.value,
                     ReversalStatus.REJECTED.value}


@dataclass
class Backend:
    """A fresh migrated database for each example (a template copy, or truncated PostgreSQL)."""

    make_url: Callable[[], str]
    truncate: bool
    engines: list[Engine] = field(default_factory=list)

    def fresh(self) -> sessionmaker[Session]:
        self.close()
        engine = make_engine(self.make_url())
        if self.truncate:
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            with engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        self.engines.append(engine)
        return make_session_factory(engine)

    def restart(self, url: str) -> sessionmaker[Session]:
        """A new process: a new engine on the same database."""
        self.close()
        engine = make_engine(url)
        self.engines.append(engine)
        return make_session_factory(engine)

    def close(self) -> None:
        while self.engines:
            self.engines.pop().dispose()


@pytest.fixture
def backend(_pg_database, _sqlite_template: Path, tmp_path: Path) -> Iterator[Backend]:
    if _pg_database is not None:
        made = Backend(make_url=lambda: _pg_database, truncate=True)
    else:
        counter = iter(range(1_000_000))

        def copy() -> str:
            path = tmp_path / f"machine-{next(counter)}.db"
            shutil.copy(_sqlite_template, path)
            return f"sqlite:///{path}"
        made = Backend(make_url=copy, truncate=False)
    yield made
    made.close()


class MoneyPath(RuleBasedStateMachine):
    """One example: a fresh database and emulator, four freelancers, random steps."""

    emu: EmulatorHandle
    backend: Backend

    def __init__(self) -> None:
        super().__init__()
        self.settings: Settings = make_settings(
            stripe_api_base=self.emu.base_url, stripe_connect_base=self.emu.base_url,
            stripe_max_network_retries=0, stripe_timeout_seconds=PATIENT,
            payout_approval_threshold_minor=100_000, payout_duplicate_window_days=7)
        self.gateway = StripeGateway(self.settings)
        self.impatient = StripeGateway(self.settings.model_copy(
            update={"stripe_timeout_seconds": TIMEOUT}))
        self.emu.reset()
        self.emu.clear_faults()
        self.factory = self.backend.fresh()
        self.url = str(self.factory.kw["bind"].url.render_as_string(hide_password=False))
        self.freelancers: list[tuple[int, str]] = []
        self.terminal: dict[int, str] = {}
        self.reversal_terminal: dict[int, str] = {}
        #: The sends a row had when Stripe's saved 500 was first seen on it (never more after).
        self.sends_when_saved: dict[int, int] = {}
        self.revoked = False
        self.requests = 0
        self.steps = 0

    # ---- set-up ---------------------------------------------------------------------------

    @initialize()
    def four_freelancers(self) -> None:
        """Three on Express accounts the platform made, one who connected by OAuth."""
        self.emu.configure(backend_url=self.settings.backend_url)  # OAuth's redirect target
        self.emu.set_balance(50_000_000, "usd")
        for n in range(EXPRESS):
            email = f"machine{n}@example.com"
            account = self.gateway.create_express_account(
                email=email, country="US", metadata={}, idempotency_key=f"machine-acct-{n}")
            self.emu.set_account(account.id, onboarding="complete")
            with self.factory.begin() as session:
                freelancer = create_freelancer(session, name=f"Mona {n}", email=email)
                upsert_account(session, account=self.gateway.retrieve_account(account.id).data)
                freelancer.stripe_account_id = account.id
                self.freelancers.append((freelancer.id, account.id))
        with self.factory.begin() as session:
            oauth_id = create_freelancer(session, name="Olga OAuth", email="oauth@example.com",
                                         country="US").id
        with self.factory.begin() as session:
            url = create_oauth_link(session, gateway=self.gateway, settings=self.settings,
                                    operator=ADMIN, freelancer_id=oauth_id).url
        connected = handle_oauth_callback(self.factory, gateway=self.gateway,
                                          params=consent(url))
        assert connected.success and connected.account_id
        self.freelancers.append((oauth_id, connected.account_id))

    # ---- helpers ----------------------------------------------------------------------------

    def _pick(self, model: type[Payout] | type[PayoutReversal], pick: int,
              statuses: tuple[str, ...]) -> int | None:
        """A row to act on: three times in four one in ``statuses``, else any row at all (an
        action on a row in the wrong state must be refused cleanly, and that is explored too)."""
        with self.factory() as session:
            everything = list(session.scalars(select(model.id).order_by(model.id)))
            aimed = list(session.scalars(select(model.id).where(model.status.in_(statuses))
                                         .order_by(model.id)))
        pool = aimed if aimed and pick % 4 else everything
        return pool[pick // 4 % len(pool)] if pool else None

    def _arm(self, fault: dict[str, Any] | None, path: str) -> None:
        self.emu.clear_faults()
        if fault is not None:
            self.emu.inject_fault(path=path, method="POST", **fault)

    def _gateway(self, wrong_key: bool, fault: dict[str, Any] | None = None) -> StripeGateway:
        if not wrong_key:
            return self.impatient if fault and fault["kind"] == "delay" else self.gateway
        # Stripe answers this key with a 401 before anything else (a fault is never reached).
        client = stripe.StripeClient("sk_test_", base_addresses={"api": self.emu.base_url},
                                     max_network_retries=0)
        return StripeGateway(self.settings, client=client)

    @staticmethod
    def _stale_after(stale: bool) -> timedelta:
        """Act on ``submitted`` rows at once (their claim taken as stale) or after the default."""
        return timedelta(0) if stale else STALE_SUBMITTED_AFTER

    @staticmethod
    def _expected(call: Callable[[], Any]) -> Any:
        """Run an action; the product refusing it (with its own error) is a legal outcome."""
        try:
            return call()
        except ConnectOpsError:
            return None

    def _settle_stripe(self) -> None:
        self.emu.clear_faults()
        self.emu.wait_idle()

    # ---- requests ---------------------------------------------------------------------------

    @rule(who=st.integers(0, OAUTH), amount=st.sampled_from(AMOUNTS),
          via=st.sampled_from(["form", "api_key", "api_no_key", "bulk"]),
          same_as_last=st.booleans(), send_now=st.booleans(), fault=st.sampled_from(FAULTS))
    def request(self, who: int, amount: str, via: str, same_as_last: bool, send_now: bool,
                fault: dict[str, Any] | None) -> None:
        """Request a payout; like the form and the API, often send it at once."""
        payout_id = self._request(who, amount, via, same_as_last)
        if payout_id is not None and send_now:
            self._execute(payout_id, fault, wrong_key=False, stale=False)

    def _request(self, who: int, amount: str, via: str, same_as_last: bool) -> int | None:
        freelancer_id, _ = self.freelancers[who]
        if not same_as_last:
            self.requests += 1
        token = {"form": f"form-{self.requests}", "api_key": f"api:alice:key-{self.requests}",
                 "api_no_key": None, "bulk": None}[via]
        description = f"Invoice {self.requests % 3}"
        if via == "bulk":
            result = self._expected(lambda: bulk.confirm_bulk(
                self.factory, gateway=self.gateway, operator=ADMIN, settings=self.settings,
                csv_bytes=(f"freelancer_id,amount,currency,description\n{freelancer_id},"
                           f"{amount},usd,{description}\n").encode()))
            self._settle_stripe()
            if result is None or not result.results or result.results[0].payout_id is None:
                return None
            return int(result.results[0].payout_id)
        with self.factory.begin() as session:
            payout = self._expected(lambda: request_payout(
                session, operator=ADMIN, freelancer_id=freelancer_id, amount=amount,
                currency="usd", description=description, client_request_token=token,
                settings=self.settings))
            return payout.id if payout is not None else None

    @rule(pick=st.integers(0, 10_000))
    def approve(self, pick: int) -> None:
        payout = self._pick(Payout, pick, ("pending_approval",))
        if payout is None:
            return
        with self.factory.begin() as session:
            self._expected(lambda: approve_payout(session, operator=FINANCE, payout_id=payout))

    @rule(pick=st.integers(0, 10_000))
    def reject(self, pick: int) -> None:
        payout = self._pick(Payout, pick, ("pending_approval", "pending", "unknown"))
        if payout is None:
            return
        with self.factory.begin() as session:
            self._expected(lambda: reject_payout(session, operator=FINANCE, payout_id=payout,
                                                 reason="not this one"))

    @rule(pick=st.integers(0, 10_000), fault=st.sampled_from(FAULTS), stale=st.booleans())
    def execute(self, pick: int, fault: dict[str, Any] | None, stale: bool) -> None:
        """The dashboard's Send (or its retry), Stripe failing as ``fault`` says."""
        self._execute(self._pick(Payout, pick, ("pending", "unknown", "submitted")), fault,
                      wrong_key=False, stale=stale)

    def _execute(self, payout: int | None, fault: dict[str, Any] | None,
                 wrong_key: bool, stale: bool) -> None:
        if payout is None:
            return
        self._arm(None if wrong_key else fault, "/v1/transfers")
        self._expected(lambda: execute_payout(
            self.factory, gateway=self._gateway(wrong_key, fault), payout_id=payout,
            operator=ADMIN, recheck_balance=False, stale_after=self._stale_after(stale)))
        self._settle_stripe()

    @rule(pick=st.integers(0, 10_000), stale=st.booleans())
    def execute_with_a_refused_key(self, pick: int, stale: bool) -> None:
        """The key was rotated or mistyped: Stripe answers 401 before doing anything."""
        self._execute(self._pick(Payout, pick, ("pending", "unknown", "submitted")), None,
                      wrong_key=True, stale=stale)

    @rule(pick=st.integers(0, 10_000))
    def crash_after_claim(self, pick: int) -> None:
        """The executor claimed the row and died before calling Stripe."""
        payout = self._pick(Payout, pick, ("pending",))
        if payout is None:
            return
        with self.factory() as session:
            row = session.get(Payout, payout)
            if row is None or row.status != PayoutStatus.PENDING:
                return
            last = row.updated_at
        _claim(self.factory, payout_id=payout, observed=PayoutStatus.PENDING,
               last_updated=last, operator=ADMIN)

    @rule(fault=st.sampled_from(FAULTS), refused_key=st.booleans(), stale=st.booleans())
    def retry_sweep(self, fault: dict[str, Any] | None, refused_key: bool, stale: bool) -> None:
        """The sweeper (``python -m lib.payouts retry``) over payouts and reversals."""
        self._arm(None if refused_key else fault, "/v1/transfers")
        gateway = self._gateway(refused_key, fault)
        stale_after = self._stale_after(stale)
        self._expected(lambda: retry_unsettled(self.factory, gateway=gateway, operator=ADMIN,
                                               stale_after=stale_after))
        self._expected(lambda: retry_unsettled_reversals(self.factory, gateway=gateway,
                                                         operator=ADMIN,
                                                         stale_after=stale_after))
        self._settle_stripe()

    # ---- reversals --------------------------------------------------------------------------

    @rule(pick=st.integers(0, 10_000), part=st.sampled_from([None, "5.00", "1000.00"]),
          send_now=st.booleans(), fault=st.sampled_from(FAULTS))
    def request_reversal(self, pick: int, part: str | None, send_now: bool,
                         fault: dict[str, Any] | None) -> None:
        payout = self._pick(Payout, pick, ("paid",))
        if payout is None:
            return
        reversal = self._expected(lambda: request_reversal(
            self.factory, operator=ADMIN, payout_id=payout, amount=part, reason="take back",
            settings=self.settings))
        if reversal is not None and send_now:
            self._execute_reversal(reversal.id, fault, wrong_key=False)

    @rule(pick=st.integers(0, 10_000), approve=st.booleans())
    def decide_reversal(self, pick: int, approve: bool) -> None:
        reversal = self._pick(PayoutReversal, pick, ("pending_approval",))
        if reversal is None:
            return
        with self.factory.begin() as session:
            if approve:
                self._expected(lambda: approve_reversal(session, operator=FINANCE,
                                                        reversal_id=reversal))
            else:
                self._expected(lambda: reject_reversal(session, operator=ADMIN_2,
                                                       reversal_id=reversal, reason="no"))

    @rule(pick=st.integers(0, 10_000), fault=st.sampled_from(FAULTS))
    def execute_reversal(self, pick: int, fault: dict[str, Any] | None) -> None:
        self._execute_reversal(self._pick(PayoutReversal, pick,
                                          ("pending", "unknown", "submitted")), fault,
                               wrong_key=False)

    def _execute_reversal(self, reversal: int | None, fault: dict[str, Any] | None,
                          wrong_key: bool) -> None:
        if reversal is None:
            return
        self._arm(None if wrong_key else fault, "/v1/transfers/")
        self._expected(lambda: execute_reversal(
            self.factory, gateway=self._gateway(wrong_key, fault), operator=ADMIN,
            reversal_id=reversal))
        self._settle_stripe()

    @rule(pick=st.integers(0, 10_000))
    def execute_reversal_with_a_refused_key(self, pick: int) -> None:
        self._execute_reversal(self._pick(PayoutReversal, pick,
                                          ("pending", "unknown", "submitted")), None,
                               wrong_key=True)

    # ---- Stripe's side, time and processes --------------------------------------------------

    @rule(pick=st.integers(0, 1_000), kind=st.sampled_from(
        ["transfer.created", "transfer.updated", "transfer.reversed"]))
    def deliver_transfer_event(self, pick: int, kind: str) -> None:
        """An event for any transfer, late, repeated or out of order (the pick is arbitrary)."""
        transfers = list(self.gateway.iter_transfers())
        if not transfers:
            return
        transfer = transfers[pick % len(transfers)]
        self._expected(lambda: apply_transfer_event(
            self.factory, gateway=self.gateway,
            event={"id": f"evt_{transfer['id']}_{pick}", "type": kind,
                   "data": {"object": {"id": transfer["id"]}}}))

    @rule(window=st.sampled_from([timedelta(hours=1), timedelta(days=3)]))
    def reconcile(self, window: timedelta) -> None:
        """Reconcile today's rows, or the last three days' (past a jump of the clock)."""
        self._expected(lambda: reconcile(self.factory, gateway=self.gateway, operator=FINANCE,
                                         since=utcnow() - window))

    @rule()
    def revoke_the_oauth_connection(self) -> None:
        """The OAuth freelancer revokes the platform's access at Stripe (the ledger learns it
        only when Stripe refuses a transfer to that account)."""
        if not self.revoked:
            stripe_client(self.emu.base_url).oauth.deauthorize(
                params={"stripe_user_id": self.freelancers[OAUTH][1]})
            self.revoked = True

    @rule()
    def jump_past_the_key_window(self) -> None:
        """25 hours pass: Stripe prunes idempotency keys; our stored times move back alike."""
        self._settle_stripe()
        back = timedelta(hours=25)
        with self.factory.begin() as session:
            for model in (Payout, PayoutReversal):
                for row in session.scalars(select(model)):
                    # Every time column explicitly (updated_at would otherwise be "now").
                    for column in ("created_at", "submitted_at", "updated_at", "completed_at"):
                        value = getattr(row, column)
                        setattr(row, column, value - back if value is not None else None)
            for decision in session.scalars(select(SettlementDecision)):
                decision.proposed_at -= back
        self.emu.advance_clock(back.total_seconds())

    @rule()
    def restart(self) -> None:
        """Every process restarts: a new engine, nothing carried over but the database."""
        self.factory = self.backend.restart(self.url)

    @rule()
    def people_decide(self) -> None:
        """Two people settle what no retry may, from what Stripe's dashboard shows."""
        self._decide_all()

    def _decide_all(self) -> None:
        with self.factory() as session:
            awaiting = awaiting_decision(session, operator=FINANCE)
        for row in awaiting:
            made = self._stripe_object(row.subject, row.subject_id)
            decision = self._expected(partial(
                propose_decision, self.factory, gateway=self.gateway, operator=ADMIN,
                subject=row.subject, subject_id=row.subject_id,
                outcome="paid" if made else "not_paid", stripe_object_id=made,
                reason="checked Stripe"))
            if decision is not None:
                self._expected(partial(confirm_decision, self.factory, gateway=self.gateway,
                                       operator=FINANCE, decision_id=decision.id))

    def _stripe_object(self, subject: str, subject_id: int) -> str | None:
        with self.factory() as session:
            if subject == "payout":
                payout_row = session.get(Payout, subject_id)
                assert payout_row is not None
                key = payout_row.idempotency_key
                return next((t["id"] for t in self.gateway.iter_transfers()
                             if (t.get("metadata") or {}).get("ledger_key") == key), None)
            reversal = session.get(PayoutReversal, subject_id)
            assert reversal is not None
            payout = session.get(Payout, reversal.payout_id)
            assert payout is not None
        if not payout.stripe_transfer_id:
            return None
        return next((r["id"] for r in self.gateway.iter_transfer_reversals(
            payout.stripe_transfer_id)
            if (r.get("metadata") or {}).get("ledger_key") == reversal.idempotency_key), None)

    # ---- invariants -------------------------------------------------------------------------

    def _snapshot(self) -> tuple[list[Payout], list[PayoutReversal], list[dict[str, Any]]]:
        self.emu.wait_idle()
        with self.factory() as session:
            payouts = list(session.scalars(select(Payout).order_by(Payout.id)))
            reversals = list(session.scalars(select(PayoutReversal).order_by(PayoutReversal.id)))
        transfers = list(self.gateway.iter_transfers())
        return payouts, reversals, transfers

    @invariant()
    def the_ledger_and_stripe_agree(self) -> None:
        STATS["checks"] += 1
        payouts, reversals, transfers = self._snapshot()
        by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for transfer in transfers:
            key = (transfer.get("metadata") or {}).get("ledger_key")
            assert key, f"a transfer Stripe made without a ledger key: {transfer['id']}"
            by_key[str(key)].append(transfer)
        known = {p.idempotency_key for p in payouts}
        assert set(by_key) <= known, "Stripe has a transfer for a row the ledger lacks"
        stripe_reversals: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for transfer in transfers:
            if int(transfer.get("amount_reversed") or 0):
                for rev in self.gateway.iter_transfer_reversals(transfer["id"]):
                    stripe_reversals[str((rev.get("metadata") or {}).get("ledger_key"))].append(
                        rev)
        succeeded: dict[int, int] = defaultdict(int)
        for reversal in reversals:
            made = stripe_reversals.get(reversal.idempotency_key, [])
            assert len(made) <= 1, f"reversal {reversal.id} was made {len(made)} times"
            if reversal.status in (ReversalStatus.FAILED, ReversalStatus.REJECTED):
                assert not made, f"reversal {reversal.id} is {reversal.status} but Stripe made it"
            if reversal.status == ReversalStatus.SUCCEEDED:
                assert made, f"reversal {reversal.id} succeeded but Stripe has no reversal"
                succeeded[reversal.payout_id] += reversal.amount_minor
            if reversal.submitted_at is not None:
                assert reversal.status not in (ReversalStatus.PENDING,
                                               ReversalStatus.PENDING_APPROVAL,
                                               ReversalStatus.REJECTED), (
                    f"reversal {reversal.id} was submitted and is now {reversal.status}")
            before = self.reversal_terminal.get(reversal.id)
            if before is not None:
                assert reversal.status == before, (
                    f"reversal {reversal.id} left its terminal state {before}")
            if reversal.status in REVERSAL_TERMINAL:
                self.reversal_terminal[reversal.id] = reversal.status

        stripe_net: dict[tuple[str, str], int] = defaultdict(int)
        ledger_net: dict[tuple[str, str], int] = defaultdict(int)
        for payout in payouts:
            made = by_key.get(payout.idempotency_key, [])
            assert len(made) <= 1, f"payout {payout.id} was paid {len(made)} times"
            where = (str(payout.stripe_account_id), payout.currency)
            for transfer in made:
                stripe_net[where] += int(transfer["amount"]) - int(
                    transfer.get("amount_reversed") or 0)
            if payout.status in UNPAID:
                assert not made, f"payout {payout.id} is {payout.status} but Stripe paid it"
            if payout.status in (PayoutStatus.PAID, PayoutStatus.REVERSED):
                assert made and made[0]["id"] == payout.stripe_transfer_id, (
                    f"payout {payout.id} is {payout.status} without its transfer at Stripe")
                assert (made[0]["amount"], made[0]["destination"]) == (
                    payout.amount_minor, payout.stripe_account_id), (
                    f"payout {payout.id}'s transfer moved other money than the row says")
                ledger_net[where] += payout.amount_minor - succeeded[payout.id]
                # What Stripe took back for reversals the ledger has no answer for yet.
                open_made = sum(
                    int(r["amount"]) for rev in reversals
                    if rev.payout_id == payout.id and rev.status not in REVERSAL_TERMINAL
                    for r in stripe_reversals.get(rev.idempotency_key, []))
                ledger_net[where] -= open_made
                assert succeeded[payout.id] + open_made <= payout.amount_reversed_minor <= (
                    payout.amount_minor), f"payout {payout.id}: reservation does not cover"
            elif made:  # unknown or submitted: the ledger does not know yet, Stripe did it
                ledger_net[where] += int(made[0]["amount"]) - int(
                    made[0].get("amount_reversed") or 0)
            if payout.submitted_at is not None:
                # Sent at least once: Stripe may have it, so never back where it could be
                # rejected or sent again after Stripe forgot its key.
                assert payout.status not in (PayoutStatus.PENDING, PayoutStatus.PENDING_APPROVAL,
                                             PayoutStatus.REJECTED), (
                    f"payout {payout.id} was submitted and is now {payout.status}")
            before = self.terminal.get(payout.id)
            if before is not None:
                allowed = {before} | ({PayoutStatus.REVERSED.value}
                                      if before == PayoutStatus.PAID else set())
                assert payout.status in allowed, (
                    f"payout {payout.id} left its terminal state {before} for {payout.status}")
            if payout.status in TERMINAL:
                self.terminal[payout.id] = payout.status
        assert {k: v for k, v in stripe_net.items() if v} == {
            k: v for k, v in ledger_net.items() if v}, "the money moved differs from the ledger"

    @invariant()
    def a_saved_500_is_never_sent_again(self) -> None:
        """Stripe replays a saved 500 to every retry with the key: sending it again is futile
        (and after the key window, a second payment), so only reconciliation and people act."""
        with self.factory() as session:
            saved = list(session.scalars(select(Payout.id).where(
                Payout.status == PayoutStatus.UNKNOWN, Payout.error_code == SAVED_SERVER_ERROR)))
            if not saved:
                return
            sends = {target: count for target, count in session.execute(
                select(AuditLog.target, func.count()).where(
                    AuditLog.action == "payout.submit",
                    AuditLog.target.in_([f"payout:{payout_id}" for payout_id in saved]))
                .group_by(AuditLog.target))}
        for payout_id in saved:
            now = sends.get(f"payout:{payout_id}", 0)
            assert self.sends_when_saved.setdefault(payout_id, now) == now, (
                f"payout {payout_id} was sent again after Stripe saved a 500 under its key")

    @invariant()
    def a_revoked_destination_fails_and_is_recorded(self) -> None:
        """Stripe refusing the destination (``account_invalid``: the platform's access was
        revoked) fails the payout, and the freelancer is no longer attached to that account."""
        with self.factory() as session:
            for row in session.scalars(select(Payout).where(
                    Payout.error_code == "account_invalid")):
                assert row.status == PayoutStatus.FAILED, (row.id, row.status)
                attached = get_freelancer(session, freelancer_id=row.freelancer_id)
                assert attached.stripe_account_id != row.stripe_account_id, row.id

    # ---- the end: settle everything as an operator would ------------------------------------

    def teardown(self) -> None:
        STATS["examples"] += 1
        with self.factory() as session:
            for status in session.scalars(select(Payout.status)):
                STATS[f"payouts {status} before settling"] += 1
            for status in session.scalars(select(PayoutReversal.status)):
                STATS[f"reversals {status} before settling"] += 1
        try:
            self._settle_stripe()
            for _ in range(3):
                # An operator coming back later: crashed executors' claims are long stale.
                self._expected(lambda: retry_unsettled(self.factory, gateway=self.gateway,
                                                       operator=ADMIN, stale_after=timedelta(0)))
                self._expected(lambda: retry_unsettled_reversals(
                    self.factory, gateway=self.gateway, operator=ADMIN,
                    stale_after=timedelta(0)))
                reconcile(self.factory, gateway=self.gateway, operator=FINANCE,
                          since=utcnow() - timedelta(days=30))
                self._decide_all()
            self.the_ledger_and_stripe_agree()
            self.a_saved_500_is_never_sent_again()
            self.a_revoked_destination_fails_and_is_recorded()
            with self.factory() as session:
                stuck = session.scalars(select(Payout.id).where(Payout.status.in_(
                    [PayoutStatus.UNKNOWN.value, PayoutStatus.SUBMITTED.value]))).all()
                stuck_reversals = session.scalars(select(PayoutReversal.id).where(
                    PayoutReversal.status.in_([ReversalStatus.UNKNOWN.value,
                                               ReversalStatus.SUBMITTED.value]))).all()
            assert not stuck and not stuck_reversals, (stuck, stuck_reversals)
            final = reconcile(self.factory, gateway=self.gateway, operator=FINANCE,
                              since=utcnow() - timedelta(days=30))
            assert final.mismatches == [], final.rows()
        finally:
            self.emu.clear_faults()


def _run(emu: EmulatorHandle, backend: Backend, machine_settings: settings) -> None:
    MoneyPath.emu = emu
    MoneyPath.backend = backend
    run_state_machine_as_test(MoneyPath, settings=machine_settings)


def test_the_money_path_in_short_runs(emu: EmulatorHandle, backend: Backend) -> None:
    """Many examples of a few steps: every ``make test`` explores the rules' combinations."""
    _run(emu, backend, settings(
        max_examples=SHORT_EXAMPLES, stateful_step_count=SHORT_STEPS, deadline=None,
        # No shrinking: replaying against the emulator is not free, and the failing steps are
        # printed as found.
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


@pytest.mark.slow
def test_the_money_path_under_random_faults(emu: EmulatorHandle, backend: Backend) -> None:
    """A bounded number of long examples, shrunk when one fails; what it explored is recorded."""
    STATS.clear()
    try:
        _run(emu, backend, settings(
            max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                   HealthCheck.data_too_large]))
    finally:
        record = Path(__file__).resolve().parents[3] / "test-artifacts" / "payout-state-machine"
        record.mkdir(parents=True, exist_ok=True)
        backend_name = "postgresql" if backend.truncate else "sqlite"
        (record / f"{backend_name}.json").write_text(json.dumps(dict(STATS), indent=1,
                                                                sort_keys=True))
