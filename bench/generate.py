"""A realistic synthetic database at scale, through the real models, in minutes.

``python -m bench.generate --accounts 1000000 --database-url URL [--seed N] [--span-days 365]``
(``--attempts``, ``--payouts``, ``--webhook-events``, ``--audit-entries`` override the issue's
proportions of 10 attempts, 2 payouts and 2 events per account) fills a migrated database with
the demo seed's state mix (``scripts/seed_demo.py``) spread over a year (``--span-days``):

- freelancers in every account state (ACTIVE, RESTRICTED with deadlines soon and later,
  RESTRICTED by future requirements, PENDING new and in verification, DISABLED past due,
  REJECTED, NOT_CONNECTED — some of those with the stale mirror of an account they left), their
  mirrors built by ``lib.accounts.account_row_values`` so status, counts and deadlines are
  derived exactly as in production, then the requirement index rebuilt from them;
- connection attempts with every outcome and failure reason (each connected freelancer's last
  one succeeded with its account);
- payouts in every ledger state, with approvals, rejections, bulk batches and reversals;
- webhook events of every stream and status, and audit entries of every kind of action.

Streaming, in bounded memory
    Every stage is a generator of rows, written in batches (5,000 rows on SQLite, 20,000 on
    PostgreSQL); no stage holds more than one batch of row dicts. What later stages need to know
    about each freelancer (sign-up and connection times, state, currency, method, whether
    attached) is kept in compact arrays (:class:`_Plan`, ~27 bytes a freelancer; account ids
    follow from the freelancer id). Sign-up times are stratified so ids follow sign-up time
    without sorting a list of all of them first. At 1,000,000 accounts the process peaked at
    197 MB on PostgreSQL and 1,198 MB on SQLite, where about 1 GB is SQLite's own memory: the
    page cache (:data:`SQLITE_CACHE_KIB`, 512 MiB; ~700 MB resident during the load) and the
    sorter building the indexes at the end, which SQLite bounds by the same setting.

How rows are written
    PostgreSQL: ``COPY … FROM STDIN`` through psycopg 3's ``Cursor.copy`` per table and batch,
    each value passed through its column type's bind processor first (the conversion
    ``insert()`` applies: UTC datetimes, JSONB), one commit per batch (no hour-long transaction
    holding the WAL), ``synchronous_commit`` off for the load. SQLite: one
    ``session.execute(insert(Model), rows)`` (``executemany``) per batch, one transaction per
    stage. On both, the loaded tables' secondary indexes (and PostgreSQL's foreign keys) are
    dropped before the load and recreated after it from the catalog's own definitions
    (``pg_get_indexdef``, ``sqlite_master.sql``), as ``pg_restore`` does: one sorted build instead
    of millions of random B-tree insertions. Primary keys and UNIQUE constraints stay. Ids are
    assigned here, so attempts and payouts reference freelancers without reading them back; on
    PostgreSQL the sequences are moved past them afterwards (the dashboard writes audit
    entries), and the database is VACUUM ANALYZEd at the end, as autovacuum would soon do.
    Account mirrors still come from ``lib.accounts.account_row_values`` and the requirement
    index from ``lib.requirement_index.rebuild``; issue 22's summaries are rebuilt by
    :func:`_after_load`.

Sizes and time
    ``--span-days`` (default 365: "a year of events", issue 22) is how far back everything goes.
    Measured on the 2-core benchmark machine (shared with a test run, ``nice -n 10``), 1,000,000
    accounts (813,092 mirrors, 10,000,000 attempts, 2,000,000 payouts and webhook events,
    9,000,000 audit entries, 5,543,499 requirement rows):

    ============================  ==========  ==========
    stage                         PostgreSQL  SQLite
    ============================  ==========  ==========
    accounts and freelancers          89 s       114 s
    connection attempts              180 s       272 s
    payouts and reversals             65 s        94 s
    webhook events                    62 s        79 s
    audit entries                    109 s       159 s
    indexes and foreign keys         105 s       177 s
    requirement index (lib)          204 s        79 s
    VACUUM ANALYZE / checkpoint       13 s         6 s
    total (wall)                 13 min 47 s  17 min 7 s
    size on disk                      11 GB       11 GB
    ============================  ==========  ==========

    The rows are made at 40,000 to 60,000 a second, mostly Python (the generator's process
    used 490 s of CPU on PostgreSQL, 878 s on SQLite). Before this change the same generator
    took 74 s (PostgreSQL) and 28 s (SQLite) for 20,000 accounts, where it now takes 16 s and
    17 s; at 1,000,000 it would have held every account and freelancer row dict at once.

Reusing a database
    What was generated (sizes, seed, span, alembic head; when, how long it took and the peak
    RSS) is recorded: for SQLite in a JSON sidecar next to the file (``<file>.bench.json``), for
    PostgreSQL as the database's COMMENT. ``bench.pages`` keeps its databases as
    ``data/bench/accounts_<N>.db`` and ``connect_ops_bench_accounts_<N>`` on the server.
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
import resource
import sys
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, Row, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from bench.common import fresh_database
from emulator.account_state import INDIVIDUAL_DUE, INDIVIDUAL_EVENTUALLY
from lib import requirement_index
from lib.accounts import account_row_values
from lib.connection_attempts import FailureReason
from lib.db import make_engine
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
from lib.summaries import maintenance

logger = logging.getLogger("bench.generate")

#: Rows per ``executemany`` (SQLite) and per ``COPY`` and commit (PostgreSQL): what is held in
#: memory as row dicts at any time.
BATCH = 5_000
COPY_BATCH = 20_000
#: A progress line every this many rows (a 1,000,000-account build runs for a while).
PROGRESS_ROWS = 1_000_000
#: How far back the data goes: a year, for every size (issue 22; it was two years before).
SPAN = timedelta(days=365)
DAY = timedelta(days=1)
#: SQLite's page cache during the load (KiB): part of the generator's resident memory.
SQLITE_CACHE_KIB = 524_288
#: Bumped whenever the generator makes different rows from the same sizes and seed.
MARKER_VERSION = 4
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
HISTORY_OUTCOMES: tuple[tuple[float, AttemptOutcome], ...] = (
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


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
#: ``_Plan.connected`` of a freelancer who never connected.
NEVER = -1
STATES: tuple[str, ...] = tuple(state for _, state in STATE_MIX)
CURRENCIES: tuple[str, ...] = ("usd", "gbp", "cad", "aud", "eur")
METHODS: tuple[str | None, ...] = (None, ConnectionMethod.ACCOUNT_LINK.value,
                                   ConnectionMethod.OAUTH.value)


def _micros(moment: datetime) -> int:
    return (moment - EPOCH) // MICROSECOND


def _at(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def _account_id(seed: int, number: int) -> str:
    """The Stripe id of freelancer ``number``'s (generated) account."""
    return f"acct_{seed % 10_000:04d}{number:012d}"


