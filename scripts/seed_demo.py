"""Seed realistic demo data once: freelancers in every account state, 90 days of connection
attempts and a payout history, created through the product's own code and the emulator.

Accounts are real emulator accounts (created with the SDK through the gateway, then put in their
state through the emulator's test-control API), so refresh, sync, disconnect and payouts work on
them in the demo. Running it again is a no-op.
"""

from __future__ import annotations

import logging
import random
import sys
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from emulator.page_driver import consent
from lib.account_terms import UnsupportedCountryError, account_terms
from lib.accounts import get_account, upsert_account
from lib.connect_flow import create_oauth_link, handle_oauth_callback
from lib.connection_attempts import FailureReason
from lib.db import make_engine, make_session_factory, utcnow
from lib.destinations import confirm_destination
from lib.errors import ConfigurationError, ConnectOpsError
from lib.freelancers import create_freelancer
from lib.models import AttemptOutcome, ConnectionAttempt, ConnectionMethod, Freelancer, Payout
from lib.payouts.approval import approve_payout
from lib.payouts.execution import execute_payout
from lib.payouts.ledger import request_payout
from lib.roles import Operator, Role
from lib.settings import Settings, load_settings
from lib.stripe_gateway import StripeGateway
from scripts.seed_messages import seed_messages

logger = logging.getLogger("seed")

FIRST = ["Ada", "Grace", "Alan", "Katherine", "Linus", "Margaret", "Dennis", "Barbara", "Ken",
         "Frances", "Tim", "Radia", "Guido", "Hedy", "John", "Sophie", "Donald", "Shafi",
         "Edsger", "Annie", "Niklaus", "Jean", "Yukihiro", "Mary"]
LAST = ["Lovelace", "Hopper", "Turing", "Johnson", "Torvalds", "Hamilton", "Ritchie", "Liskov",
        "Thompson", "Allen", "Berners-Lee", "Perlman", "van Rossum", "Lamarr", "Backus",
        "Wilson", "Knuth", "Goldwasser", "Dijkstra", "Easley", "Wirth", "Sammet", "Matsumoto",
        "Keller"]
#: Freelancers' countries: the platform's own (full agreement) and, for the others, countries
#: Stripe pays cross-border (recipient agreement; lib.account_terms). With a platform outside
#: those regions, the others fall back to the platform's country.
COUNTRIES = ["US", "US", "US", "GB", "FR", "DE", "CA", "CH", "IE", "NL"]
CURRENCIES = ("usd", "eur", "gbp", "cad", "chf")
DAY = 86_400

#: (how many, state) in the order freelancers are created; the rest stay NOT_CONNECTED.
PLAN: list[tuple[int, str]] = [
    (16, "active"), (5, "restricted_deadline"), (3, "restricted_future"), (4, "pending_new"),
    (2, "pending_verification"), (4, "disabled_past_due"), (2, "rejected"), (12, "not_connected"),
]


class Emulator:
    """The emulator's test-control API (never part of Stripe's surface)."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def set_account(self, account_id: str, **fields: Any) -> None:
        response = self.http.post(f"/_emulator/accounts/{account_id}", json=fields)
        response.raise_for_status()

    def reject(self, account_id: str, reason: str, api_key: str) -> None:
        response = self.http.post(f"/v1/accounts/{account_id}/reject", data={"reason": reason},
                                  headers={"Authorization": f"Bearer {api_key}"})
        response.raise_for_status()

    def set_clock_offset(self, seconds: float) -> None:
        self.http.post("/_emulator/clock/set", json={"offset": seconds}).raise_for_status()

    def top_up(self, currency: str, amount_minor: int) -> None:
        response = self.http.post("/_emulator/balance", json={
            "amount": amount_minor, "currency": currency, "mode": "add"})
        response.raise_for_status()

    def account_count(self) -> int:
        response = self.http.get("/_emulator/state")
        response.raise_for_status()
        return int(response.json().get("counts", {}).get("accounts", 0))


def _complete(emulator: Emulator, account_id: str) -> None:
    emulator.set_account(account_id, onboarding="complete")


def _apply_state(emulator: Emulator, settings: Settings, account_id: str, state: str,
                 index: int) -> None:
    now = int(utcnow().timestamp())
    if state == "pending_new":
        return
    _complete(emulator, account_id)
    if state == "restricted_deadline":
        emulator.set_account(account_id, requirements={
            "currently_due": ["individual.verification.document"],
            "eventually_due": ["individual.verification.document", "individual.id_number"],
            "current_deadline": now + (2 + 6 * index) * DAY})
    elif state == "restricted_future":
        emulator.set_account(account_id, future_requirements={
            "currently_due": ["individual.verification.additional_document"],
            "eventually_due": ["individual.verification.additional_document"],
            "current_deadline": now + (30 + 10 * index) * DAY})
    elif state == "pending_verification":
        emulator.set_account(account_id, requirements={
            "pending_verification": ["individual.verification.document"]})
    elif state == "disabled_past_due":
        emulator.set_account(
            account_id, payouts_enabled=False, capabilities={"transfers": "inactive"},
            requirements={"currently_due": ["external_account", "tos_acceptance.date"],
                          "past_due": ["external_account", "tos_acceptance.date"],
                          "disabled_reason": "requirements.past_due",
                          "current_deadline": now - (3 + index) * DAY})
    elif state == "rejected":
        assert settings.stripe_secret_key is not None
        emulator.reject(account_id, "fraud" if index % 2 == 0 else "terms_of_service",
                        settings.stripe_secret_key.get_secret_value())


def _payable_country(settings: Settings, country: str) -> str:
    """``country`` if Stripe can pay it from this platform, else the platform's own."""
    try:
        account_terms(platform_country=settings.stripe_platform_country,
                      freelancer_country=country)
    except UnsupportedCountryError:
        return settings.stripe_platform_country
    return country


