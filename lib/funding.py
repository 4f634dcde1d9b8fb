"""Funding: is there enough money at Stripe for what the desk has committed to pay?

A transfer needs the platform's *available* balance in its currency, and Stripe does not retry
one that failed for lack of funds. Finance therefore compares, per currency (never added across
currencies):

- *available* and *pending* at Stripe (``Balance.retrieve``);
- *committed*: payouts awaiting approval, payouts approved (or under the approval threshold)
  and not yet sent, and the bulk files operators are previewing on the Payouts page (recorded
  by :func:`note_bulk_preview`, counted until the file is confirmed — its rows are then ledger
  rows — cleared, or :data:`BULK_PREVIEW_TTL` old);
- the *shortfall* (committed beyond available), and when pending funds become available:
  the balance says how much is pending but not when, so the pending balance transactions'
  ``available_on`` dates are read (newest first, stopping once every pending amount is found,
  at :data:`PENDING_LOOKBACK` or at :data:`MAX_PENDING_TRANSACTIONS`). ``covered_on`` is the
  first date on which available plus the funds released by then cover the committed total.

Payouts already sent (``submitted``, ``paid``) were taken from the balance by Stripe when it
accepted them; ``unknown`` ones may or may not have been, so they are reported, not counted.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from lib.db import utcnow
from lib.errors import StripeGatewayError
from lib.models import BulkPreviewNote, Payout, PayoutStatus
from lib.money import SUPPORTED_CURRENCIES, Money, format_money
from lib.roles import Action, Operator, authorize, authorize_in
from lib.stripe_gateway import StripeGateway

logger = logging.getLogger(__name__)

#: A bulk preview older than this is no longer "about to be paid".
BULK_PREVIEW_TTL = timedelta(hours=4)
#: How far back pending balance transactions are looked for (Stripe's standard delays are days;
#: a new account's first payments can take up to a few weeks).
PENDING_LOOKBACK = timedelta(days=35)
#: At most this many balance transactions are read per look (40 pages of 100, about 2 s).
MAX_PENDING_TRANSACTIONS = 4_000


def _money(amount_minor: int, currency: str) -> str:
    if currency in SUPPORTED_CURRENCIES:
        return format_money(Money(amount_minor, currency))
    return f"{currency.upper()} {amount_minor:,} (minor units)"


@dataclass(frozen=True, slots=True)
class Release:
    """Pending funds of one currency that become available on ``on`` (UTC date)."""

    on: date
    amount_minor: int


@dataclass(frozen=True, slots=True)
class Committed:
    awaiting_approval_minor: int = 0
    awaiting_approval_count: int = 0
    approved_minor: int = 0
    approved_count: int = 0
    bulk_minor: int = 0
    bulk_rows: int = 0
    bulk_files: int = 0

    @property
    def total_minor(self) -> int:
        return self.awaiting_approval_minor + self.approved_minor + self.bulk_minor


@dataclass(frozen=True, slots=True)
class CurrencyFunding:
    currency: str
    #: None when Stripe could not be read.
    available_minor: int | None
    pending_minor: int | None
    committed: Committed
    releases: tuple[Release, ...] = ()

    @property
    def committed_minor(self) -> int:
        return self.committed.total_minor

    @property
    def shortfall_minor(self) -> int | None:
        """Committed money the available balance does not cover (0: covered)."""
        if self.available_minor is None:
            return None
        return max(0, self.committed_minor - self.available_minor)

    @property
    def short(self) -> bool:
        return bool(self.shortfall_minor)

    @property
    def next_release(self) -> Release | None:
        return self.releases[0] if self.releases else None

    @property
    def covered_on(self) -> date | None:
        """The first date the available balance plus funds released by then covers the
        committed total (None when it already does, or pending funds never will)."""
        if not self.short or self.available_minor is None:
            return None
        reached = self.available_minor
        for release in self.releases:
            reached += release.amount_minor
            if reached >= self.committed_minor:
                return release.on
        return None

    @property
    def to_add_minor(self) -> int | None:
        """What must be added beyond every pending release to cover the committed total."""
        if self.available_minor is None:
            return None
        found = sum(r.amount_minor for r in self.releases)
        return max(0, self.committed_minor - self.available_minor - found)

    def money(self, amount_minor: int | None) -> str:
        return "unknown" if amount_minor is None else _money(amount_minor, self.currency)

    @property
    def verdict(self) -> str:
        """One line a person reads."""
        if self.available_minor is None:
            return "Stripe's balance could not be read."
        if not self.short:
            return "Covered by the available balance."
        covered = self.covered_on
        if covered is not None:
            return (f"Short {self.money(self.shortfall_minor)} now; pending funds cover it "
                    f"on {covered:%Y-%m-%d} (UTC).")
        return (f"Short {self.money(self.shortfall_minor)}: add at least "
                f"{self.money(self.to_add_minor)} beyond the pending funds.")


@dataclass(frozen=True, slots=True)
class FundingPosition:
    as_of: datetime
    currencies: list[CurrencyFunding]
    balance_error: str | None = None
    #: False when the pending dates could not all be found (see the module docstring).
    releases_complete: bool = True
    releases_error: str | None = None
    unknown_payouts: dict[str, int] = field(default_factory=dict)

    @property
    def short(self) -> list[CurrencyFunding]:
        return [c for c in self.currencies if c.short]


@dataclass(frozen=True, slots=True)
class Shortfall:
    currency: str
    shortfall_minor: int
    committed_minor: int
    available_minor: int

    @property
    def display(self) -> str:
        return _money(self.shortfall_minor, self.currency)


# ---- what the desk has committed --------------------------------------------------------------


def _ledger_commitments(session: Session) -> dict[str, dict[str, tuple[int, int]]]:
    """currency -> status -> (amount, count) for the statuses not yet taken from the balance."""
    # COUNT(*), not COUNT(id): ix_payouts_status holds every column read here, so the
    # backlog is read from the index alone (27 -> 1.8 ms for 4,560 rows at 1M, PostgreSQL).
    rows = session.execute(
        select(Payout.currency, Payout.status, func.coalesce(func.sum(Payout.amount_minor), 0),
               func.count())
        .where(Payout.status.in_([PayoutStatus.PENDING_APPROVAL.value,
                                  PayoutStatus.PENDING.value, PayoutStatus.UNKNOWN.value]))
        .group_by(Payout.currency, Payout.status)
    )
    found: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
    for currency, status, amount, count in rows:
        found[str(currency)][str(status)] = (int(amount), int(count))
    return found


def _live_previews(session: Session, now: datetime) -> list[BulkPreviewNote]:
    confirmed = select(Payout.id).where(
        Payout.bulk_fingerprint == BulkPreviewNote.fingerprint).exists()
    return list(session.scalars(
        select(BulkPreviewNote)
        .where(BulkPreviewNote.previewed_at >= now - BULK_PREVIEW_TTL, ~confirmed)
        .order_by(BulkPreviewNote.previewed_at)))


def _commitments(session: Session, now: datetime) -> tuple[dict[str, Committed], dict[str, int]]:
    ledger = _ledger_commitments(session)
    bulk: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for note in _live_previews(session, now):
        for currency, value in (note.totals or {}).items():
            entry = bulk[str(currency)]
            entry[0] += int(value.get("amount_minor", 0))
            entry[1] += int(value.get("rows", 0))
            entry[2] += 1
    committed: dict[str, Committed] = {}
    for currency in sorted(set(ledger) | set(bulk)):
        statuses = ledger.get(currency, {})
        awaiting = statuses.get(PayoutStatus.PENDING_APPROVAL.value, (0, 0))
        approved = statuses.get(PayoutStatus.PENDING.value, (0, 0))
        b = bulk.get(currency, [0, 0, 0])
        committed[currency] = Committed(awaiting[0], awaiting[1], approved[0], approved[1],
                                        b[0], b[1], b[2])
    unknown = {c: s[PayoutStatus.UNKNOWN.value][0] for c, s in ledger.items()
               if PayoutStatus.UNKNOWN.value in s}
    return committed, unknown


# ---- what Stripe holds ------------------------------------------------------------------------


def _amounts(balance: Mapping[str, Any], key: str) -> dict[str, int]:
    found: dict[str, int] = defaultdict(int)
    for entry in balance.get(key) or []:
        found[str(entry.get("currency", "")).lower()] += int(entry.get("amount") or 0)
    return dict(found)


def pending_releases(
    transactions: Iterable[Mapping[str, Any]], pending: Mapping[str, int], *,
    limit: int = MAX_PENDING_TRANSACTIONS,
) -> tuple[dict[str, tuple[Release, ...]], bool]:
    """Pending amounts per currency and ``available_on`` date, from balance transactions
    (newest first); True when every pending amount was found before the limit."""
    wanted = {c: a for c, a in pending.items() if a > 0}
    found: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    seen: dict[str, int] = defaultdict(int)
    complete = not wanted
    for count, txn in enumerate(transactions, start=1):
        if all(seen[c] >= a for c, a in wanted.items()):
            complete = True
            break
        if count > limit:
            break
        if txn.get("status") != "pending":
            continue
        currency = str(txn.get("currency", "")).lower()
        net = int(txn.get("net", txn.get("amount", 0)) or 0)
        on = datetime.fromtimestamp(int(txn.get("available_on") or 0), tz=UTC).date()
        found[currency][on] += net
        seen[currency] += net
    else:
        complete = all(seen[c] >= a for c, a in wanted.items())
    releases = {c: tuple(Release(on, amount) for on, amount in sorted(days.items()) if amount)
                for c, days in found.items()}
    return releases, complete


def _read_stripe(gateway: StripeGateway, now: datetime) -> tuple[
        dict[str, int] | None, dict[str, int] | None, dict[str, tuple[Release, ...]], bool,
        str | None, str | None]:
    try:
        balance = gateway.retrieve_balance().data
    except StripeGatewayError as exc:
        logger.warning("funding: balance read failed: %s", exc.code)
        return None, None, {}, False, exc.message, None
    available, pending = _amounts(balance, "available"), _amounts(balance, "pending")
    if not any(a > 0 for a in pending.values()):
        return available, pending, {}, True, None, None
    since = int((now - PENDING_LOOKBACK).timestamp())
    try:
        releases, complete = pending_releases(
            gateway.iter_balance_transactions(created_gte=since), pending)
    except StripeGatewayError as exc:
        logger.warning("funding: balance transactions read failed: %s", exc.code)
        return available, pending, {}, False, None, exc.message
    return available, pending, releases, complete, None, None


def funding_position(
    factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    now: datetime | None = None,
) -> FundingPosition:
    """Every currency with money at Stripe or committed, with its shortfall and release dates."""
    authorize_in(factory, operator, Action.VIEW_FUNDING)
    moment = now or utcnow()
    with factory() as session:
        committed, unknown = _commitments(session, moment)
    available, pending, releases, complete, error, releases_error = _read_stripe(gateway, moment)
    currencies = sorted(set(committed) | set(available or {}) | set(pending or {}))
    rows = [
        CurrencyFunding(
            currency=c,
            available_minor=None if available is None else available.get(c, 0),
            pending_minor=None if pending is None else pending.get(c, 0),
            committed=committed.get(c, Committed()),
            releases=releases.get(c, ()),
        )
        for c in currencies
    ]
    return FundingPosition(as_of=moment, currencies=rows, balance_error=error,
                           releases_complete=complete, releases_error=releases_error,
                           unknown_payouts=unknown)


def funds_needed(
    factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    now: datetime | None = None,
) -> list[Shortfall] | None:
    """For the Overview: the currencies whose committed money exceeds the available balance
    (one balance read, no release dates); None when Stripe could not be read."""
    authorize_in(factory, operator, Action.VIEW_OVERVIEW)
    moment = now or utcnow()
    with factory() as session:
        committed, _ = _commitments(session, moment)
    if not committed:
        return []
    try:
        balance = gateway.retrieve_balance().data
    except StripeGatewayError as exc:
        logger.warning("funds needed: balance read failed: %s", exc.code)
        return None
    available = _amounts(balance, "available")
    return [Shortfall(c, committed[c].total_minor - available.get(c, 0),
                      committed[c].total_minor, available.get(c, 0))
            for c in sorted(committed) if committed[c].total_minor > available.get(c, 0)]


# ---- bulk previews ----------------------------------------------------------------------------


def note_bulk_preview(
    session: Session, *, operator: Operator, fingerprint: str,
    totals: Iterable[tuple[str, int, int]], now: datetime | None = None,
) -> None:
    """Record the bulk file ``operator`` is previewing: (currency, rows, amount) of its payable
    rows. Replaces their earlier preview; nothing is recorded for a file with no payable row."""
    authorize(operator, Action.REQUEST_PAYOUT, session=session)
    by_currency = {currency: {"rows": int(rows), "amount_minor": int(amount)}
                   for currency, rows, amount in totals if rows}
    note = session.scalars(select(BulkPreviewNote).where(
        BulkPreviewNote.operator == operator.username)).one_or_none()
    if not by_currency:
        if note is not None:
            session.delete(note)
        return
    if note is None:
        note = BulkPreviewNote(operator=operator.username)
        session.add(note)
    note.fingerprint = fingerprint
    note.previewed_at = now or utcnow()
    note.rows = sum(v["rows"] for v in by_currency.values())
    note.totals = by_currency


def clear_bulk_preview(session: Session, *, operator: Operator) -> None:
    """The operator closed their bulk file: it is no longer about to be paid."""
    session.execute(delete(BulkPreviewNote).where(BulkPreviewNote.operator == operator.username))