class _Plan:
    """What later tables need to know about every generated freelancer, in compact arrays.

    Freelancer ``n`` is index ``n - 1``. About 27 bytes a freelancer (two 64-bit times, three
    small codes, no objects): 1,000,000 freelancers are ~27 MB where a list of dataclasses was
    ~250 MB. Account ids are not stored: they follow from the id (:func:`_account_id`).
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        #: Sign-up time (µs since the epoch): non-decreasing, ids follow sign-up time.
        self.created = array("q")
        #: When they connected (µs), or :data:`NEVER`; set for a disconnected freelancer too.
        self.connected = array("q")
        self.state = array("b")  # index in STATES
        self.currency = array("b")  # index in CURRENCIES
        self.method = array("b")  # index in METHODS (0: never connected)
        #: 1 when the freelancer is attached to their account now (NOT_CONNECTED ones are not).
        self.attached = array("b")

    def __len__(self) -> int:
        return len(self.created)

    def add(self, *, state: str, created: datetime, currency: str, connected_at: datetime | None,
            method: str | None, attached: bool) -> None:
        self.created.append(_micros(created))
        self.connected.append(NEVER if connected_at is None else _micros(connected_at))
        self.state.append(STATES.index(state))
        self.currency.append(CURRENCIES.index(currency))
        self.method.append(METHODS.index(method))
        self.attached.append(1 if attached else 0)

    def account_id(self, number: int) -> str | None:
        """Freelancer ``number``'s current account id (None when not attached)."""
        return _account_id(self.seed, number) if self.attached[number - 1] else None

    def attached_ids(self, *, state: str | None = None) -> array[int]:
        """The attached freelancers (of ``state`` if given), in id order."""
        wanted = -1 if state is None else STATES.index(state)
        return array("i", (number for number, (attached, code) in enumerate(
            zip(self.attached, self.state, strict=True), start=1)
            if attached and (wanted < 0 or code == wanted)))

    def by_connection(self, numbers: array[int]) -> tuple[array[int], array[int]]:
        """(``numbers`` sorted by connection time, their connection times) for bisecting."""
        ordered = array("i", sorted(numbers, key=lambda n: self.connected[n - 1]))
        return ordered, array("q", (self.connected[n - 1] for n in ordered))


