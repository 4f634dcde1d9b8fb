"""Model-based test of a freelancer's connection (issue 19): onboarding links and their
refresh/return URLs, OAuth connections by the freelancer or by someone else, disconnects,
destination confirmations, payouts and clock jumps, in random interleavings.

After every step, against a plain model:
- a refresh or return URL acts exactly when it is unused, unexpired, of the current connection
  generation and for the account still connected; otherwise it changes nothing, here or at
  Stripe (no account created, no link issued);
- Express accounts are created only by an onboarding link asked for while not connected;
- the freelancer's destination and its hold are what the model says;
- no transfer ever goes to a destination that was not confirmed when it was paid.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from emulator.page_driver import consent, onboard
from lib.connect_flow import (
    create_oauth_link,
    create_onboarding_link,
    disconnect,
    handle_oauth_callback,
    handle_onboarding_return,
    refresh_onboarding_link,
)
from lib.db import utcnow
from lib.destinations import confirm_destination
from lib.freelancers import create_freelancer
from lib.models import Freelancer, Payout
from lib.money import Money
from lib.onboarding_urls import StaleOnboardingUrl, UrlPurpose, read_signed_attempt
from lib.payouts.execution import PreflightFailedError, execute_payout
from lib.payouts.ledger import request_payout
from lib.payouts.preflight import CHECK_DESTINATION_CONFIRMED, preflight
from lib.roles import Operator, Role
from lib.stripe_gateway import StripeGateway
from tests.factories import make_settings

ADMIN = Operator("alice", frozenset({Role.ADMIN}))
HOUR = timedelta(hours=1)


@dataclass
class Url:
    """A refresh or return URL as Stripe holds it, and what the model knows about it."""

    url: str
    purpose: UrlPurpose
    account: str
    generation: int
    issued_at_offset: timedelta
    used: bool = False


def test_connection_model(emulator, session_factory, monkeypatch) -> None:
    conf = make_settings(stripe_api_base=emulator.base_url, stripe_connect_base=emulator.base_url)
    gateway = StripeGateway(conf)
    clock = {"offset": timedelta()}

    def shifted() -> datetime:
        return utcnow() + clock["offset"]

    # Our clock (issuing and checking URLs), never Stripe's.
    monkeypatch.setattr("lib.connect_flow.utcnow", shifted)
    monkeypatch.setattr("lib.onboarding_urls.utcnow", shifted)
    examples = {"n": 0}

    class ConnectionMachine(RuleBasedStateMachine):
        urls = Bundle("urls")

        def __init__(self) -> None:
            super().__init__()
            examples["n"] += 1
            emulator.reset()
            emulator.configure(backend_url=conf.backend_url)
            emulator.set_balance(10_000_000, "usd")
            clock["offset"] = timedelta()
            with session_factory.begin() as session:
                self.fid = create_freelancer(
                    session, name="Ada Lovelace", email=f"ada{examples['n']}@example.com",
                    country="US").id
            self.me = Operator(f"freelancer:{self.fid}", frozenset({Role.FREELANCER}))
            # The model.
            self.account: str | None = None
            self.method: str | None = None
            self.unconfirmed: str | None = None
            self.generation = 0
            self.accounts_at_stripe = self._stripe()[0]
            self.paid_to: list[str] = []
            self.confirmed_when_paid: list[bool] = []
            self.last_link: str | None = None

        # ---- helpers ------------------------------------------------------------------------

        def _stripe(self) -> tuple[int, int, int]:
            state = emulator.state(full=True)
            return (state["counts"]["accounts"], len(state["state"]["account_links"]),
                    state["counts"]["transfers"])

        def _urls_of(self, link_url: str) -> tuple[str, str]:
            token = link_url.rstrip("/").rsplit("/", 1)[1]
            link = emulator.state(full=True)["state"]["account_links"][token]
            return link["refresh_url"], link["return_url"]

        def _freelancer(self) -> Freelancer:
            with session_factory() as session:
                return session.get_one(Freelancer, self.fid)

        def _new_urls(self, link_url: str) -> tuple[Url, Url]:
            assert self.account is not None
            refresh, back = self._urls_of(link_url)
            return (Url(refresh, UrlPurpose.REFRESH, self.account, self.generation,
                        clock["offset"]),
                    Url(back, UrlPurpose.RETURN, self.account, self.generation, clock["offset"]))

        def _valid(self, url: Url) -> bool:
            return (not url.used and clock["offset"] - url.issued_at_offset < HOUR
                    and url.generation == self.generation and url.account == self.account)

        # ---- rules --------------------------------------------------------------------------

        @precondition(lambda self: self.method != "oauth")
        @rule(target=urls)
        def onboarding_link(self):
            if self.account is None:
                self.accounts_at_stripe += 1  # a new Express account, attached and held
            link = create_onboarding_link(session_factory, gateway=gateway, settings=conf,
                                          operator=self.me, freelancer_id=self.fid)
            if self.account is None:
                self.account, self.method = self._freelancer().stripe_account_id, "express"
                self.unconfirmed = self.account
            self.last_link = link.url
            return multiple(*self._new_urls(link.url))

        @precondition(lambda self: self.method == "express" and self.last_link is not None)
        @rule()
        def complete_onboarding(self) -> None:
            assert self.last_link is not None
            onboard(self.last_link, action="complete")  # the link may be used already: fine

        @rule(someone_else=st.booleans())
        def oauth_connect(self, someone_else: bool) -> None:
            with session_factory.begin() as session:
                link = create_oauth_link(session, gateway=gateway, settings=conf,
                                         operator=self.me, freelancer_id=self.fid)
            if someone_else:  # a seeded Standard account of another person
                accounts = emulator.state(full=True)["state"]["accounts"]
                theirs = next(a["id"] for a in accounts.values()
                              if a.get("email") == "grace@example.com")
                result = handle_oauth_callback(session_factory, gateway=gateway,
                                               params=consent(link.url, account=theirs))
            else:
                self.accounts_at_stripe += 1
                result = handle_oauth_callback(session_factory, gateway=gateway,
                                               params=consent(link.url))
            assert result.success, result.reason
            if result.account_id != self.account:
                self.unconfirmed = result.account_id
            self.account, self.method = result.account_id, "oauth"

        @rule(url=urls)
        def use_url(self, url: Url) -> None:
            valid = self._valid(url)
            before = self._stripe()
            signed = read_signed_attempt(conf, parse_qs(urlsplit(url.url).query)["attempt"][0],
                                         purpose=url.purpose)
            assert signed is not None
            try:
                if url.purpose is UrlPurpose.REFRESH:
                    link = refresh_onboarding_link(session_factory, gateway=gateway,
                                                   settings=conf, url=signed)
                    self.last_link = link.url
                else:
                    handle_onboarding_return(session_factory, gateway=gateway, url=signed)
            except StaleOnboardingUrl:
                assert not valid, "a valid URL was refused"
                assert self._stripe() == before, "a stale URL reached Stripe"
                return
            assert valid, "a stale URL acted"
            url.used = True
            after = self._stripe()
            assert after[0] == before[0], "a URL created an account"
            if url.purpose is UrlPurpose.RETURN:
                assert after[1] == before[1], "a return URL issued a link"

        @precondition(lambda self: self.account is not None)
        @rule()
        def disconnect_it(self) -> None:
            disconnect(session_factory, gateway=gateway, operator=self.me,
                       freelancer_id=self.fid)
            self.account = self.method = self.unconfirmed = None
            self.generation += 1

        @precondition(lambda self: self.unconfirmed is not None)
        @rule(by_admin=st.booleans())
        def confirm(self, by_admin: bool) -> None:
            with session_factory.begin() as session:
                assert confirm_destination(
                    session, operator=ADMIN if by_admin else self.me, freelancer_id=self.fid,
                    account_id=str(self.unconfirmed), reason="Phoned, ticket 7")
            self.unconfirmed = None

        @rule()
        def jump_clock(self) -> None:
            clock["offset"] += timedelta(minutes=61)

        @precondition(lambda self: self.account is not None)
        @rule()
        def pay(self) -> None:
            with session_factory.begin() as session:
                checks = preflight(session, gateway=None, freelancer_id=self.fid,
                                   money=Money(1000, "usd"), available_minor=10**9)
                payout_id = request_payout(
                    session, operator=ADMIN, freelancer_id=self.fid, amount="10.00",
                    currency="usd", description="Invoice", settings=conf,
                    client_request_token=f"model-{examples['n']}-{len(self.paid_to)}-"
                                         f"{self._stripe()[2]}-{clock['offset']}").id
            held = {c.name: c.ok for c in checks.checks}[CHECK_DESTINATION_CONFIRMED] is False
            assert held == (self.unconfirmed is not None)
            transfers = self._stripe()[2]
            try:
                execute_payout(session_factory, gateway=gateway, payout_id=payout_id,
                               operator=ADMIN)
            except PreflightFailedError:
                assert self._stripe()[2] == transfers
                return
            assert not held, "a held destination was paid"
            with session_factory() as session:
                if session.get_one(Payout, payout_id).status == "paid":
                    self.paid_to.append(str(self.account))
                    self.confirmed_when_paid.append(self.unconfirmed is None)

        # ---- invariants ---------------------------------------------------------------------

        @invariant()
        def matches_the_model(self) -> None:
            freelancer = self._freelancer()
            assert freelancer.stripe_account_id == self.account
            assert freelancer.unconfirmed_account_id == self.unconfirmed
            assert self._stripe()[0] == self.accounts_at_stripe, "an unexpected account"
            assert all(self.confirmed_when_paid)
            with session_factory() as session:
                paid = session.scalars(select(Payout.stripe_account_id).where(
                    Payout.freelancer_id == self.fid, Payout.status == "paid")).all()
            assert sorted(paid) == sorted(self.paid_to)

    run_state_machine_as_test(ConnectionMachine, settings=settings(
        max_examples=25, stateful_step_count=15, deadline=None, derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        database=None))
