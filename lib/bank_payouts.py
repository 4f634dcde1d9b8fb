"""Connected accounts' own payouts to their bank (``payout.*`` from the Connect webhooks).

The platform pays a freelancer by *transfer* to their Stripe balance (``lib.payouts``); Stripe
then pays that balance out to the freelancer's bank on the account's schedule. When the bank
refuses (closed account, wrong number, …) the money goes back to the freelancer's Stripe balance
and the freelancer is not paid until they fix their bank details: finance needs to know who and
why. Stripe tells us with ``payout.created``, ``payout.updated``, ``payout.paid``,
``payout.failed`` and ``payout.canceled`` events carrying the payout object and the ``account``.

Why no Stripe call here
    Unlike account events, the payout object in the event is used as it is: it is complete, the
    freelancer's payouts can be many (one a day per account), and re-reading each would cost a
    Stripe read per event. Out-of-order delivery is handled by the status order instead:
    ``pending`` → ``in_transit`` → ``paid`` → ``failed``/``canceled``. A row never moves back
    to an earlier status, and among events of the same status only a strictly newer one
    changes it (a repeat changes nothing). ``paid`` is not final (Stripe: "some payouts that
    fail might initially show as paid, then change to failed"), ``failed`` and ``canceled``
    are.

Failure codes are Stripe's (the payout object's ``failure_code``); :data:`FAILURE_REASONS` puts
each in plain words with what the freelancer should do.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, sessionmaker

from lib.db import utcnow
from lib.freelancers import find_by_account
from lib.models import (
    BankPayout,
    BankPayoutStatus,
    ConnectionAttempt,
    Freelancer,
    Payout,
)
from lib.money import SUPPORTED_CURRENCIES, Money, format_money
from lib.paging import check_page
from lib.roles import Action, Operator, authorize
from lib.stripe_gateway import StripeGateway

logger = logging.getLogger(__name__)

MAX_PAGE = 500

#: Stripe's payout failure codes: (what happened, what the freelancer should do).
FAILURE_REASONS: dict[str, tuple[str, str]] = {
    "account_closed": ("The bank account has been closed.",
                       "Add a new bank account in payment settings."),
    "account_frozen": ("The bank account has been frozen.",
                       "Contact their bank, or add another bank account."),
    "bank_account_restricted": (
        "The bank account does not accept these payouts (often a savings account).",
        "Add a current (checking) account in payment settings."),
    "bank_ownership_changed": ("The bank branch changed owner; the account details are stale.",
                               "Contact their bank, or add the account again."),
    "could_not_process": ("The bank could not process the payout.",
                          "Check the bank details in payment settings."),
    "debit_not_authorized": ("The bank account does not allow debits, which Stripe requires.",
                             "Ask their bank to allow debits, or add another account."),
    "declined": ("The bank declined the payout.",
                 "Contact their bank before the next payout."),
    "incorrect_account_holder_address": ("The account holder's address does not match the "
                                         "bank's.", "Correct the address in payment settings."),
    "incorrect_account_holder_name": ("The account holder's name does not match the bank's.",
                                      "Correct the name in payment settings."),
    "incorrect_account_holder_tax_id": ("The account holder's tax ID does not match the "
                                        "bank's.", "Correct the tax ID in payment settings."),
    "insufficient_funds": ("Their Stripe balance did not cover the payout.",
                           "Nothing at the bank: Stripe retries once the balance covers it."),
    "invalid_account_number": ("The account number is wrong (the routing number looks right).",
                               "Re-enter the account number in payment settings."),
    "invalid_currency": ("The bank account cannot receive this currency.",
                         "Add a bank account in the payout currency."),
    "no_account": ("No bank account matches these details.",
                   "Re-enter the bank details in payment settings."),
    "unsupported_card": ("The debit card no longer accepts payouts.",
                         "Add a bank account or another debit card."),
}
UNKNOWN_REASON = ("The bank refused the payout (Stripe gave no known code).",
                  "Check the bank details in payment settings.")

#: Status order: a row only moves forward. ``failed``/``canceled`` end it.
_RANK = {BankPayoutStatus.PENDING.value: 0, BankPayoutStatus.IN_TRANSIT.value: 1,
         BankPayoutStatus.PAID.value: 2, BankPayoutStatus.FAILED.value: 3,
         BankPayoutStatus.CANCELED.value: 3}
_SETTLED = (BankPayoutStatus.PAID.value, BankPayoutStatus.FAILED.value,
            BankPayoutStatus.CANCELED.value)


def money_text(amount_minor: int, currency: str) -> str:
    """The amount with its currency; one the desk does not support is shown raw, with its code."""
    if currency in SUPPORTED_CURRENCIES:
        return format_money(Money(amount_minor, currency))
    return f"{currency.upper()} {amount_minor:,} (minor units)"


def failure_reason(code: str | None) -> str:
    """Stripe's failure code in plain words."""
    return FAILURE_REASONS.get(code or "", UNKNOWN_REASON)[0]


