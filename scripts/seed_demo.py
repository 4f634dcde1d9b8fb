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
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from emulator.page_driver import consent
from lib.account_terms import UnsupportedCountryError, account_terms
from lib.accounts import get_account, upsert_account
from lib.bank_payouts import apply_payout_event
from lib.cli import EXIT_CONFIGURATION, EXIT_FAILED, CommandContext, run_command, say
from lib.connect_flow import create_connect_link, handle_oauth_callback
from lib.connection_attempts import FailureReason
from lib.db import make_engine, make_session_factory, utcnow
from lib.destinations import confirm_destination
from lib.errors import ConnectOpsError
from lib.freelancers import create_freelancer
from lib.models import (
    AttemptOutcome,
    ConnectionAttempt,
    ConnectionMethod,
    Freelancer,
    Payout,
    PayoutStatus,
)
from lib.money import Money, to_decimal, wire_exponent
from lib.payouts.approval import approve_payout
from lib.payouts.execution import execute_payout
from lib.payouts.ledger import request_payout
from lib.payouts.limits import limits_for
from lib.payouts.reversal import reverse_payout
from lib.roles import Operator, Role
from lib.settings import Settings
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


def _attempts(rng: random.Random, freelancer: Freelancer, connected: bool,
              connected_at: datetime | None = None) -> list[ConnectionAttempt]:
    """A believable history: some failures and abandons, then the connection if any (made at
    ``connected_at`` when given: the account's first requirements were seen then)."""
    now = utcnow()
    rows: list[ConnectionAttempt] = []
    start = now - timedelta(days=rng.randint(5, 89), hours=rng.randint(0, 23))
    tries = rng.choice([0, 0, 1, 1, 2])
    if connected_at is not None:
        start = connected_at - timedelta(hours=(tries * 40) + 1)
    for _ in range(tries):
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
        start += timedelta(hours=rng.randint(2, 36))
    if connected and freelancer.stripe_account_id:
        finished = start + timedelta(minutes=rng.randint(2, 45))
        if connected_at is not None:
            start, finished = connected_at - (finished - start), connected_at
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
    link = create_connect_link(factory, gateway=gateway, settings=settings, operator=ADMIN,
                               freelancer_id=freelancer_id, method=ConnectionMethod.OAUTH)
    result = handle_oauth_callback(factory, gateway=gateway, params=consent(link.url))
    if not result.success or result.account_id is None:
        raise ConnectOpsError(f"demo OAuth connection failed: {result.reason}")
    if confirm:
        own = Operator(username=f"freelancer:{freelancer_id}", roles=frozenset({Role.FREELANCER}))
        with factory.begin() as session:
            confirm_destination(session, operator=own, freelancer_id=freelancer_id,
                                account_id=result.account_id)


def _backdate_oauth_connection(factory: sessionmaker[Session], freelancer_id: int,
                               days_ago: int) -> None:
    """The real OAuth dance ran just now; the demo's story has it days ago (like the payouts)."""
    moment = utcnow() - timedelta(days=days_ago)
    with factory.begin() as session:
        session.execute(update(Freelancer).where(Freelancer.id == freelancer_id)
                        .values(connected_at=moment))
        session.execute(update(ConnectionAttempt).where(
            ConnectionAttempt.freelancer_id == freelancer_id).values(
            started_at=moment - timedelta(minutes=4), finished_at=moment))


