"""A realistic synthetic database at scale, through the real models, in minutes.

``python -m bench.generate --accounts 100000 --attempts 1000000 --payouts 200000
--database-url URL [--seed N]`` fills a migrated database with the demo seed's state mix
(``scripts/seed_demo.py``) spread over two years:

- freelancers in every account state (ACTIVE, RESTRICTED with deadlines soon and later,
  RESTRICTED by future requirements, PENDING new and in verification, DISABLED past due,
  REJECTED, NOT_CONNECTED — some of those with the stale mirror of an account they left), their
  mirrors built by ``lib.accounts.account_row_values`` so status, counts and deadlines are
  derived exactly as in production, then the requirement index rebuilt from them;
- connection attempts with every outcome and failure reason (each connected freelancer's last
  one succeeded with its account);
- payouts in every ledger state, with approvals, rejections, bulk batches and reversals;
- webhook events of every stream and status, and audit entries of every kind of action.

Why bulk Core-style inserts
    One ``session.execute(insert(Model), rows)`` per batch of 5,000 rows is the ORM's bulk path:
    no identity map, no per-object flush, parameters sent in ``executemany`` batches. Ids are
    assigned here, so attempts and payouts reference freelancers without reading them back; on
    PostgreSQL the sequences are moved past them afterwards (the dashboard writes audit entries).
    SQLite loads in one transaction (one fsync); PostgreSQL commits each batch (no hour-long
    transaction holding the WAL) and is VACUUM ANALYZEd at the end, as autovacuum would soon do.

Reusing a database
    What was generated (sizes, seed, alembic head, when) is recorded: for SQLite in a JSON
    sidecar next to the file (``<file>.bench.json``), for PostgreSQL as the database's COMMENT.
    :func:`ensure_database` regenerates only when that record is missing or differs, or when the
    rows counted no longer agree with it.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from bench.common import fresh_database
from emulator.account_state import INDIVIDUAL_DUE, INDIVIDUAL_EVENTUALLY
from lib import requirement_index
from lib.accounts import account_row_values
from lib.connection_attempts import FailureReason
from lib.db import make_engine, make_session_factory
from lib.migrate import alembic_config, upgrade
from lib.models import (
    AttemptOutcome,
    AuditLog,
    Base,
    ConnectedAccount,
    ConnectionAttempt,
    ConnectionMethod,
    Freelancer,
    Payout,
    PayoutReversal,
    PayoutStatus,
    PayoutType,
    WebhookEvent,
    WebhookStatus,
)
from lib.payouts.ledger import payout_idempotency_key
from lib.payouts.reversal import reversal_idempotency_key

logger = logging.getLogger("bench.generate")

BATCH = 5_000
SPAN = timedelta(days=730)
DAY = timedelta(days=1)
#: Bumped whenever the generator makes different rows from the same sizes and seed.
MARKER_VERSION = 3
#: The payout approval threshold's default (lib.settings): rows at or above it were approved.
APPROVAL_THRESHOLD_MINOR = 100_000

#: (weight, state): the demo seed's PLAN (scripts/seed_demo.py), 48 freelancers.
STATE_MIX: tuple[tuple[int, str], ...] = (
    (16, "active"), (5, "restricted_deadline"), (3, "restricted_future"), (4, "pending_new"),
    (2, "pending_verification"), (4, "disabled_past_due"), (2, "rejected"),
    (12, "not_connected"),
)
#: Of the NOT_CONNECTED freelancers, the share who were connected once (a stale mirror remains).
DISCONNECTED_SHARE = 0.25

FIRST = ["Ada", "Grace", "Alan", "Katherine", "Linus", "Margaret", "Dennis", "Barbara", "Ken",
         "Frances", "Tim", "Radia", "Guido", "Hedy", "John", "Sophie", "Donald", "Shafi",
         "Edsger", "Annie", "Niklaus", "Jean", "Yukihiro", "Mary", "Leslie", "Fran", "Whitfield",
         "Adele", "Butler", "Carol", "Dana", "Evelyn", "Fernando", "Gordon", "Ivan", "Joan",
         "Karen", "Lynn", "Mitchell", "Nancy", "Ole", "Peter", "Rasmus", "Silvio", "Tony",
         "Ursula", "Vint", "Wendy", "Xavier", "Yoshua", "Zhang"]
LAST = ["Lovelace", "Hopper", "Turing", "Johnson", "Torvalds", "Hamilton", "Ritchie", "Liskov",
        "Thompson", "Allen", "Berners-Lee", "Perlman", "van Rossum", "Lamarr", "Backus",
        "Wilson", "Knuth", "Goldwasser", "Dijkstra", "Easley", "Wirth", "Sammet", "Matsumoto",
        "Keller", "Lamport", "Diffie", "Goldberg", "Lampson", "Kay", "Estrin", "Corbato",
        "Sutherland", "Hoare", "Clarke", "Kahan", "Dahl", "Nygaard", "Naur", "Milner", "Scott",
        "Rabin", "Karp", "Cook", "Tarjan", "Hellman", "Shamir", "Adleman", "Cerf", "Kahn",
        "Hall", "Brooks", "Engelbart", "Floyd", "Hennessy", "Patterson", "Stroustrup"]
COUNTRIES = ["US", "US", "US", "GB", "FR", "DE", "CA", "AU", "IE", "NL"]
CURRENCY = {"US": "usd", "GB": "gbp", "CA": "cad", "AU": "aud"}

#: Codes Stripe asks restricted accounts for (currently due, with a deadline).
RESTRICTED_CODES = ["individual.verification.document", "individual.id_number",
                    "individual.verification.additional_document", "individual.ssn_last_4",
                    "individual.address.line1", "individual.phone", "business_profile.url",
                    "business_profile.product_description", "external_account"]
#: Codes that stop payouts when past due.
PAST_DUE_CODES = ["external_account", "tos_acceptance.date", "individual.verification.document",
                  "individual.id_number", "individual.dob.day", "individual.dob.month",
                  "individual.dob.year"]
FUTURE_CODES = ["individual.verification.additional_document", "individual.id_number",
                "business_profile.mcc"]
EVENTUALLY_CODES = ["individual.id_number", "individual.verification.document",
                    "individual.verification.additional_document"]
REJECT_REASONS = ["rejected.fraud", "rejected.terms_of_service", "rejected.listed",
                  "rejected.other"]

FAILURES: tuple[tuple[int, FailureReason], ...] = (
    (40, FailureReason.ACCESS_DENIED), (15, FailureReason.INVALID_STATE),
    (15, FailureReason.EXCHANGE_FAILED), (10, FailureReason.SERVER_ERROR),
    (10, FailureReason.MISSING_PARAMETERS), (10, FailureReason.ACCOUNT_ALREADY_CONNECTED),
)
#: Outcomes of the attempts beyond each connected freelancer's final, successful one.
HISTORY_OUTCOMES: tuple[tuple[int, AttemptOutcome], ...] = (
    (35, AttemptOutcome.SUCCEEDED), (35, AttemptOutcome.FAILED), (30, AttemptOutcome.ABANDONED),
    (0.01, AttemptOutcome.PENDING),
)
#: Ledger states by weight; the in-flight ones are recent (they do not linger for months).
PAYOUT_STATES: tuple[tuple[float, PayoutStatus], ...] = (
    (90.0, PayoutStatus.PAID), (3.0, PayoutStatus.FAILED), (1.5, PayoutStatus.REVERSED),
    (1.5, PayoutStatus.REJECTED), (1.0, PayoutStatus.PENDING_APPROVAL),
    (0.5, PayoutStatus.PENDING), (0.2, PayoutStatus.SUBMITTED), (0.1, PayoutStatus.UNKNOWN),
)
IN_FLIGHT = {PayoutStatus.PENDING_APPROVAL, PayoutStatus.PENDING, PayoutStatus.SUBMITTED,
             PayoutStatus.UNKNOWN}
#: Payouts of the last RECENT days may still be in flight; older ones have settled (a backlog
#: of approvals is days of payouts, not a share of two years' ledger).
RECENT = timedelta(days=3)
RECENT_STATES: tuple[tuple[float, PayoutStatus], ...] = (
    (80.0, PayoutStatus.PAID), (3.0, PayoutStatus.FAILED), (1.5, PayoutStatus.REJECTED),
    (10.0, PayoutStatus.PENDING_APPROVAL), (3.0, PayoutStatus.PENDING),
    (2.0, PayoutStatus.SUBMITTED), (0.5, PayoutStatus.UNKNOWN),
)
PAYOUT_ERRORS = [("balance_insufficient", "Insufficient funds in the platform balance."),
                 ("account_invalid", "The destination account cannot receive transfers."),
                 ("transfers_not_allowed", "Transfers are not enabled for this account.")]
#: (weight, type, endpoint) of the webhook events Stripe sends this platform.
EVENT_TYPES: tuple[tuple[int, str, str], ...] = (
    (45, "account.updated", "connect"), (10, "capability.updated", "connect"),
    (25, "transfer.created", "platform"), (1, "transfer.reversed", "platform"),
    (12, "payout.paid", "connect"), (1, "payout.failed", "connect"),
    (3, "account.application.authorized", "connect"),
    (1, "account.application.deauthorized", "connect"), (2, "balance.available", "platform"),
)
EVENT_STATES: tuple[tuple[float, WebhookStatus], ...] = (
    (97.0, WebhookStatus.PROCESSED), (2.5, WebhookStatus.IGNORED), (0.35, WebhookStatus.FAILED),
    (0.05, WebhookStatus.DEAD), (0.08, WebhookStatus.RECEIVED), (0.02, WebhookStatus.PROCESSING),
)
#: A dead letter used every attempt (``WEBHOOK_MAX_ATTEMPTS``' default).
DEAD_AFTER = 10
OPERATORS = [("admin", "admin"), ("finance", "finance"), ("manager", "manager")] + [
    (f"ops{n:02d}", "admin" if n % 3 == 0 else "finance") for n in range(1, 13)]


@dataclass(frozen=True, slots=True)
class Sizes:
    """How many of each thing to generate (freelancers are ``accounts``)."""

    accounts: int
    attempts: int
    payouts: int
    webhook_events: int
    audit_entries: int

    @classmethod
    def scaled(cls, accounts: int, *, attempts: int | None = None, payouts: int | None = None,
               webhook_events: int | None = None, audit_entries: int | None = None) -> Sizes:
        """The issue's proportions (10 attempts and 2 payouts per account) unless given."""
        attempts = 10 * accounts if attempts is None else attempts
        payouts = 2 * accounts if payouts is None else payouts
        return cls(
            accounts=accounts, attempts=attempts, payouts=payouts,
            webhook_events=2 * accounts if webhook_events is None else webhook_events,
            audit_entries=(2 * payouts + attempts // 2) if audit_entries is None
            else audit_entries,
        )


@dataclass(slots=True)
class _Freelancer:
    """What later tables need to know about a generated freelancer."""

    id: int
    state: str
    created_at: datetime
    account_id: str | None
    currency: str
    connected_at: datetime | None
    method: str | None


class _Picker:
    """Weighted choice with precomputed cumulative weights (random.choices re-sums each call)."""

    def __init__(self, weighted: Sequence[tuple[float, Any]]) -> None:
        self.values = [value for _, value in weighted]
        total = 0.0
        self.cumulative: list[float] = []
        for weight, _ in weighted:
            total += weight
            self.cumulative.append(total)

    def __call__(self, rng: random.Random, number: int = 0) -> Any:
        """The ``number``-th pick: the first ones cycle through every value once (so even a
        tiny database has each kind of row), the rest follow the weights."""
        if 1 <= number <= len(self.values):
            return self.values[number - 1]
        return rng.choices(self.values, cum_weights=self.cumulative)[0]


def _moment(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """A time in [start, end], denser towards ``end`` (a marketplace that grows)."""
    seconds = max((end - start).total_seconds(), 0.0)
    return start + timedelta(seconds=seconds * math.sqrt(rng.random()))


def _batches(rows: Iterator[dict[str, Any]], size: int = BATCH) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# ---- accounts ------------------------------------------------------------------------------------


def _requirements(**lists: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"alternatives": [], "current_deadline": None, "currently_due": [],
                            "disabled_reason": None, "errors": [], "eventually_due": [],
                            "past_due": [], "pending_verification": []}
    base.update(lists)
    return base


def account_dict(rng: random.Random, *, account_id: str, state: str, country: str,
                 account_type: str, created: datetime, now: datetime) -> dict[str, Any]:
    """A Stripe account object (the emulator's shape) in one of :data:`STATE_MIX`'s states."""
    account: dict[str, Any] = {
        "id": account_id, "object": "account", "type": account_type, "country": country,
        "email": f"{account_id}@freelancers.example", "livemode": False,
        "default_currency": CURRENCY.get(country, "eur"), "business_type": "individual",
        "charges_enabled": True, "payouts_enabled": True, "details_submitted": True,
        "capabilities": {"transfers": "active"}, "created": int(created.timestamp()),
        "requirements": _requirements(), "future_requirements": _requirements(),
        "metadata": {}, "tos_acceptance": {"date": int(created.timestamp())},
    }
    stamp = int(now.timestamp())
    if state == "active":
        if rng.random() < 0.2:  # things Stripe will ask for later, no deadline yet
            account["requirements"]["eventually_due"] = rng.sample(EVENTUALLY_CODES, 1)
    elif state == "restricted_deadline":
        due = rng.sample(RESTRICTED_CODES, rng.randint(1, 3))
        account["requirements"].update(
            currently_due=due, eventually_due=sorted(set(due) | set(rng.sample(
                EVENTUALLY_CODES, rng.randint(0, 2)))),
            current_deadline=stamp + int(DAY.total_seconds() * rng.uniform(0.5, 60)))
    elif state == "restricted_future":
        due = rng.sample(FUTURE_CODES, rng.randint(1, 2))
        account["future_requirements"].update(
            currently_due=due, eventually_due=list(due),
            current_deadline=stamp + int(DAY.total_seconds() * rng.uniform(30, 120)))
    elif state == "pending_new":
        due = list(INDIVIDUAL_DUE)
        account.update(details_submitted=False, charges_enabled=False, payouts_enabled=False,
                       capabilities={"transfers": "inactive"}, tos_acceptance={"date": None})
        account["requirements"].update(
            currently_due=due, past_due=list(due),
            eventually_due=sorted(due + INDIVIDUAL_EVENTUALLY),
            disabled_reason="requirements.past_due")
    elif state == "pending_verification":
        account["requirements"].update(
            pending_verification=rng.sample(["individual.verification.document",
                                             "individual.id_number"], rng.randint(1, 2)))
        if rng.random() < 0.5:
            account["capabilities"] = {"transfers": "pending"}
    elif state == "disabled_past_due":
        due = rng.sample(PAST_DUE_CODES, rng.randint(1, 3))
        account.update(payouts_enabled=False, capabilities={"transfers": "inactive"})
        account["requirements"].update(
            currently_due=due, past_due=list(due), eventually_due=list(due),
            disabled_reason="requirements.past_due",
            current_deadline=stamp - int(DAY.total_seconds() * rng.uniform(1, 90)))
    elif state == "rejected":
        account.update(payouts_enabled=False, charges_enabled=False,
                       capabilities={"transfers": "inactive"})
        account["requirements"]["disabled_reason"] = rng.choice(REJECT_REASONS)
    else:
        raise ValueError(f"unknown state {state!r}")
    return account


def _people(rng: random.Random, count: int, now: datetime,
            seed: int) -> tuple[list[_Freelancer], list[dict[str, Any]], list[dict[str, Any]]]:
    """(plan, freelancer rows, account rows) for ``count`` freelancers in the demo's mix."""
    pick_state = _Picker(STATE_MIX)
    plan: list[_Freelancer] = []
    freelancers: list[dict[str, Any]] = []
    accounts: list[dict[str, Any]] = []
    # Ids follow sign-up time, as an autoincrement id does.
    sign_ups = sorted(_moment(rng, now - SPAN, now - timedelta(hours=1)) for _ in range(count))
    for number in range(1, count + 1):
        state = pick_state(rng, number)
        created = sign_ups[number - 1]
        country = rng.choice(COUNTRIES)
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        email = f"{name.lower().replace(' ', '.').replace('-', '')}.{number}@freelancers.example"
        row: dict[str, Any] = {"id": number, "name": name, "email": email, "country": country,
                               "created_at": created, "stripe_account_id": None,
                               "connection_method": None, "connected_at": None,
                               "disconnected_at": None}
        account_id: str | None = None
        method: str | None = None
        connected_at: datetime | None = None
        mirror_state = state
        if state == "not_connected" and rng.random() < DISCONNECTED_SHARE:
            mirror_state = rng.choice(["active", "restricted_deadline", "disabled_past_due"])
        if mirror_state != "not_connected":
            account_id = f"acct_{seed % 10_000:04d}{number:012d}"
            oauth = mirror_state == "active" and rng.random() < 0.25
            method = (ConnectionMethod.OAUTH if oauth else ConnectionMethod.ACCOUNT_LINK).value
            connected_at = min(created + timedelta(minutes=rng.uniform(2, 60 * 24 * 14)),
                               now - timedelta(minutes=5))
            fetched = now - timedelta(seconds=rng.uniform(60, DAY.total_seconds()))
            accounts.append(account_row_values(
                account_dict(rng, account_id=account_id, state=mirror_state, country=country,
                             account_type="standard" if oauth else "express",
                             created=connected_at, now=now),
                fetched_at=fetched))
            if state == "not_connected":
                row["disconnected_at"] = _moment(rng, connected_at, now)
            else:
                row.update(stripe_account_id=account_id, connection_method=method,
                           connected_at=connected_at)
        freelancers.append(row)
        plan.append(_Freelancer(
            id=number, state=state, created_at=created,
            account_id=account_id if state != "not_connected" else None,
            currency=CURRENCY.get(country, "eur"), connected_at=connected_at, method=method))
    for index, values in enumerate(accounts, start=1):
        values["id"] = index
    return plan, freelancers, accounts


# ---- connection attempts -------------------------------------------------------------------------


def _attempts(rng: random.Random, plan: list[_Freelancer], count: int,
              now: datetime) -> Iterator[dict[str, Any]]:
    """Each connected freelancer's successful attempt, then a history of every outcome."""
    pick_reason = _Picker(FAILURES)
    pick_outcome = _Picker(HISTORY_OUTCOMES)
    number = 0
    for person in plan:
        if number >= count:
            return
        if person.connected_at is None or person.method is None:
            continue
        number += 1
        took = timedelta(minutes=rng.uniform(2, 45))
        started = person.connected_at - took
        link = person.method == ConnectionMethod.ACCOUNT_LINK.value
        yield {"id": number, "freelancer_id": person.id, "method": person.method,
               "issued_by": rng.choice(OPERATORS)[0], "stripe_account_id": person.account_id,
               "started_at": started,
               "link_expires_at": started + timedelta(minutes=5) if link else None,
               "returned_at": person.connected_at if link else None,
               "finished_at": person.connected_at, "outcome": AttemptOutcome.SUCCEEDED.value,
               "failure_reason": None}
    history = failures = 0
    signed_up = [p.created_at for p in plan]  # sorted: ids follow sign-up time
    while number < count:
        number += 1
        history += 1
        # The attempt's time follows the marketplace's growth; then someone signed up by then.
        started = _moment(rng, now - SPAN, now)
        person = plan[rng.randrange(max(1, bisect.bisect_right(signed_up, started)))]
        started = max(started, person.created_at)
        method = rng.choice([ConnectionMethod.ACCOUNT_LINK.value] * 3
                            + [ConnectionMethod.OAUTH.value])
        link = method == ConnectionMethod.ACCOUNT_LINK.value
        outcome: AttemptOutcome = pick_outcome(rng, history)
        if outcome is AttemptOutcome.PENDING:  # issued just now, not back yet
            started = now - timedelta(minutes=rng.uniform(0.5, 25))
        elif now - started < timedelta(minutes=30) and rng.random() < 0.5:
            outcome = AttemptOutcome.PENDING
        reason: str | None = None
        finished: datetime | None = None
        returned: datetime | None = None
        account: str | None = None
        if outcome is AttemptOutcome.SUCCEEDED:
            finished = started + timedelta(minutes=rng.uniform(2, 45))
            returned = finished if link else None
            account = f"acct_hist{number:011d}"
        elif outcome is AttemptOutcome.FAILED:
            failures += 1
            reason = pick_reason(rng, failures).value
            finished = started + timedelta(minutes=rng.uniform(0.5, 30))
        elif outcome is AttemptOutcome.ABANDONED:
            reason = FailureReason.ABANDONED.value
            finished = started + timedelta(hours=rng.uniform(1, 48))
        yield {"id": number, "freelancer_id": person.id, "method": method,
               "issued_by": rng.choice(OPERATORS)[0], "stripe_account_id": account,
               "started_at": started,
               "link_expires_at": started + timedelta(minutes=5) if link else None,
               "returned_at": returned, "finished_at": finished, "outcome": outcome.value,
               "failure_reason": reason}


# ---- payouts -------------------------------------------------------------------------------------


def _amount(rng: random.Random, status: PayoutStatus) -> int:
    if status in {PayoutStatus.PENDING_APPROVAL, PayoutStatus.REJECTED}:
        return rng.randrange(APPROVAL_THRESHOLD_MINOR, 2_000_000, 100)
    # Log-uniform from 5.00 to 5,000.00: many small invoices, a few large ones.
    return int(math.exp(rng.uniform(math.log(500), math.log(500_000))))


def _payouts(rng: random.Random, plan: list[_Freelancer], count: int, now: datetime,
             seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(payout rows, reversal rows): mostly to ACTIVE freelancers, every ledger state."""
    connected = [p for p in plan if p.connected_at is not None and p.account_id is not None]
    payees = [p for p in connected if p.state == "active"] or connected
    if not connected:
        return [], []
    pick_state = _Picker(PAYOUT_STATES)
    pick_settled = _Picker([(w, s) for w, s in PAYOUT_STATES if s not in IN_FLIGHT])
    pick_recent = _Picker(RECENT_STATES)
    payouts: list[dict[str, Any]] = []
    reversals: list[dict[str, Any]] = []
    bulk: tuple[str, int] | None = None
    payees.sort(key=lambda p: p.connected_at or now)
    connected.sort(key=lambda p: p.connected_at or now)
    payee_since = [p.connected_at or now for p in payees]
    connected_since = [p.connected_at or now for p in connected]
    for number in range(1, count + 1):
        created = _moment(rng, now - SPAN, now - timedelta(minutes=1))
        if number <= len(PAYOUT_STATES):  # every state once, even in a tiny database
            status: PayoutStatus = pick_state(rng, number)
            if status in IN_FLIGHT:
                created = now - timedelta(seconds=rng.uniform(60, RECENT.total_seconds()))
        elif now - created < RECENT:
            status = pick_recent(rng)
        else:
            status = pick_settled(rng)
        # Someone connected by then: the ledger grows with the marketplace.
        people, since = (payees, payee_since) if rng.random() < 0.85 else (
            connected, connected_since)
        person = people[rng.randrange(max(1, bisect.bisect_right(since, created)))]
        assert person.connected_at is not None
        created = max(created, person.connected_at + timedelta(minutes=1))
        amount = _amount(rng, status)
        if bulk is None and rng.random() < 0.004:
            bulk = (hashlib.sha256(f"{seed}-{number}".encode()).hexdigest(), 0)
        payout_type = PayoutType.MANUAL.value
        fingerprint: str | None = None
        bulk_row: int | None = None
        if bulk is not None:
            fingerprint, bulk_row = bulk[0], bulk[1] + 1
            payout_type = PayoutType.BULK.value
            bulk = None if bulk_row >= 50 or rng.random() < 0.02 else (fingerprint, bulk_row)
        operator = rng.choice(OPERATORS)[0]
        approved = amount >= APPROVAL_THRESHOLD_MINOR and status not in {
            PayoutStatus.PENDING_APPROVAL, PayoutStatus.REJECTED}
        sent = status in {PayoutStatus.PAID, PayoutStatus.REVERSED, PayoutStatus.FAILED,
                          PayoutStatus.SUBMITTED, PayoutStatus.UNKNOWN}
        done = status in {PayoutStatus.PAID, PayoutStatus.REVERSED, PayoutStatus.FAILED,
                          PayoutStatus.REJECTED}
        submitted = created + timedelta(seconds=rng.uniform(1, 600)) if sent else None
        completed = (submitted or created) + timedelta(seconds=rng.uniform(1, 5)) if done \
            else None
        error = rng.choice(PAYOUT_ERRORS) if status is PayoutStatus.FAILED else None
        transfer = f"tr_{seed % 10_000:04d}{number:014d}" if status in {
            PayoutStatus.PAID, PayoutStatus.REVERSED} else None
        reversed_minor = 0
        if status is PayoutStatus.REVERSED:
            reversed_minor = amount if rng.random() < 0.7 else max(1, amount // 2)
            reversal_id = len(reversals) + 1
            assert completed is not None
            reversals.append({
                "id": reversal_id, "payout_id": number, "amount_minor": reversed_minor,
                "reason": rng.choice(["Duplicate invoice", "Work disputed", "Paid in error"]),
                "status": "succeeded", "requested_by": operator,
                "idempotency_key": reversal_idempotency_key(reversal_id, f"{number:016x}"),
                "stripe_reversal_id": f"trr_{seed % 10_000:04d}{reversal_id:014d}",
                "created_at": completed + timedelta(days=rng.uniform(0.1, 20)),
                "completed_at": completed + timedelta(days=rng.uniform(0.1, 20), seconds=2),
            })
        payouts.append({
            "id": number, "freelancer_id": person.id, "stripe_account_id": person.account_id,
            "amount_minor": amount, "currency": person.currency,
            "description": f"Invoice {100_000 + number}", "payout_type": payout_type,
            "status": status.value,
            "idempotency_key": payout_idempotency_key(number, f"{seed % 65_536:04x}{number:012x}"),
            "client_request_token": None if fingerprint else f"bench-{seed}-{number}",
            "stripe_transfer_id": transfer,
            "stripe_request_id": f"req_{number:014d}" if sent else None,
            "requested_by": operator,
            "approved_by": "finance" if approved else None,
            "approved_at": created + timedelta(minutes=rng.uniform(5, 600)) if approved else None,
            "rejected_by": "finance" if status is PayoutStatus.REJECTED else None,
            "rejection_reason": "Not matching the invoice" if status is PayoutStatus.REJECTED
            else None,
            "error_code": error[0] if error else None, "error_message": error[1] if error else None,
            "amount_reversed_minor": reversed_minor, "bulk_fingerprint": fingerprint,
            "bulk_row": bulk_row, "created_at": created, "submitted_at": submitted,
            "completed_at": completed, "updated_at": completed or submitted or created,
        })
    return payouts, reversals


# ---- webhook events and audit entries ------------------------------------------------------------


def _events(rng: random.Random, plan: list[_Freelancer], count: int, now: datetime,
            seed: int) -> Iterator[dict[str, Any]]:
    pick_type = _Picker([(w, (t, e)) for w, t, e in EVENT_TYPES])
    pick_state = _Picker(EVENT_STATES)
    accounts = [p.account_id for p in plan if p.account_id] or [None]
    for number in range(1, count + 1):
        event_type, endpoint = pick_type(rng, number)
        status: WebhookStatus = pick_state(rng, number)
        created = _moment(rng, now - SPAN, now)
        waiting = status in {WebhookStatus.RECEIVED, WebhookStatus.PROCESSING}
        if waiting:  # arrived in the last two minutes, not processed yet
            created = now - timedelta(seconds=rng.uniform(1, 120))
        received = created + timedelta(seconds=rng.uniform(0.2, 5))
        account = rng.choice(accounts) if endpoint == "connect" else None
        event_id = f"evt_{seed % 10_000:04d}{number:016d}"
        obj = {"object": event_type.split(".")[0] if not event_type.startswith("account.app")
               else "application", "id": account or f"tr_{number:014d}"}
        failed = status in {WebhookStatus.FAILED, WebhookStatus.DEAD}
        retry_at = received + timedelta(minutes=rng.uniform(1, 60))
        yield {
            "id": number, "stripe_event_id": event_id, "type": event_type, "endpoint": endpoint,
            "account": account, "livemode": False, "stripe_created": created,
            "received_at": received,
            "processed_at": None if waiting or failed
            else received + timedelta(milliseconds=rng.uniform(5, 400)),
            "processing_started_at": None if status is WebhookStatus.RECEIVED else received,
            "status": status.value,
            "attempts": DEAD_AFTER if status is WebhookStatus.DEAD else rng.randint(1, 5)
            if failed else (0 if status is WebhookStatus.RECEIVED else 1),
            "error": "stripe_connection_error: Stripe did not answer while the account was "
                     "re-read (timeout)." if failed else None,
            "next_attempt_at": received if status is WebhookStatus.RECEIVED
            else retry_at if status is WebhookStatus.FAILED else None,
            "lease_expires_at": received + timedelta(minutes=2)
            if status is WebhookStatus.PROCESSING else None,
            "lease_token": f"{number:036d}" if status is WebhookStatus.PROCESSING else None,
            "leased_by": "bench:1:generated" if status is WebhookStatus.PROCESSING else None,
            "payload": {"id": event_id, "object": "event", "type": event_type,
                        "account": account, "api_version": "2025-09-30.clover",
                        "created": int(created.timestamp()), "livemode": False,
                        "pending_webhooks": 1, "data": {"object": obj}},
        }


def _audit(rng: random.Random, plan: list[_Freelancer], count: int,
           now: datetime) -> Iterator[dict[str, Any]]:
    """The actions operators and the companion record, with their usual results."""
    kinds: list[tuple[float, str, str, str]] = [
        (20, "auth.login", "ok", "client"), (2, "auth.login_failed", "failed", "client"),
        (0.2, "auth.login_locked", "refused:locked", "client"), (8, "auth.logout", "ok", "client"),
        (15, "connect.onboarding_link", "issued", "freelancer"),
        (5, "connect.oauth_link", "issued", "freelancer"),
        (10, "connect.oauth_callback", "ok", "freelancer"),
        (8, "connect.onboarding_return", "ok", "freelancer"),
        (1, "connect.disconnect", "ok", "freelancer"),
        (0.5, "connect.deauthorized", "ok", "account"),
        (12, "payout.request", "requested", "payout"), (12, "payout.execute", "ok", "payout"),
        (2, "payout.approve", "ok", "payout"), (0.3, "payout.reject", "rejected", "payout"),
        (0.3, "payout.reverse", "ok", "payout"), (0.2, "payout.reconcile", "ok", "period"),
        (0.5, "payout.bulk_confirm", "finished", "bulk"),
        (0.5, "sync.all_accounts", "ok", "sync"), (1, "sync.refresh_account", "ok", "account"),
        (0.1, "webhook.replay", "ok", "event"),
        (0.3, "authorize.view_payouts", "refused:permission_denied", "page"),
    ]
    pick = _Picker([(w, (a, r, t)) for w, a, r, t in kinds])
    for number in range(1, count + 1):
        action, result, target_kind = pick(rng, number)
        actor, role = rng.choice(OPERATORS)
        person = plan[rng.randrange(len(plan))] if plan else None
        target = {
            "client": f"client:10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            "freelancer": f"freelancer:{person.id}" if person else None,
            "account": (person.account_id or f"acct_gone{number:010d}") if person else None,
            "payout": f"payout:{rng.randint(1, 10 * count)}", "period": "2026-11-01..2026-11-08",
            "bulk": f"bulk:{number:016x}", "sync": None, "event": f"evt_{number:016d}",
            "page": "payouts",
        }[target_kind]
        if target_kind in {"freelancer", "account"} and action.startswith("connect.oauth_call"):
            actor, role = f"freelancer:{person.id if person else 0}", "freelancer"
        yield {
            "id": number, "occurred_at": _moment(rng, now - SPAN, now), "actor": actor,
            "actor_role": role, "action": action, "target": target,
            "input": {"amount": str(rng.randint(5, 5000)), "currency": "usd"}
            if action.startswith("payout.") else {}, "result": result, "detail": None,
            "idempotency_key": None, "stripe_request_id": None,
        }


# ---- loading -------------------------------------------------------------------------------------


def _load(session: Session, model: type[Base], rows: Iterator[dict[str, Any]] | list[
        dict[str, Any]], *, commit_each: bool) -> int:
    written = 0
    started = time.perf_counter()
    for batch in _batches(iter(rows)):
        session.execute(insert(model), batch)
        written += len(batch)
        if commit_each:
            session.commit()
    logger.info("%-20s %9d rows in %6.1f s", model.__tablename__, written,
                time.perf_counter() - started)
    return written


def _reset_sequences(session: Session) -> None:
    """PostgreSQL: move every id sequence past the ids given here (the app inserts after)."""
    for table in Base.metadata.sorted_tables:
        if "id" not in table.c or not table.c.id.primary_key:
            continue
        session.execute(text(
            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
            f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table.name}), false)"))


def generate(engine: Engine, sizes: Sizes, *, seed: int = 7,
             now: datetime | None = None) -> dict[str, int]:
    """Fill an empty, migrated database; returns the rows written per table."""
    moment = now or datetime.now(UTC)
    rng = random.Random(seed)
    postgres = engine.dialect.name == "postgresql"
    factory = make_session_factory(engine)
    counts: dict[str, int] = {}
    started = time.perf_counter()
    with factory() as session:
        if not postgres:
            # The load is one transaction: a bigger page cache keeps the indexes in memory.
            session.execute(text("PRAGMA cache_size=-262144"))
        plan, freelancers, accounts = _people(rng, sizes.accounts, moment, seed)
        counts["connected_accounts"] = _load(session, ConnectedAccount, accounts,
                                             commit_each=postgres)
        counts["freelancers"] = _load(session, Freelancer, freelancers, commit_each=postgres)
        del freelancers, accounts
        index_started = time.perf_counter()
        counts["requirement_codes"] = requirement_index.rebuild(session=session)
        logger.info("requirement_codes rebuilt in %.1f s", time.perf_counter() - index_started)
        if postgres:
            session.commit()
        counts["connection_attempts"] = _load(
            session, ConnectionAttempt, _attempts(rng, plan, sizes.attempts, moment),
            commit_each=postgres)
        payouts, reversals = _payouts(rng, plan, sizes.payouts, moment, seed)
        counts["payouts"] = _load(session, Payout, payouts, commit_each=postgres)
        counts["payout_reversals"] = _load(session, PayoutReversal, reversals,
                                           commit_each=postgres)
        del payouts, reversals
        counts["webhook_events"] = _load(
            session, WebhookEvent, _events(rng, plan, sizes.webhook_events, moment, seed),
            commit_each=postgres)
        counts["audit_log"] = _load(session, AuditLog, _audit(rng, plan, sizes.audit_entries,
                                                              moment), commit_each=postgres)
        if postgres:
            _reset_sequences(session)
        session.commit()
    with engine.connect() as connection:
        if postgres:
            # What autovacuum does soon after a load (PostgreSQL 13+ vacuums insert-only tables
            # too): statistics for the planner and the visibility map index-only scans need.
            connection.execution_options(isolation_level="AUTOCOMMIT").execute(
                text("VACUUM ANALYZE"))
        else:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    logger.info("generated in %.1f s: %s", time.perf_counter() - started, counts)
    return counts


# ---- what was generated --------------------------------------------------------------------------


def alembic_head() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head() or ""


def _database_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _sidecar(url: str) -> Path:
    return Path(f"{make_url(url).database}.bench.json")


def read_marker(engine: Engine) -> dict[str, Any] | None:
    """What :func:`write_marker` recorded for this database, or None."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            comment = connection.execute(text(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                "WHERE datname = current_database()")).scalar()
        raw = comment or ""
    else:
        path = _sidecar(engine.url.render_as_string(hide_password=False))
        raw = path.read_text(encoding="utf-8") if path.exists() else ""
    try:
        marker = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return None
    return marker if isinstance(marker, dict) else None


def write_marker(engine: Engine, marker: dict[str, Any]) -> None:
    payload = json.dumps(marker, sort_keys=True)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            database = connection.execute(text("SELECT current_database()")).scalar_one()
            literal = payload.replace("'", "''")
            connection.exec_driver_sql(f'COMMENT ON DATABASE "{database}" IS \'{literal}\'')
    else:
        _sidecar(engine.url.render_as_string(hide_password=False)).write_text(
            payload + "\n", encoding="utf-8")


def _wanted_marker(sizes: Sizes, seed: int) -> dict[str, Any]:
    return {"version": MARKER_VERSION, "sizes": asdict(sizes), "seed": seed,
            "alembic_head": alembic_head()}


def matches(engine: Engine, sizes: Sizes, seed: int) -> bool:
    """True when this database holds exactly what :func:`generate` would make now."""
    try:
        marker = read_marker(engine)
        if marker is None:
            return False
        wanted = _wanted_marker(sizes, seed)
        if any(marker.get(key) != value for key, value in wanted.items()):
            return False
        if _database_revision(engine) != wanted["alembic_head"]:
            return False
        with engine.connect() as connection:
            freelancers = connection.execute(select(func.count()).select_from(Freelancer)).scalar()
            audit = connection.execute(select(func.max(AuditLog.id))).scalar()
    except (OperationalError, ProgrammingError):
        return False  # no such database or tables yet
    # Later app writes (a login's audit entry) may add rows, never remove generated ones.
    return freelancers == sizes.accounts and (audit or 0) >= sizes.audit_entries


def build(url: str, sizes: Sizes, *, seed: int) -> dict[str, Any]:
    """Generate into the (empty, migrated) database at ``url`` and record what is there."""
    engine = make_engine(url)
    try:
        counts = generate(engine, sizes, seed=seed)
        marker = _wanted_marker(sizes, seed) | {
            "counts": counts, "generated_at": datetime.now(UTC).isoformat(timespec="seconds")}
        write_marker(engine, marker)
    finally:
        engine.dispose()
    return marker


def ensure_database(backend: str, name: str, sizes: Sizes, *, seed: int = 7,
                    log: Callable[[str], None] = logger.info) -> str:
    """The URL of a benchmark database holding ``sizes``; generated only when it does not yet."""
    from bench.common import database_url

    url = database_url(backend, name)
    engine = make_engine(url)
    try:
        reusable = matches(engine, sizes, seed)
    finally:
        engine.dispose()
    if reusable:
        log(f"reusing {backend} database {name} ({sizes.accounts:,} accounts, seed {seed})")
        return url
    log(f"generating {backend} database {name} ({sizes.accounts:,} accounts, seed {seed})…")
    with fresh_database(backend, name) as fresh:
        build(fresh, sizes, seed=seed)
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.generate", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--attempts", type=int)
    parser.add_argument("--payouts", type=int)
    parser.add_argument("--webhook-events", type=int)
    parser.add_argument("--audit-entries", type=int)
    parser.add_argument("--database-url", required=True,
                        help="an empty database, or one this tool generated (it is rebuilt)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--force", action="store_true",
                        help="regenerate even when the database already holds these sizes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="generate: %(message)s")
    sizes = Sizes.scaled(args.accounts, attempts=args.attempts, payouts=args.payouts,
                         webhook_events=args.webhook_events, audit_entries=args.audit_entries)
    if min(asdict(sizes).values()) < 0 or sizes.accounts < 1:
        parser.error("sizes must be positive")
    engine = make_engine(args.database_url)
    try:
        if not args.force and matches(engine, sizes, args.seed):
            logger.info("the database already holds these sizes (seed %d): nothing to do",
                        args.seed)
            return 0
        upgrade(engine)
        with engine.connect() as connection:
            if connection.execute(select(func.count()).select_from(Freelancer)).scalar():
                if read_marker(engine) is None and not args.force:
                    sys.stderr.write("generate: the database has data this tool did not make; "
                                     "use an empty one (or --force to replace it).\n")
                    return 2
                _empty(engine)
        marker = build(args.database_url, sizes, seed=args.seed)
    finally:
        engine.dispose()
    sys.stdout.write(json.dumps(marker, indent=2, sort_keys=True) + "\n")
    return 0


def _empty(engine: Engine) -> None:
    """Drop and recreate every table of a database this tool generated (audit triggers refuse
    DELETE, so its rows cannot be removed one by one)."""
    from lib.migrate import downgrade

    downgrade(engine)
    upgrade(engine)


if __name__ == "__main__":
    sys.exit(main())