def failure_remedy(code: str | None) -> str:
    """What the freelancer should do about it."""
    return FAILURE_REASONS.get(code or "", UNKNOWN_REASON)[1]


def _moment(value: object) -> datetime | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(int(str(value)), tz=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _owner(session: Session, account_id: str) -> int | None:
    """The freelancer the account belongs to, or last belonged to (ledger, then attempts)."""
    current = find_by_account(session, stripe_account_id=account_id)
    if current is not None:
        return current.id
    paid = session.scalar(select(Payout.freelancer_id).where(Payout.stripe_account_id == account_id)
                          .order_by(Payout.id.desc()).limit(1))
    if paid is not None:
        return int(paid)
    tried = session.scalar(select(ConnectionAttempt.freelancer_id)
                           .where(ConnectionAttempt.stripe_account_id == account_id)
                           .order_by(ConnectionAttempt.id.desc()).limit(1))
    return int(tried) if tried is not None else None


def _values(payout: Mapping[str, Any], *, account_id: str, event_created: datetime | None
            ) -> dict[str, Any]:
    status = str(payout.get("status") or "")
    return {
        "stripe_account_id": account_id,
        "amount_minor": int(payout.get("amount") or 0),
        # As Stripe sent it (a currency the desk does not pay in is still a fact to record).
        "currency": str(payout.get("currency") or "").strip().lower()[:3],
        "status": status,
        "failure_code": (str(payout["failure_code"])[:100] if payout.get("failure_code")
                         else None),
        "failure_message": str(payout["failure_message"]) if payout.get("failure_message")
        else None,
        "arrival_date": _moment(payout.get("arrival_date")),
        "stripe_created": _moment(payout.get("created")),
        "livemode": bool(payout.get("livemode")),
        "event_created": event_created,
        "settled_at": (event_created or utcnow()) if status in _SETTLED else None,
        "raw": dict(payout),
    }


def _newer(row: BankPayout, values: Mapping[str, Any]) -> bool:
    """Does this event's payout move the row forward (never back to an earlier status)?"""
    old, new = _RANK[row.status], _RANK[values["status"]]
    if new != old:
        return new > old
    stored, incoming = row.event_created, values["event_created"]
    return stored is None or (incoming is not None and incoming > stored)


def record_payout(
    session: Session, *, payout: Mapping[str, Any], account_id: str,
    event_created: datetime | None,
) -> tuple[BankPayout, bool]:
    """Insert or move forward the row of ``payout``; (the row, whether this call changed it)."""
    status = str(payout.get("status") or "")
    if status not in _RANK:
        raise ValueError(f"unknown payout status {status!r}")
    values = _values(payout, account_id=account_id, event_created=event_created)
    payout_id = str(payout["id"])
    row = session.scalars(select(BankPayout).where(BankPayout.stripe_payout_id == payout_id)
                          .with_for_update()).one_or_none()
    if row is None:
        try:
            with session.begin_nested():
                row = BankPayout(stripe_payout_id=payout_id,
                                 freelancer_id=_owner(session, account_id), **values)
                session.add(row)
            return row, True
        except IntegrityError:
            # Another delivery of this payout won the insert: move its row forward instead.
            row = session.scalars(select(BankPayout).where(
                BankPayout.stripe_payout_id == payout_id).with_for_update()).one()
    if not _newer(row, values):
        return row, False
    keep_settled = row.settled_at if row.status == values["status"] else None
    for name, value in values.items():
        setattr(row, name, value)
    if keep_settled is not None:
        row.settled_at = keep_settled
    if row.freelancer_id is None:
        row.freelancer_id = _owner(session, account_id)
    return row, True


def apply_payout_event(
    factory: sessionmaker[Session], _gateway: StripeGateway, event: dict[str, Any],
) -> str | None:
    """The webhook handler of ``payout.*`` events (registered in ``lib.webhooks.HANDLERS``)."""
    obj = (event.get("data") or {}).get("object") or {}
    payout_id = obj.get("id")
    if obj.get("object") != "payout" or not isinstance(payout_id, str):
        return "ignored: the event carries no payout"
    account_id = event.get("account")
    if not account_id:
        return "ignored: a payout of the platform's own balance, not a connected account's"
    if str(obj.get("status") or "") not in _RANK:
        return f"ignored: unknown payout status {obj.get('status')!r}"
    created = _moment(event.get("created"))
    with factory.begin() as session:
        row, changed = record_payout(session, payout=obj, account_id=str(account_id),
                                     event_created=created)
        if row.freelancer_id is None:
            logger.info("bank payout %s of %s belongs to no freelancer", payout_id, account_id)
        if not changed:
            return f"ignored: {payout_id} is already {row.status} (older or repeated event)"
        if row.status == BankPayoutStatus.FAILED.value:
            logger.info("bank payout %s of %s failed: %s", payout_id, account_id,
                        row.failure_code)
    return None


# ---- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FailedBankPayout:
    id: int
    stripe_payout_id: str
    stripe_account_id: str
    freelancer_id: int | None
    freelancer_name: str | None
    freelancer_email: str | None
    amount_minor: int
    currency: str
    failure_code: str | None
    failed_at: datetime | None
    created_at: datetime | None

    @property
    def amount(self) -> str:
        return money_text(self.amount_minor, self.currency)

    @property
    def reason(self) -> str:
        return failure_reason(self.failure_code)

    @property
    def remedy(self) -> str:
        return failure_remedy(self.failure_code)


@dataclass(frozen=True, slots=True)
class FailedPage:
    rows: list[FailedBankPayout]
    total: int


def _failed_since(since: datetime | None) -> Any:
    condition = BankPayout.status == BankPayoutStatus.FAILED.value
    return and_(condition, BankPayout.settled_at >= since) if since is not None else condition


def failed_payouts(
    session: Session, *, operator: Operator, since: datetime | None = None,
    freelancer_id: int | None = None, limit: int = 50, offset: int = 0,
) -> FailedPage:
    """Failed bank payouts, newest failure first (optionally one freelancer's)."""
    authorize(operator, Action.VIEW_BANK_PAYOUTS, session=session)
    check_page(limit=limit, offset=offset, maximum=MAX_PAGE)
    where = [_failed_since(since)]
    if freelancer_id is not None:
        where.append(BankPayout.freelancer_id == freelancer_id)
    total = session.scalar(select(func.count(BankPayout.id)).where(*where)) or 0
    rows = session.execute(
        select(BankPayout, Freelancer.name, Freelancer.email)
        .outerjoin(Freelancer, Freelancer.id == BankPayout.freelancer_id)
        .where(*where)
        .order_by(BankPayout.settled_at.desc(), BankPayout.id.desc())
        .limit(limit).offset(offset)
    )
    return FailedPage([_failed(p, name, email) for p, name, email in rows], int(total))


def _failed(p: BankPayout, name: str | None, email: str | None) -> FailedBankPayout:
    return FailedBankPayout(
        id=p.id, stripe_payout_id=p.stripe_payout_id, stripe_account_id=p.stripe_account_id,
        freelancer_id=p.freelancer_id, freelancer_name=name, freelancer_email=email,
        amount_minor=p.amount_minor, currency=p.currency, failure_code=p.failure_code,
        failed_at=p.settled_at, created_at=p.stripe_created)


@dataclass(frozen=True, slots=True)
class FreelancerFailures:
    """One freelancer's failed bank payouts, and whether a later one went through."""

    freelancer_id: int | None
    freelancer_name: str | None
    freelancer_email: str | None
    stripe_account_id: str
    failures: int
    last_failed_at: datetime | None
    last_failure_code: str | None
    #: Failed amounts per currency (never added across currencies), minor units.
    failed_minor: dict[str, int]
    #: A bank payout was paid after the last failure: the bank details work again.
    paid_since: bool

    @property
    def reason(self) -> str:
        return failure_reason(self.last_failure_code)

    @property
    def remedy(self) -> str:
        return failure_remedy(self.last_failure_code)

    @property
    def failed_amounts(self) -> str:
        return ", ".join(money_text(amount, currency)
                         for currency, amount in sorted(self.failed_minor.items()))


def failures_by_freelancer(
    session: Session, *, operator: Operator, since: datetime | None = None, limit: int = 200,
) -> list[FreelancerFailures]:
    """Per freelancer (and account): failures in the window, the latest reason, and whether a
    bank payout was paid after it. Unresolved ones first, then the most recent failure."""
    authorize(operator, Action.VIEW_BANK_PAYOUTS, session=session)
    check_page(limit=limit, offset=0, maximum=MAX_PAGE)
    key = (BankPayout.freelancer_id, BankPayout.stripe_account_id)
    grouped = (
        select(*key, BankPayout.currency, func.count(BankPayout.id).label("failures"),
               func.sum(BankPayout.amount_minor).label("amount"),
               func.max(BankPayout.settled_at).label("last_failed_at"))
        .where(_failed_since(since))
        .group_by(*key, BankPayout.currency)
    )
    per: dict[tuple[int | None, str], dict[str, Any]] = {}
    for freelancer_id, account_id, currency, failures, amount, last in session.execute(grouped):
        entry = per.setdefault((freelancer_id, account_id), {
            "failures": 0, "amounts": {}, "last": None})
        entry["failures"] += int(failures)
        entry["amounts"][currency] = entry["amounts"].get(currency, 0) + int(amount or 0)
        if last is not None and (entry["last"] is None or last > entry["last"]):
            entry["last"] = last
    if not per:
        return []
    accounts = sorted({account for _, account in per})
    latest = aliased(BankPayout)
    last_codes = {
        (fid, account): code for fid, account, code in session.execute(
            select(latest.freelancer_id, latest.stripe_account_id, latest.failure_code)
            .where(latest.stripe_account_id.in_(accounts),
                   latest.status == BankPayoutStatus.FAILED.value)
            .order_by(latest.settled_at, latest.id))
    }
    paid_after = {
        (fid, account): last for fid, account, last in session.execute(
            select(BankPayout.freelancer_id, BankPayout.stripe_account_id,
                   func.max(BankPayout.settled_at))
            .where(BankPayout.stripe_account_id.in_(accounts),
                   BankPayout.status == BankPayoutStatus.PAID.value)
            .group_by(BankPayout.freelancer_id, BankPayout.stripe_account_id))
    }
    ids = sorted({fid for fid, _ in per if fid is not None})
    people = {fid: (name, email) for fid, name, email in session.execute(
        select(Freelancer.id, Freelancer.name, Freelancer.email).where(Freelancer.id.in_(ids)))
    } if ids else {}
    found = []
    for (fid, account), entry in per.items():
        paid = paid_after.get((fid, account))
        name, email = people.get(fid, (None, None)) if fid is not None else (None, None)
        found.append(FreelancerFailures(
            freelancer_id=fid, freelancer_name=name, freelancer_email=email,
            stripe_account_id=account, failures=entry["failures"],
            last_failed_at=entry["last"], last_failure_code=last_codes.get((fid, account)),
            failed_minor=entry["amounts"],
            paid_since=bool(paid and entry["last"] and paid > entry["last"])))
    oldest = datetime.min.replace(tzinfo=UTC)
    found.sort(key=lambda f: (f.paid_since, -(f.last_failed_at or oldest).timestamp()))
    return found[:limit]


def iter_failure_rows(
    session: Session, *, operator: Operator, since: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Failed bank payouts as export rows (every column a person reads)."""
    authorize(operator, Action.EXPORT, session=session)
    page = failed_payouts(session, operator=operator, since=since, limit=MAX_PAGE)
    offset = 0
    while page.rows:
        for row in page.rows:
            yield {
                "failed_at": row.failed_at, "freelancer": row.freelancer_name or "",
                "email": row.freelancer_email or "", "stripe_account": row.stripe_account_id,
                "amount": row.amount, "currency": row.currency.upper(),
                "amount_minor": row.amount_minor, "failure_code": row.failure_code or "",
                "reason": row.reason, "what_to_do": row.remedy,
                "stripe_payout": row.stripe_payout_id,
            }
        offset += len(page.rows)
        if offset >= page.total:
            return
        page = failed_payouts(session, operator=operator, since=since, limit=MAX_PAGE,
                              offset=offset)


EXPORT_COLUMNS = ("failed_at", "freelancer", "email", "stripe_account", "amount", "currency",
                  "amount_minor", "failure_code", "reason", "what_to_do", "stripe_payout")