def _connect_express(factory: sessionmaker[Session], gateway: StripeGateway,
                     emulator: Emulator, settings: Settings, *, freelancer_id: int, email: str,
                     country: str, state: str, index: int) -> datetime:
    account = gateway.create_express_account(
        email=email, country=country, metadata={"freelancer_id": str(freelancer_id)},
        idempotency_key=f"connectops-demo-seed-{freelancer_id}",
    )
    connected_at = utcnow() - timedelta(days=connected_days_ago(state, index), hours=index % 11)
    if state != "pending_new":
        # What Stripe asked for when the freelancer connected, before they finished onboarding:
        # the mirror saw it then, so the timeline shows requirements changing over time.
        first = gateway.retrieve_account(account.id).data
        with factory.begin() as session:
            upsert_account(session, account=first, fetched_at=connected_at)
            freelancer = session.get(Freelancer, freelancer_id)
            assert freelancer is not None
            freelancer.stripe_account_id = account.id
            freelancer.connection_method = ConnectionMethod.ACCOUNT_LINK.value
    _apply_state(emulator, settings, account.id, state, index)
    fetched_at = utcnow()
    current = gateway.retrieve_account(account.id).data
    with factory.begin() as session:
        upsert_account(session, account=current, fetched_at=fetched_at)
        freelancer = session.get(Freelancer, freelancer_id)
        assert freelancer is not None
        freelancer.stripe_account_id = account.id
        freelancer.connection_method = ConnectionMethod.ACCOUNT_LINK.value
    return connected_at


def connected_days_ago(state: str, index: int) -> int:
    """When the freelancer connected: payees 50-80 days ago (their payouts and bank payouts
    come after, so each freelancer's timeline reads in order), the others within 90 days."""
    return 50 + 2 * index if state == "active" else 6 + (index * 7) % 80


