"""Payouts under Stripe's rules of issue 16, as a model-based test over random interleavings.

Requests, sends, sweeper retries and reconciliations interleave with the failures Stripe's real
rules add: a 500 saved under the key (before or after the transfer was made), a 500 before
execution, a lock timeout, a dropped connection, the destination's connection revoked at Stripe,
and the platform key refused then fixed. After every step:

- no ledger row has more than one transfer at Stripe, and a paid row's transfer is there with
  the row's amount and destination;
- a row that was ever submitted is never ``pending`` again;
- a row whose 500 Stripe saved is never sent again (only reconciliation settles it);
- a payout refused for a revoked destination is failed, and that connection is recorded revoked.
"""

from __future__ import annotations

import itertools
import shutil
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from emulator.page_driver import consent
from emulator.testing import EmulatorHandle, stripe_client
from lib.connect_flow import create_oauth_link, handle_oauth_callback
from lib.db import make_engine, make_session_factory, utcnow
from lib.errors import ConnectOpsError
from lib.freelancers import create_freelancer, get_freelancer
from lib.models import AuditLog, Payout, PayoutStatus
from lib.payouts.execution import SAVED_SERVER_ERROR, execute_payout, retry_unsettled
from lib.payouts.ledger import request_payout
from lib.payouts.reconciliation import reconcile
from lib.roles import Operator
from lib.stripe_gateway import StripeGateway
from tests.conftest import _truncate_all
from tests.factories import make_settings
from tests.lib.payouts.conftest import StripeWorld

ADMIN = Operator.from_role_names("alice", ["admin"])
FINANCE = Operator.from_role_names("fiona", ["finance"])
FAULTS = {
    "saved_500": {"kind": "http_500"},
    "saved_500_after_the_transfer": {"kind": "http_500", "phase": "after"},
    "500_before_execution": {"kind": "http_500", "saved": False},
    "lock_timeout": {"kind": "lock_timeout"},
    "dropped_connection": {"kind": "commit_then_drop"},
}
_run = itertools.count()