def _attempts(rng: random.Random, freelancer: Freelancer, connected: bool) -> list[ConnectionAttempt]:
    """A believable history: some failures and abandons, then the connection if any."""
    now = utcnow()
    rows: list[ConnectionAttempt] = []
    start = now - timedelta(days=rng.randint(5, 89), hours=rng.randint(0, 23))
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        reason = rng.choice([FailureReason.ACCESS_DENIED, FailureReason.ACCESS_DENIED,
                             FailureReason.INVALID_STATE, FailureReason.EXCHANGE_FAILED,
                             FailureReason.SERVER_ERROR, FailureReason.ABANDONED])
        outcome = (AttemptOutcome.ABANDONED if reason is FailureReason.ABANDONED
                   else AttemptOutcome.FAILED)
        rows.append(ConnectionAttempt(
            freelancer_id=freelancer.id, method=rng.choice(list(ConnectionMethod)),
            issued_by="admin", started_at=start, outcome=outcome.value,
            failure_reason=reason.value,
            finished_at=start + timedelta(minutes=rng.randint(1, 600))))
        start += timedelta(hours=rng.randint(2, 72))
    if connected and freelancer.stripe_account_id:
        finished = start + timedelta(minutes=rng.randint(2, 45))
        method = freelancer.connection_method or ConnectionMethod.ACCOUNT_LINK.value
        rows.append(ConnectionAttempt(
            freelancer_id=freelancer.id, method=method, issued_by="admin",
            stripe_account_id=freelancer.stripe_account_id, started_at=start,
            returned_at=finished if method == ConnectionMethod.ACCOUNT_LINK.value else None,
            finished_at=finished, outcome=AttemptOutcome.SUCCEEDED.value))
        freelancer.connected_at = finished
    return rows


ADMIN = Operator(username="admin", roles=frozenset({Role.ADMIN}))
FINANCE = Operator(username="finance", roles=frozenset({Role.FINANCE}))


def _connect_through_oauth(factory: sessionmaker[Session], gateway: StripeGateway,
                           settings: Settings, freelancer_id: int, *, confirm: bool) -> None:
    """The real OAuth dance against the emulator's consent page (a new Standard account).

    A new connection holds payouts until the freelancer confirms it (lib.destinations): the
    demo's freelancers did, on their payment settings, except those left to show the hold.
    """
    with factory.begin() as session:
        link = create_oauth_link(session, gateway=gateway, settings=settings, operator=ADMIN,
                                 freelancer_id=freelancer_id)
    result = handle_oauth_callback(factory, gateway=gateway, params=consent(link.url))
    if not result.success or result.account_id is None:
        raise ConnectOpsError(f"demo OAuth connection failed: {result.reason}")
    if confirm:
        own = Operator(username=f"freelancer:{freelancer_id}", roles=frozenset({Role.FREELANCER}))
        with factory.begin() as session:
            confirm_destination(session, operator=own, freelancer_id=freelancer_id,
                                account_id=result.account_id)


def _connect_express(factory: sessionmaker[Session], gateway: StripeGateway,
                     emulator: Emulator, settings: Settings, *, freelancer_id: int, email: str,
                     country: str, state: str, index: int) -> None:
    account = gateway.create_express_account(
        email=email, country=country, metadata={"freelancer_id": str(freelancer_id)},
        idempotency_key=f"connectops-demo-seed-{freelancer_id}",
    )
    _apply_state(emulator, settings, account.id, state, index)
    fetched_at = utcnow()
    current = gateway.retrieve_account(account.id).data
    with factory.begin() as session:
        upsert_account(session, account=current, fetched_at=fetched_at)
        freelancer = session.get(Freelancer, freelancer_id)
        assert freelancer is not None
        freelancer.stripe_account_id = account.id
        freelancer.connection_method = ConnectionMethod.ACCOUNT_LINK.value