def _payout_history(factory: sessionmaker[Session], gateway: StripeGateway, emulator: Emulator,
                    settings: Settings, payees: list[int], rng: random.Random) -> int:
    """About 90 days of payouts, made in the past on the emulator's clock, ledger to match
    (each after its payee connected)."""
    made = 0
    with factory() as session:
        since = {f.id: f.connected_at for f in session.scalars(
            select(Freelancer).where(Freelancer.id.in_(payees)))}
    now = utcnow()
    try:
        for number in range(len(payees) * 3):
            freelancer_id = payees[number % len(payees)]
            connected = since.get(freelancer_id) or now - timedelta(days=89)
            days = max(2, min(88, (now - connected).days - 1))
            offset = -rng.randint(1, days) * DAY - rng.randint(0, DAY // 2)
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
                status = session.get_one(Payout, payout_id).status
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


def _reversals(factory: sessionmaker[Session], gateway: StripeGateway,
               settings: Settings) -> int:
    """A partial and a full reversal of small paid payouts, and a large one awaiting approval."""
    with factory() as session:
        paid = list(session.scalars(select(Payout).where(Payout.status == "paid")
                                    .order_by(Payout.id)))
    large = [p for p in paid
             if p.amount_minor >= limits_for(settings, p.currency).approval_threshold_minor]
    small = [p for p in paid if p not in large]
    plans = [(small[:1], "half", "Invoice paid twice: half was already settled by card"),
             (small[1:2], None, "Job cancelled by the client; fee refunded"),
             (large[:1], None, "Duplicate invoice: reverse it in full (needs a second person)")]
    made = 0
    for chosen, share, reason in plans:
        for payout in chosen:
            amount = None
            if share is not None:  # half, in whole units of the currency
                unit = 10 ** wire_exponent(payout.currency)
                amount = str(to_decimal(Money(payout.amount_minor // 2 // unit * unit,
                                              payout.currency)))
            reverse_payout(factory, gateway=gateway, operator=ADMIN, payout_id=payout.id,
                           amount=amount, reason=reason, settings=settings,
                           client_request_token=f"demo-seed-reversal-{payout.id}")
            made += 1
    return made


#: (failure code, or None for paid) of each bank payout a payee's account makes, per payee.
BANK_PLAN: tuple[tuple[str | None, ...], ...] = (
    (None, "account_closed", "account_closed"),
    (None, None, "invalid_account_number"),
    ("no_account", None),                       # failed, then fixed: paid since
    (None, "bank_account_restricted"),
    (None, None, None),
)


def _currency_of(factory: sessionmaker[Session], freelancer_id: int) -> tuple[str, str]:
    with factory() as session:
        freelancer = session.get(Freelancer, freelancer_id)
        assert freelancer is not None and freelancer.stripe_account_id
        mirror = get_account(session, stripe_id=freelancer.stripe_account_id)
        return freelancer.stripe_account_id, (mirror.default_currency if mirror else None) or "usd"


def _bank_payouts(factory: sessionmaker[Session], gateway: StripeGateway, emulator: Emulator,
                  settings: Settings, payees: list[int]) -> int:
    """Payees' own payouts to their bank over the last weeks, some refused by the bank.

    Made on the emulator (each account's balance topped up, payouts settled paid or failed
    through the control API), then their ``payout.*`` events are read back from the emulator
    and applied by the same handler the Connect webhook runs (``lib.bank_payouts``): the demo
    has them whether or not the companion received the webhooks (it ignores repeats).
    """
    assert settings.stripe_secret_key is not None
    key = settings.stripe_secret_key.get_secret_value()
    previous = emulator.http.get("/_emulator/config").json().get("payout_settle_seconds", 0)
    emulator.http.post("/_emulator/config", json={"payout_settle_seconds": 10 * 365 * DAY})
    accounts: list[str] = []
    failed = 0
    try:
        for n, outcomes in enumerate(BANK_PLAN):
            if n >= len(payees):
                break
            account_id, currency = _currency_of(factory, payees[n])
            accounts.append(account_id)
            for m, code in enumerate(outcomes):
                emulator.set_clock_offset(-(40 - 12 * m - n) * DAY)
                emulator.http.post("/_emulator/balance", json={
                    "amount": 60_000, "currency": currency, "mode": "add",
                    "account": account_id}).raise_for_status()
                created = emulator.http.post(
                    "/v1/payouts", data={"amount": str(40_000 + 1_000 * n), "currency": currency},
                    headers={"Authorization": f"Bearer {key}", "Stripe-Account": account_id})
                created.raise_for_status()
                payout_id = created.json()["id"]
                emulator.set_clock_offset(-(40 - 12 * m - n) * DAY + 2 * DAY)
                if code is None:
                    emulator.http.post(f"/_emulator/payouts/{payout_id}/pay").raise_for_status()
                else:
                    emulator.http.post(f"/_emulator/payouts/{payout_id}/fail",
                                       json={"failure_code": code}).raise_for_status()
                    failed += 1
    finally:
        emulator.set_clock_offset(0)
        emulator.http.post("/_emulator/config", json={"payout_settle_seconds": previous})
    for account_id in accounts:
        events = emulator.http.get("/v1/events", params={"type": "payout.*", "limit": 100},
                                   headers={"Authorization": f"Bearer {key}",
                                            "Stripe-Account": account_id})
        events.raise_for_status()
        for event in sorted(events.json()["data"], key=lambda e: (e["created"], e["id"])):
            apply_payout_event(factory, gateway, event)
    return failed


def _committed(factory: sessionmaker[Session], currency: str) -> int:
    with factory() as session:
        return int(session.scalar(
            select(func.coalesce(func.sum(Payout.amount_minor), 0)).where(
                Payout.currency == currency,
                Payout.status.in_([PayoutStatus.PENDING_APPROVAL.value,
                                   PayoutStatus.PENDING.value]))) or 0)


def _funding_states(factory: sessionmaker[Session], emulator: Emulator, settings: Settings,
                    payees: list[int]) -> None:
    """The Funding page's three states: USD covered, EUR short until pending funds arrive in
    three days, GBP short with nothing pending (funds must be added)."""
    by_currency: dict[str, int] = {}
    for payee in payees:
        by_currency.setdefault(_currency_of(factory, payee)[1], payee)
    now = int(utcnow().timestamp())
    for currency, amount, pending in (("eur", "2400.00", True), ("gbp", "1800.00", False)):
        freelancer_id = by_currency.get(currency)
        if freelancer_id is None:
            continue
        with factory.begin() as session:
            # Above the approval threshold: it waits for a second operator.
            request_payout(session, operator=ADMIN, freelancer_id=freelancer_id, amount=amount,
                           currency=currency, description="Quarterly bonus (awaiting approval)",
                           client_request_token=f"demo-seed-funding-{currency}",
                           settings=settings)
        committed = _committed(factory, currency)
        short = 150_000 if pending else 90_000
        emulator.http.post("/_emulator/balance", json={
            "amount": max(0, committed - short), "currency": currency,
            "mode": "set"}).raise_for_status()
        if pending:
            emulator.http.post("/_emulator/balance", json={
                "amount": short + 50_000, "currency": currency, "mode": "add", "pending": True,
                "available_on": now + 3 * DAY}).raise_for_status()


def seed(settings: Settings) -> bool:
    """Seed once; False when the database already has freelancers."""
    engine = make_engine(settings.database_url)
    try:
        return seed_with(make_session_factory(engine), StripeGateway(settings), settings)
    finally:
        engine.dispose()


def seed_with(factory: sessionmaker[Session], gateway: StripeGateway, settings: Settings) -> bool:
    """:func:`seed` through the caller's session factory and gateway."""
    assert settings.stripe_api_base is not None
    emulator = Emulator(settings.stripe_api_base)
    try:
        return _seed(settings, factory, gateway, emulator)
    finally:
        emulator.http.close()  # its sockets, not left to the garbage collector (ResourceWarning)


def _seed(settings: Settings, factory: sessionmaker[Session], gateway: StripeGateway,
          emulator: Emulator) -> bool:
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
        connected_at = None
        if oauth:
            _connect_through_oauth(factory, gateway, settings, freelancer_id, confirm=not held)
            _backdate_oauth_connection(factory, freelancer_id,
                                       connected_days_ago(state, index))
        elif state != "not_connected":
            connected_at = _connect_express(factory, gateway, emulator, settings,
                                            freelancer_id=freelancer_id, email=email,
                                            country=country, state=state, index=index)
        if state == "active" and not held:
            payees.append(freelancer_id)
        with factory.begin() as session:
            freelancer = session.get(Freelancer, freelancer_id)
            assert freelancer is not None
            history = _attempts(rng, freelancer, connected=state != "not_connected" and not oauth,
                                connected_at=connected_at)
            session.add_all(history)
    made = _payout_history(factory, gateway, emulator, settings, payees, rng)
    _reversals(factory, gateway, settings)
    failed = _bank_payouts(factory, gateway, emulator, settings, payees)
    _funding_states(factory, emulator, settings, payees)
    logger.info("seeded %d freelancers (%d payable), %d payouts and %d failed bank payouts",
                len(states), len(payees), made, failed)
    seed_messages(factory)  # alert rules, a first check, a few outreach emails (issue 20)
    return True


def main() -> int:
    # Its own short log format (a step of `make demo`), not the services' (lib.logging_setup).
    logging.basicConfig(level=logging.INFO, format="seed: %(message)s")
    for noisy in ("stripe", "httpx", "httpcore", "lib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return run_command("seed", _run, require=("STRIPE_SECRET_KEY", "STRIPE_API_BASE"),
                       log=False)


def _run(cli: CommandContext) -> int:
    if not cli.settings.uses_local_stripe:
        say("seed", "demo data goes only to the local emulator (STRIPE_API_BASE).")
        return EXIT_CONFIGURATION
    try:
        seeded = seed_with(cli.factory, cli.gateway, cli.settings)
    except httpx.HTTPError as exc:
        say("seed", exc)
        return EXIT_FAILED
    logger.info("demo data %s", "created" if seeded else "already present; nothing to do")
    return 0


if __name__ == "__main__":
    sys.exit(main())