class _Picker:
    """Weighted choice with precomputed cumulative weights (random.choices re-sums each call)."""

    def __init__(self, weighted: Sequence[tuple[float, Any]]) -> None:
        self.values = [value for _, value in weighted]
        total = 0.0
        self.cumulative: list[float] = []
        for weight, _ in weighted:
            total += weight
            self.cumulative.append(total)
        self.total = total

    def __call__(self, rng: random.Random, number: int = 0) -> Any:
        """The ``number``-th pick: the first ones cycle through every value once (so even a
        tiny database has each kind of row), the rest follow the weights."""
        if 1 <= number <= len(self.values):
            return self.values[number - 1]
        return self.values[bisect.bisect(self.cumulative, rng.random() * self.total, 0,
                                         len(self.cumulative) - 1)]


def _moment(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """A time in [start, end], denser towards ``end`` (a marketplace that grows)."""
    seconds = max((end - start).total_seconds(), 0.0)
    return start + timedelta(seconds=seconds * math.sqrt(rng.random()))


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



def _people(rng: random.Random, plan: _Plan, count: int, now: datetime, span: timedelta,
            seed: int) -> Iterator[tuple[type[Base], dict[str, Any]]]:
    """Account and freelancer rows for ``count`` freelancers in the demo's mix, streamed.

    Each freelancer is recorded in ``plan`` (what later tables need) as it is made. Sign-up
    times are stratified: freelancer ``n`` signs up in the ``n``-th of ``count`` equal-mass
    slices of the growth curve, so ids follow sign-up time without sorting them all first.
    """
    pick_state = _Picker(STATE_MIX)
    start = now - span
    seconds = max((span - timedelta(hours=1)).total_seconds(), 0.0)
    mirrors = 0
    for number in range(1, count + 1):
        state = pick_state(rng, number)
        created = start + timedelta(seconds=seconds * math.sqrt(
            (number - 1 + rng.random()) / count))
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
            account_id = _account_id(seed, number)
            oauth = mirror_state == "active" and rng.random() < 0.25
            method = (ConnectionMethod.OAUTH if oauth else ConnectionMethod.ACCOUNT_LINK).value
            connected_at = min(created + timedelta(minutes=rng.uniform(2, 60 * 24 * 14)),
                               now - timedelta(minutes=5))
            fetched = now - timedelta(seconds=rng.uniform(60, DAY.total_seconds()))
            mirrors += 1
            values = account_row_values(
                account_dict(rng, account_id=account_id, state=mirror_state, country=country,
                             account_type="standard" if oauth else "express",
                             created=connected_at, now=now),
                fetched_at=fetched)
            values["id"] = mirrors
            yield ConnectedAccount, values
            if state == "not_connected":
                row["disconnected_at"] = _moment(rng, connected_at, now)
            else:
                row.update(stripe_account_id=account_id, connection_method=method,
                           connected_at=connected_at)
        yield Freelancer, row
        plan.add(state=state, created=created, currency=CURRENCY.get(country, "eur"),
                 connected_at=connected_at, method=method,
                 attached=account_id is not None and state != "not_connected")


# ---- connection attempts -------------------------------------------------------------------------


def _attempts(rng: random.Random, plan: _Plan, count: int, now: datetime,
              span: timedelta) -> Iterator[tuple[type[Base], dict[str, Any]]]:
    """Each connected freelancer's successful attempt, then a history of every outcome."""
    pick_reason = _Picker(FAILURES)
    pick_outcome = _Picker(HISTORY_OUTCOMES)
    link_method = ConnectionMethod.ACCOUNT_LINK.value
    methods = [link_method] * 3 + [ConnectionMethod.OAUTH.value]
    operators = [name for name, _ in OPERATORS]
    number = 0
    for person in range(1, len(plan) + 1):
        if number >= count:
            return
        connected_micros = plan.connected[person - 1]
        method = METHODS[plan.method[person - 1]]
        if connected_micros == NEVER or method is None:
            continue
        number += 1
        connected_at = _at(connected_micros)
        started = connected_at - timedelta(minutes=rng.uniform(2, 45))
        link = method == link_method
        yield ConnectionAttempt, {
            "id": number, "freelancer_id": person, "method": method,
            "issued_by": rng.choice(operators), "stripe_account_id": plan.account_id(person),
            "started_at": started,
            "link_expires_at": started + timedelta(minutes=5) if link else None,
            "returned_at": connected_at if link else None,
            "finished_at": connected_at, "outcome": AttemptOutcome.SUCCEEDED.value,
            "failure_reason": None}
    history = failures = 0
    signed_up = plan.created  # sorted: ids follow sign-up time
    start = now - span
    while number < count:
        number += 1
        history += 1
        # The attempt's time follows the marketplace's growth; then someone signed up by then.
        started = _moment(rng, start, now)
        person = 1 + rng.randrange(max(1, bisect.bisect_right(signed_up, _micros(started))))
        started = max(started, _at(signed_up[person - 1]))
        method = rng.choice(methods)
        link = method == link_method
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
        yield ConnectionAttempt, {
            "id": number, "freelancer_id": person, "method": method,
            "issued_by": rng.choice(operators), "stripe_account_id": account,
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


def _payouts(rng: random.Random, plan: _Plan, count: int, now: datetime, span: timedelta,
             seed: int) -> Iterator[tuple[type[Base], dict[str, Any]]]:
    """Payout rows, each reversed one followed by its reversal: mostly to ACTIVE freelancers,
    every ledger state."""
    connected = plan.attached_ids()
    if not connected:
        return
    payees = plan.attached_ids(state="active") or connected
    pick_state = _Picker(PAYOUT_STATES)
    pick_settled = _Picker([(w, s) for w, s in PAYOUT_STATES if s not in IN_FLIGHT])
    pick_recent = _Picker(RECENT_STATES)
    operators = [name for name, _ in OPERATORS]
    bulk: tuple[str, int] | None = None
    reversals = 0
    # Sorted by connection time, to pick someone connected by the payout's time.
    payees, payee_since = plan.by_connection(payees)
    connected, connected_since = plan.by_connection(connected)
    start = now - span
    for number in range(1, count + 1):
        created = _moment(rng, start, now - timedelta(minutes=1))
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
        person = people[rng.randrange(max(1, bisect.bisect_right(since, _micros(created))))]
        created = max(created, _at(plan.connected[person - 1]) + timedelta(minutes=1))
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
        operator = rng.choice(operators)
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
        reversal: dict[str, Any] | None = None
        if status is PayoutStatus.REVERSED:
            reversed_minor = amount if rng.random() < 0.7 else max(1, amount // 2)
            reversals += 1
            assert completed is not None
            reversal = {
                "id": reversals, "payout_id": number, "amount_minor": reversed_minor,
                "reason": rng.choice(["Duplicate invoice", "Work disputed", "Paid in error"]),
                "status": "succeeded", "requested_by": operator,
                "idempotency_key": reversal_idempotency_key(reversals, f"{number:016x}"),
                "stripe_reversal_id": f"trr_{seed % 10_000:04d}{reversals:014d}",
                "created_at": completed + timedelta(days=rng.uniform(0.1, 20)),
                "completed_at": completed + timedelta(days=rng.uniform(0.1, 20), seconds=2),
            }
            reversal["updated_at"] = reversal["completed_at"]
        yield Payout, {
            "id": number, "freelancer_id": person, "stripe_account_id": plan.account_id(person),
            "amount_minor": amount, "currency": CURRENCIES[plan.currency[person - 1]],
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
        }
        if reversal is not None:
            yield PayoutReversal, reversal


# ---- webhook events and audit entries ------------------------------------------------------------


def _events(rng: random.Random, plan: _Plan, count: int, now: datetime, span: timedelta,
            seed: int) -> Iterator[tuple[type[Base], dict[str, Any]]]:
    pick_type = _Picker([(w, (t, e)) for w, t, e in EVENT_TYPES])
    pick_state = _Picker(EVENT_STATES)
    attached = plan.attached_ids()
    start = now - span
    for number in range(1, count + 1):
        event_type, endpoint = pick_type(rng, number)
        status: WebhookStatus = pick_state(rng, number)
        created = _moment(rng, start, now)
        waiting = status in {WebhookStatus.RECEIVED, WebhookStatus.PROCESSING}
        if waiting:  # arrived in the last two minutes, not processed yet
            created = now - timedelta(seconds=rng.uniform(1, 120))
        received = created + timedelta(seconds=rng.uniform(0.2, 5))
        account = (_account_id(seed, attached[rng.randrange(len(attached))]) if attached
                   else None) if endpoint == "connect" else None
        event_id = f"evt_{seed % 10_000:04d}{number:016d}"
        obj = {"object": event_type.split(".")[0] if not event_type.startswith("account.app")
               else "application", "id": account or f"tr_{number:014d}"}
        failed = status in {WebhookStatus.FAILED, WebhookStatus.DEAD}
        retry_at = received + timedelta(minutes=rng.uniform(1, 60))
        yield WebhookEvent, {
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


AUDIT_KINDS: tuple[tuple[float, str, str, str], ...] = (
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
)


def _audit(rng: random.Random, plan: _Plan, count: int, now: datetime,
           span: timedelta) -> Iterator[tuple[type[Base], dict[str, Any]]]:
    """The actions operators and the companion record, with their usual results."""
    pick = _Picker([(w, (a, r, t)) for w, a, r, t in AUDIT_KINDS])
    people = len(plan)
    start = now - span
    for number in range(1, count + 1):
        action, result, target_kind = pick(rng, number)
        actor, role = rng.choice(OPERATORS)
        # Only the target this kind of entry names is drawn (9 million entries at 1M accounts).
        person = 1 + rng.randrange(people) if people and target_kind in {
            "freelancer", "account"} else None
        if target_kind == "client":
            target: str | None = f"client:10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        elif target_kind == "freelancer":
            target = f"freelancer:{person}" if person else None
        elif target_kind == "account":
            target = (plan.account_id(person) or f"acct_gone{number:010d}") if person else None
        elif target_kind == "payout":
            target = f"payout:{rng.randint(1, 10 * count)}"
        else:
            target = {"period": "2026-11-01..2026-11-08", "bulk": f"bulk:{number:016x}",
                      "sync": None, "event": f"evt_{number:016d}", "page": "payouts",
                      }[target_kind]
        if target_kind in {"freelancer", "account"} and action.startswith("connect.oauth_call"):
            actor, role = f"freelancer:{person or 0}", "freelancer"
        yield AuditLog, {
            "id": number, "occurred_at": _moment(rng, start, now), "actor": actor,
            "actor_role": role, "action": action, "target": target,
            "input": {"amount": str(rng.randint(5, 5000)), "currency": "usd"}
            if action.startswith("payout.") else {}, "result": result, "detail": None,
            "idempotency_key": None, "stripe_request_id": None,
        }


# ---- loading -------------------------------------------------------------------------------------

Rows = Iterator[tuple[type[Base], dict[str, Any]]]
#: The tables the generator fills; their secondary indexes (and, on PostgreSQL, foreign keys)
#: are built once after the load instead of row by row during it.
LOADED: tuple[type[Base], ...] = (ConnectedAccount, Freelancer, ConnectionAttempt, Payout,
                                  PayoutReversal, WebhookEvent, AuditLog)


class _Loader:
    """Writes streams of ``(model, row)`` in batches of ``batch`` rows, parents first.

    PostgreSQL: one ``COPY … FROM STDIN`` per table and batch through psycopg's ``Copy``, each
    value passed through its column type's bind processor first (the same conversion
    ``insert()`` applies: UTC datetimes, JSONB), then a commit. SQLite: one ``executemany``
    ``insert()`` per table and batch, in the caller's transaction.
    """

    def __init__(self, session: Session, *, postgres: bool, batch: int) -> None:
        self.session = session
        self.postgres = postgres
        self.batch = batch
        self.counts: dict[str, int] = {}
        self._layouts: dict[str, tuple[list[str], list[Any], dict[str, Any]]] = {}

    def load(self, rows: Rows, *, order: Sequence[type[Base]]) -> None:
        tables = {model: model.__table__ for model in order}
        stage = "/".join(table.name for table in tables.values())
        buffers: dict[type[Base], list[dict[str, Any]]] = {model: [] for model in order}
        started = time.perf_counter()
        pending = written = 0
        for model, row in rows:
            buffers[model].append(row)
            pending += 1
            if pending >= self.batch:
                self._flush(tables, buffers)
                written += pending
                pending = 0
                if written % PROGRESS_ROWS < self.batch:
                    logger.info("  %s: %d rows so far, %.0f s", stage, written,
                                time.perf_counter() - started)
        self._flush(tables, buffers)
        for table in tables.values():
            logger.info("%-20s %10d rows, %6.1f s since this stage began", table.name,
                        self.counts.get(table.name, 0), time.perf_counter() - started)

    def _flush(self, tables: dict[type[Base], Any], buffers: dict[type[Base],
               list[dict[str, Any]]]) -> None:
        for model, rows in buffers.items():
            if not rows:
                continue
            table = tables[model]
            if self.postgres:
                self._copy(table, rows)
            else:
                self.session.execute(insert(table), rows)
            self.counts[table.name] = self.counts.get(table.name, 0) + len(rows)
            rows.clear()
        if self.postgres:
            self.session.commit()

    def _layout(self, table: Any, row: dict[str, Any]) -> tuple[list[str], list[Any],
                                                                 dict[str, Any]]:
        """(columns, their bind processors, constant defaults of the columns rows leave out)."""
        layout = self._layouts.get(table.name)
        if layout is None:
            dialect = self.session.get_bind().dialect
            defaults: dict[str, Any] = {}
            for column in table.c:
                if column.name in row or column.default is None:
                    continue
                if not column.default.is_scalar:  # a callable (utcnow): rows must say
                    raise ValueError(f"{table.name}.{column.name} has a Python default the "
                                     "generator must give explicitly")
                defaults[column.name] = column.default.arg
            columns = [*row, *defaults]
            processors = [table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
                          for name in columns]
            layout = self._layouts[table.name] = (columns, processors, defaults)
        return layout

    def _copy(self, table: Any, rows: list[dict[str, Any]]) -> None:
        columns, processors, defaults = self._layout(table, rows[0])
        pairs = list(zip(columns, processors, strict=True))
        driver = self.session.connection().connection.driver_connection
        assert driver is not None  # a checked-out connection has its driver's
        statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                full = row | defaults if defaults else row
                copy.write_row([full[name] if process is None or full[name] is None
                                else process(full[name]) for name, process in pairs])


@dataclass(slots=True)
class _Deferred:
    """DDL to replay after the load: the secondary indexes and foreign keys it dropped."""

    statements: list[str]


def _drop_deferrable(session: Session, *, postgres: bool) -> _Deferred:
    """Drop the loaded tables' secondary indexes (and PostgreSQL foreign keys); the DDL that
    recreates them exactly, from the database's own catalog.

    Building an index once over sorted rows is several times faster than growing it a row at
    a time (what ``pg_restore`` does too). Indexes behind PRIMARY KEY and UNIQUE constraints
    stay, so keys are still checked during the load.
    """
    names = [model.__tablename__ for model in LOADED]
    statements: list[str] = []
    if postgres:
        foreign: Sequence[Row[str, str, str]] = session.execute(text(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE contype = 'f' AND conrelid::regclass::text = ANY(:t) "
            "ORDER BY 1, 2"), {"t": names}).all()
        indexes: Sequence[Row[str, str]] = session.execute(text(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) "
            "FROM pg_index i WHERE i.indrelid::regclass::text = ANY(:t) AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) ORDER BY 1"),
            {"t": names}).all()
        for table, name, definition in foreign:
            session.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
            statements.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        for name, definition in indexes:
            session.execute(text(f"DROP INDEX {name}"))
            statements.insert(0, definition)  # indexes first: the keys' checks use them
    else:
        indexes = session.execute(text(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            "AND tbl_name IN (" + ", ".join(f"'{n}'" for n in names) + ") ORDER BY name")).all()
        for name, definition in indexes:
            session.execute(text(f'DROP INDEX "{name}"'))
            statements.append(definition)
    logger.info("deferred %d indexes and constraints until after the load", len(statements))
    return _Deferred(statements)


def _restore_deferred(session: Session, deferred: _Deferred) -> None:
    started = time.perf_counter()
    for statement in deferred.statements:
        session.execute(text(statement))
    deferred.statements = []
    logger.info("indexes and constraints rebuilt in %.1f s", time.perf_counter() - started)


# ---- issue 22: summary tables maintained by triggers ---------------------------------------------


def _before_load(session: Session, *, drop_triggers: bool) -> bool:
    """Issue 22: the summary triggers fire per row; a bulk load drops them and rebuilds the
    summaries once afterwards (:func:`_after_load`). True when triggers were dropped."""
    if not drop_triggers:
        return False
    maintenance.drop_triggers(session)
    logger.info("summary triggers dropped for the load")
    return True


def _after_load(session: Session, *, triggers_dropped: bool) -> None:
    """The summaries recounted once, after every table is loaded and indexed (and the triggers
    put back if the load dropped them), in the session's transaction."""
    started = time.perf_counter()
    # Rebuilt first: the funnel's per-freelancer rows (a million of them) are then written with
    # no trigger to fire per row, and the counts recounted once.
    maintenance.rebuild(session)
    if triggers_dropped:
        maintenance.install_triggers(session)
    logger.info("summaries rebuilt in %.1f s", time.perf_counter() - started)


def _reset_sequences(session: Session) -> None:
    """PostgreSQL: move every id sequence past the ids given here (the app inserts after)."""
    for table in Base.metadata.sorted_tables:
        if "id" not in table.c or not table.c.id.primary_key:
            continue
        session.execute(text(
            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
            f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table.name}), false)"))


def generate(engine: Engine, sizes: Sizes, *, seed: int = 7, now: datetime | None = None,
             span: timedelta = SPAN, drop_triggers: bool = True) -> dict[str, int]:
    """Fill an empty, migrated database; returns the rows written per table.

    ``span`` is how far back the data goes (one year by default); ``drop_triggers`` lets
    issue 22's summary triggers be dropped during the load and rebuilt after it.
    """
    moment = now or datetime.now(UTC)
    rng = random.Random(seed)
    postgres = engine.dialect.name == "postgresql"
    started = time.perf_counter()
    plan = _Plan(seed)
    # One connection throughout: its settings (below) hold for every batch's transaction.
    with engine.connect() as connection, Session(bind=connection,
                                                 expire_on_commit=False) as session:
        if postgres:
            # A lost commit costs nothing here (an unfinished load is regenerated), and the
            # index builds at the end sort in memory.
            session.execute(text("SET synchronous_commit = off"))
            session.execute(text("SET maintenance_work_mem = '512MB'"))
        else:
            # Big transactions (one per stage): a bigger page cache keeps the indexes in memory.
            session.execute(text(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}"))
        triggers_dropped = _before_load(session, drop_triggers=drop_triggers)
        deferred = _drop_deferrable(session, postgres=postgres)
        session.commit()
        loader = _Loader(session, postgres=postgres, batch=COPY_BATCH if postgres else BATCH)
        stages: list[tuple[Rows, tuple[type[Base], ...]]] = [
            (_people(rng, plan, sizes.accounts, moment, span, seed),
             (ConnectedAccount, Freelancer)),
            (_attempts(rng, plan, sizes.attempts, moment, span), (ConnectionAttempt,)),
            (_payouts(rng, plan, sizes.payouts, moment, span, seed), (Payout, PayoutReversal)),
            (_events(rng, plan, sizes.webhook_events, moment, span, seed), (WebhookEvent,)),
            (_audit(rng, plan, sizes.audit_entries, moment, span), (AuditLog,)),
        ]
        try:
            for rows, order in stages:
                loader.load(rows, order=order)
                session.commit()
        finally:
            # Even after a failed load: a database without its indexes would fail a downgrade.
            session.rollback()
            _restore_deferred(session, deferred)
            session.commit()
        counts = {model.__tablename__: loader.counts.get(model.__tablename__, 0)
                  for model in LOADED}
        del plan, stages
        index_started = time.perf_counter()
        counts["requirement_codes"] = requirement_index.rebuild(session=session, summaries=False)
        logger.info("requirement_codes rebuilt in %.1f s", time.perf_counter() - index_started)
        _after_load(session, triggers_dropped=triggers_dropped)
        if postgres:
            _reset_sequences(session)
            session.execute(text("RESET synchronous_commit"))
            session.execute(text("RESET maintenance_work_mem"))
        session.commit()
    with engine.connect() as connection:
        if postgres:
            # What autovacuum does soon after a load (PostgreSQL 13+ vacuums insert-only tables
            # too): statistics for the planner and the visibility map index-only scans need.
            vacuum_started = time.perf_counter()
            connection.execution_options(isolation_level="AUTOCOMMIT").execute(
                text("VACUUM ANALYZE"))
            logger.info("VACUUM ANALYZE in %.1f s", time.perf_counter() - vacuum_started)
        else:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    logger.info("generated in %.1f s (peak RSS %d MB): %s", time.perf_counter() - started,
                peak_rss_mb(), counts)
    return counts


def peak_rss_mb() -> int:
    """This process's peak resident set so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


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
            database: str = connection.execute(text("SELECT current_database()")).scalar_one()
            literal = payload.replace("'", "''")
            connection.exec_driver_sql(f'COMMENT ON DATABASE "{database}" IS \'{literal}\'')
    else:
        _sidecar(engine.url.render_as_string(hide_password=False)).write_text(
            payload + "\n", encoding="utf-8")


def _wanted_marker(sizes: Sizes, seed: int, span: timedelta = SPAN) -> dict[str, Any]:
    return {"version": MARKER_VERSION, "sizes": asdict(sizes), "seed": seed,
            "span_days": span / DAY, "alembic_head": alembic_head()}


def matches(engine: Engine, sizes: Sizes, seed: int, span: timedelta = SPAN) -> bool:
    """True when this database holds exactly what :func:`generate` would make now."""
    try:
        marker = read_marker(engine)
        if marker is None:
            return False
        wanted = _wanted_marker(sizes, seed, span)
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


def build(url: str, sizes: Sizes, *, seed: int, span: timedelta = SPAN) -> dict[str, Any]:
    """Generate into the (empty, migrated) database at ``url`` and record what is there."""
    engine = make_engine(url)
    try:
        started = time.perf_counter()
        counts = generate(engine, sizes, seed=seed, span=span)
        # The revision the data was generated under, not the newest on disk: a migration
        # written while a long build runs must still be applied to it afterwards.
        marker = _wanted_marker(sizes, seed, span) | {
            "alembic_head": _database_revision(engine), "counts": counts, "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 1), "peak_rss_mb": peak_rss_mb()}
        write_marker(engine, marker)
    finally:
        engine.dispose()
    return marker


def _migrated(engine: Engine, sizes: Sizes, seed: int, span: timedelta,
              log: Callable[[str], None]) -> bool:
    """A database generated the same way under an older schema: migrated to head in place (as
    production would be) and its record updated, instead of hours of regenerating. True when
    it then matches."""
    try:
        marker = read_marker(engine)
    except (OperationalError, ProgrammingError):
        return False
    wanted = _wanted_marker(sizes, seed, span)
    if marker is None or any(marker.get(key) != value for key, value in wanted.items()
                             if key != "alembic_head"):
        return False
    revision = _database_revision(engine)     # what the schema is, whatever the record says
    if revision == wanted["alembic_head"]:
        return False
    log(f"migrating the {sizes.accounts:,}-account database from {revision} "
        f"to {wanted['alembic_head']} in place…")
    started = time.perf_counter()
    upgrade(engine)
    seconds = round(time.perf_counter() - started, 1)
    log(f"migrated in {seconds} s")
    write_marker(engine, marker | {"alembic_head": wanted["alembic_head"],
                                   "migrated_in_seconds": seconds})
    return matches(engine, sizes, seed, span)


def ensure_database(backend: str, name: str, sizes: Sizes, *, seed: int = 7,
                    span: timedelta = SPAN, log: Callable[[str], None] = logger.info) -> str:
    """The URL of a benchmark database holding ``sizes``; generated only when it does not yet."""
    from bench.common import database_url

    url = database_url(backend, name)
    engine = make_engine(url)
    try:
        reusable = matches(engine, sizes, seed, span) or _migrated(engine, sizes, seed, span, log)
    finally:
        engine.dispose()
    if reusable:
        log(f"reusing {backend} database {name} ({sizes.accounts:,} accounts, seed {seed})")
        return url
    log(f"generating {backend} database {name} ({sizes.accounts:,} accounts, seed {seed})…")
    with fresh_database(backend, name) as fresh:
        build(fresh, sizes, seed=seed, span=span)
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
    parser.add_argument("--span-days", type=float, default=SPAN / DAY,
                        help="how far back the data goes (default: %(default)g days)")
    parser.add_argument("--force", action="store_true",
                        help="regenerate even when the database already holds these sizes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="generate: %(message)s")
    sizes = Sizes.scaled(args.accounts, attempts=args.attempts, payouts=args.payouts,
                         webhook_events=args.webhook_events, audit_entries=args.audit_entries)
    if min(asdict(sizes).values()) < 0 or sizes.accounts < 1:
        parser.error("sizes must be positive")
    if args.span_days <= 0:
        parser.error("--span-days must be positive")
    span = timedelta(days=args.span_days)
    engine = make_engine(args.database_url)
    try:
        if not args.force and matches(engine, sizes, args.seed, span):
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
        marker = build(args.database_url, sizes, seed=args.seed, span=span)
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