def _payout_history(factory: sessionmaker[Session], gateway: StripeGateway, emulator: Emulator,
                    settings: Settings, payees: list[int], rng: random.Random) -> int:
    """About 90 days of payouts, made in the past on the emulator's clock, ledger to match."""
    made = 0
    try:
        for number in range(len(payees) * 3):
            freelancer_id = payees[number % len(payees)]
            offset = -rng.randint(1, 88) * DAY - rng.randint(0, DAY)
            emulator.set_clock_offset(offset)
            with factory() as session:
                freelancer = session.get(Freelancer, freelancer_id)
                assert freelancer is not None and freelancer.stripe_account_id
                mirror = get_account(session, stripe_id=freelancer.stripe_account_id)
                currency = (mirror.default_currency if mirror else None) or "usd"
            big = number % 9 == 4
            amount = str(rng.randint(1100, 2400) if big else rng.randint(40, 900))
            if currency == "jpy":
                amount += "00"
            with factory.begin() as session:
                payout = request_payout(
                    session, operator=ADMIN, freelancer_id=freelancer_id, amount=amount,
                    currency=currency, description=f"Invoice {1000 + number}",
                    client_request_token=f"demo-seed-{number}", settings=settings)
                payout_id = payout.id
                if payout.status == "pending_approval" and number % 2 == 0:
                    approve_payout(session, operator=FINANCE, payout_id=payout_id)
            with factory() as session:
                status = session.get(Payout, payout_id).status  # type: ignore[union-attr]
            if status == "pending":
                execute_payout(factory, gateway=gateway, payout_id=payout_id, operator=ADMIN)
            moment = utcnow() + timedelta(seconds=offset)
            with factory.begin() as session:
                session.execute(
                    update(Payout).where(Payout.id == payout_id).values(
                        created_at=moment, submitted_at=moment if status == "pending" else None,
                        completed_at=moment + timedelta(seconds=2) if status == "pending"
                        else None, updated_at=moment + timedelta(seconds=2)))
            made += 1
    finally:
        emulator.set_clock_offset(0)
    return made


def seed(settings: Settings) -> bool:
    """Seed once; False when the database already has freelancers."""
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    gateway = StripeGateway(settings)
    assert settings.stripe_api_base is not None
    emulator = Emulator(settings.stripe_api_base)
    with factory() as session:
        if session.scalar(select(func.count()).select_from(Freelancer)):
            if emulator.account_count() <= 3:
                logger.warning("the database is seeded but the emulator has no accounts of it: "
                               "run `make demo-reset` for a fresh demo")
            return False
    rng = random.Random(20261128)
    for currency in CURRENCIES:
        emulator.top_up(currency, 2_000_000)  # the payout history must find funds
    states = [state for count, state in PLAN for _ in range(count)]
    payees: list[int] = []
    for index, state in enumerate(states):
        name = f"{FIRST[index % len(FIRST)]} {LAST[(index * 7) % len(LAST)]}"
        email = f"{name.lower().replace(' ', '.').replace('-', '')}.{index}@freelancers.example"
        country = _payable_country(settings, COUNTRIES[index % len(COUNTRIES)])
        with factory.begin() as session:
            freelancer_id = create_freelancer(session, name=name, email=email,
                                              country=country).id
        oauth = state == "active" and index % 4 == 3
        # The first OAuth connection stays unconfirmed: the Accounts page flags it, and it is
        # not paid until someone confirms it.
        held = oauth and index == 3
        if oauth:
            _connect_through_oauth(factory, gateway, settings, freelancer_id, confirm=not held)
        elif state != "not_connected":
            _connect_express(factory, gateway, emulator, settings, freelancer_id=freelancer_id,
                             email=email, country=country, state=state, index=index)
        if state == "active" and not held:
            payees.append(freelancer_id)
        with factory.begin() as session:
            freelancer = session.get(Freelancer, freelancer_id)
            assert freelancer is not None
            history = _attempts(rng, freelancer, connected=state != "not_connected" and not oauth)
            session.add_all(history)
    made = _payout_history(factory, gateway, emulator, settings, payees, rng)
    logger.info("seeded %d freelancers (%d payable) and %d payouts", len(states), len(payees),
                made)
    seed_messages(factory)  # alert rules, a first check, a few outreach emails (issue 20)
    engine.dispose()
    return True


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="seed: %(message)s")
    for noisy in ("stripe", "httpx", "httpcore", "lib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = load_settings().require("STRIPE_SECRET_KEY", "STRIPE_API_BASE")
    except ConfigurationError as exc:
        sys.stderr.write(f"seed: {exc}\n")
        return 2
    if not settings.uses_local_stripe:
        sys.stderr.write("seed: demo data goes only to the local emulator (STRIPE_API_BASE).\n")
        return 2
    try:
        seeded = seed(settings)
    except (ConnectOpsError, httpx.HTTPError) as exc:
        sys.stderr.write(f"seed: {exc}\n")
        return 1
    logger.info("demo data %s", "created" if seeded else "already present; nothing to do")
    return 0


if __name__ == "__main__":
    sys.exit(main())