def _machine(emu: EmulatorHandle, fresh_database: Callable[[], sessionmaker[Session]]
             ) -> type[RuleBasedStateMachine]:
    settings_ = make_settings(stripe_api_base=emu.base_url, stripe_connect_base=emu.base_url,
                              stripe_max_network_retries=0, stripe_timeout_seconds=2,
                              payout_approval_threshold_minor=100_000)

    class StripeRulesMachine(RuleBasedStateMachine):
        payouts = Bundle("payouts")

        @initialize()
        def start(self) -> None:
            # Every example on a fresh platform and a fresh database: a replay is the same run.
            emu.reset()
            emu.configure(backend_url=settings_.backend_url)
            emu.set_balance(10_000_000, "usd")
            self.world = world = StripeWorld(emu=emu, settings=settings_,
                                             gateway=StripeGateway(settings_),
                                             session_factory=fresh_database())
            # Stripe answers this key with a 401 (the emulator takes any longer sk_test_ key).
            self.bad_key = world.gateway_with(stripe_secret_key="sk_test_")
            self.run = next(_run)
            self.revoked = False
            self.tokens = itertools.count()
            self.sends_when_saved: dict[int, int] = {}
            self.home_id = world.freelancer(email=f"home{self.run}@example.com").id
            with world.session_factory.begin() as session:
                self.oauth_id = create_freelancer(session, name="Olga OAuth",
                                                  email=f"oauth{self.run}@example.com",
                                                  country="US").id
            with world.session_factory.begin() as session:
                url = create_oauth_link(session, gateway=world.gateway, settings=world.settings,
                                        operator=ADMIN, freelancer_id=self.oauth_id).url
            connected = handle_oauth_callback(world.session_factory, gateway=world.gateway,
                                              params=consent(url))
            assert connected.success and connected.account_id
            self.oauth_account = connected.account_id
            self.mine: list[int] = []

        def _gateway(self, refused_key: bool) -> StripeGateway:
            return self.bad_key if refused_key else self.world.gateway

        def request(self, to_oauth: bool) -> int:
            freelancer_id = self.oauth_id if to_oauth else self.home_id
            try:
                with self.world.session_factory.begin() as session:
                    payout = request_payout(
                        session, operator=ADMIN, freelancer_id=freelancer_id, amount="12.34",
                        currency="usd", description="Invoice",
                        client_request_token=f"sm-{self.run}-{next(self.tokens)}",
                        settings=self.world.settings)
                    payout_id = payout.id
            except ConnectOpsError:
                return -1  # e.g. the freelancer is no longer connected: nothing was written
            self.mine.append(payout_id)
            return payout_id

        @rule(payout_id=payouts, fault=st.sampled_from([None, *sorted(FAULTS)]),
              refused_key=st.booleans())
        def send(self, payout_id: int, fault: str | None, refused_key: bool) -> None:
            """The dashboard's Send (or its retry), Stripe failing as ``fault`` says."""
            if payout_id < 0:
                return
            self.world.emu.clear_faults()
            if fault is not None:
                self.world.emu.inject_fault(path="/v1/transfers", method="POST", **FAULTS[fault])
            try:
                execute_payout(self.world.session_factory, gateway=self._gateway(refused_key),
                               payout_id=payout_id, operator=ADMIN, stale_after=timedelta(0))
            except ConnectOpsError:
                pass  # refused (preflight, a saved error, a refused key): the row says why
            finally:
                self.world.emu.clear_faults()

        @rule(target=payouts, to_oauth=st.booleans(), revoke_first=st.booleans(),
              fault=st.sampled_from([None, *sorted(FAULTS)]), refused_key=st.booleans())
        def request_and_send(self, to_oauth: bool, revoke_first: bool, fault: str | None,
                             refused_key: bool) -> int:
            """An admin's payout requested and sent at once; the OAuth freelancer may have
            revoked the platform's access at Stripe just before."""
            if revoke_first:
                self.revoke_at_stripe()
            payout_id = self.request(to_oauth)
            self.send(payout_id, fault, refused_key)
            return payout_id

        def revoke_at_stripe(self) -> None:
            if not self.revoked:
                stripe_client(self.world.emu.base_url).oauth.deauthorize(
                    params={"stripe_user_id": self.oauth_account})
                self.revoked = True

        @rule(refused_key=st.booleans())
        def sweep(self, refused_key: bool) -> None:
            retry_unsettled(self.world.session_factory, gateway=self._gateway(refused_key),
                            operator=ADMIN, stale_after=timedelta(0))

        @rule()
        def reconcile_today(self) -> None:
            reconcile(self.world.session_factory, gateway=self.world.gateway, operator=FINANCE,
                      since=utcnow() - timedelta(hours=1))

        # ---- invariants ------------------------------------------------------------------------

        def _rows(self) -> list[Payout]:
            with self.world.session_factory() as session:
                return list(session.scalars(select(Payout).where(Payout.id.in_(self.mine))))

        def _sends(self, payout_id: int) -> int:
            with self.world.session_factory() as session:
                return int(session.scalar(select(func.count()).select_from(AuditLog).where(
                    AuditLog.action == "payout.submit",
                    AuditLog.target == f"payout:{payout_id}")) or 0)

        @invariant()
        def one_transfer_per_row_and_paid_means_there(self) -> None:
            if not getattr(self, "mine", None):
                return
            transfers = self.world.emu.state(full=True)["state"]["transfers"]
            per_row = Counter(t["metadata"].get("ledger_key") for t in transfers.values())
            for row in self._rows():
                assert per_row[row.idempotency_key] <= 1, row.id
                if row.status in (PayoutStatus.PAID, PayoutStatus.REVERSED):
                    sent = transfers[row.stripe_transfer_id]
                    assert (sent["amount"], sent["destination"]) == (row.amount_minor,
                                                                     row.stripe_account_id)

        @invariant()
        def submitted_rows_never_go_back_to_pending(self) -> None:
            for row in self._rows() if getattr(self, "mine", None) else []:
                assert not (row.submitted_at is not None and row.status == PayoutStatus.PENDING)

        @invariant()
        def a_saved_500_is_never_sent_again(self) -> None:
            for row in self._rows() if getattr(self, "mine", None) else []:
                if row.status == PayoutStatus.UNKNOWN and row.error_code == SAVED_SERVER_ERROR:
                    sends = self._sends(row.id)
                    assert self.sends_when_saved.setdefault(row.id, sends) == sends, row.id

        @invariant()
        def a_revoked_destination_fails_and_is_recorded(self) -> None:
            for row in self._rows() if getattr(self, "mine", None) else []:
                if row.error_code == "account_invalid":
                    assert row.status == PayoutStatus.FAILED
                    with self.world.session_factory() as session:
                        attached = get_freelancer(session,
                                                  freelancer_id=row.freelancer_id).stripe_account_id
                    assert attached != row.stripe_account_id

    return StripeRulesMachine


def test_payouts_under_stripes_rules_in_any_order(
    emu: EmulatorHandle, _sqlite_template: Path, _pg_database: str | None, tmp_path: Path,
) -> None:
    databases = itertools.count()
    engines: list[Engine] = []  # one alive at a time: the current example's

    def fresh_database() -> sessionmaker[Session]:
        if _pg_database is not None:
            if not engines:
                engines.append(make_engine(_pg_database))
            _truncate_all(engines[0])
            return make_session_factory(engines[0])
        while engines:
            engines.pop().dispose()
        path = tmp_path / f"example-{next(databases)}.db"
        shutil.copy(_sqlite_template, path)
        engines.append(make_engine(f"sqlite:///{path}"))
        return make_session_factory(engines[0])

    try:
        run_state_machine_as_test(
            _machine(emu, fresh_database),
            settings=settings(max_examples=100, stateful_step_count=10, deadline=None,
                              # No shrinking: replaying against the emulator is not free, and
                              # the failing steps are printed as found.
                              phases=[Phase.explicit, Phase.reuse, Phase.generate],
                              suppress_health_check=[HealthCheck.too_slow,
                                                     HealthCheck.filter_too_much]),
        )
    finally:
        for engine in engines:
            engine.dispose()
