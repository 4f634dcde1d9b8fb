"""The Requirements due page: every connected account with something to provide, by deadline.

"Something" is anything currently due, past due, eventually due or pending verification (the
promoted counts, so the filter is plain SQL; the total is the same accounts, read from the
``requirements`` summary kept with the requirement index below). Rows come a page at a time
sorted by deadline (none last); the requirement codes are read from the mirror's JSON for that
page only.

Counts per requirement type come from the requirement index (``requirement_codes``, one row
per attached account, list and code, kept by ``lib.requirement_index``) and the summary it
keeps, instead of expanding every account's JSON lists on each load. A (list, code) pair names each account once,
so its row count is a count of accounts; codes sharing a plain label (the three date-of-birth
fields) are counted again as *distinct accounts* per label, so an account counts once.

Why the export carries a remediation text and not a link
    An onboarding link is single use and lives about five minutes, so links generated for a
    thousand rows would be dead before finance sent the first. The export names, per account,
    what to do: for accounts the platform onboards (Express/Custom) "generate an onboarding link
    on the Onboarding links page", for Standard accounts (connected through OAuth, the
    freelancer owns the dashboard) "ask the freelancer to update their Stripe Dashboard", and
    it says when nothing can be done (rejected) or nothing needs doing yet (in review).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, or_, select
from sqlalchemy.orm import Session

from lib.account_status import ConnectionStatus, requirement_label
from lib.db import utcnow
from lib.errors import ValidationError
from lib.models import (
    ConnectedAccount,
    ConnectionMethod,
    Freelancer,
    OutreachContact,
    RequirementCode,
)
from lib.paging import check_page, count_capped
from lib.roles import Action, Operator, authorize
from lib.summaries.keys import day_of
from lib.summaries.requirements import EVERY_ACCOUNT, KIND, keys_of
from lib.summaries.store import read

MAX_PAGE = 500
MAX_EXPORT = 100_000
#: A total the summary cannot give (not contacted lately) is counted this far only, then shown
#: as "more than" (issue 22).
COUNT_CAP = 10_000
EXPORT_CHUNK = 2_000

#: (key in ``requirements``, how the page names it), most urgent first.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("past_due", "Past due"),
    ("currently_due", "Currently due"),
    ("eventually_due", "Eventually due"),
    ("pending_verification", "Pending verification"),
)

REMEDY_LINK = ("Generate an onboarding link on the Onboarding links page and send it to the "
               "freelancer at once (a link works once, for about 5 minutes).")
REMEDY_DASHBOARD = ("Ask the freelancer to update their details in their own Stripe Dashboard "
                    "(a Standard account: we cannot send them an onboarding link).")
REMEDY_REJECTED = ("Rejected by Stripe: nothing the freelancer can submit. Contact Stripe "
                   "support if this is a mistake.")
REMEDY_WAIT = "Nothing to do now: Stripe is verifying what was submitted."
NOT_URGENT = "Not urgent (due later): "


def remediation(*, account_type: str | None, connection_method: str | None, status: str,
                due_now: bool, eventually_due: bool) -> str:
    """What finance should do about an account's requirements, in one sentence."""
    if status == ConnectionStatus.REJECTED.value:
        return REMEDY_REJECTED
    if not due_now and not eventually_due:
        return REMEDY_WAIT
    standard = account_type == "standard" or (
        account_type is None and connection_method == ConnectionMethod.OAUTH.value)
    remedy = REMEDY_DASHBOARD if standard else REMEDY_LINK
    return remedy if due_now else NOT_URGENT + remedy


@dataclass(frozen=True, slots=True)
class RequirementDueRow:
    freelancer_id: int
    name: str
    email: str
    stripe_account_id: str
    account_type: str | None
    status: str
    deadline: datetime | None
    disabled_reason: str | None
    codes: dict[str, list[str]] = field(default_factory=dict)
    remediation: str = ""

    def labels(self, category: str) -> list[str]:
        """Plain words, each with its code: ``Identity document (individual.verification…)``."""
        return [f"{requirement_label(c)} ({c})" for c in self.codes.get(category, [])]

    def export(self) -> dict[str, Any]:
        return {
            "freelancer_id": self.freelancer_id, "name": self.name, "email": self.email,
            "stripe_account_id": self.stripe_account_id, "account_type": self.account_type,
            "status": self.status, "deadline": self.deadline,
            **{key: "; ".join(self.labels(key)) for key, _ in CATEGORIES},
            "remediation": self.remediation,
        }


EXPORT_COLUMNS: tuple[str, ...] = (
    "freelancer_id", "name", "email", "stripe_account_id", "account_type", "status",
    "deadline", *(key for key, _ in CATEGORIES), "remediation",
)


@dataclass(frozen=True, slots=True)
class RequirementsPage:
    rows: list[RequirementDueRow]
    total: int
    limit: int
    offset: int
    #: Counting stopped at :data:`COUNT_CAP`: "more than" ``total`` accounts (issue 22).
    total_is_lower_bound: bool = False


@dataclass(frozen=True, slots=True)
class RequirementCount:
    category: str
    label: str
    accounts: int
    #: The requirements list (``past_due`` …): with ``label``, what a bar of the chart filters
    #: (``category`` already names it for people, so it takes no part in comparisons).
    bucket: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class RequirementFilter:
    """Accounts asked for one requirement (its plain label) in one list: a bar of the chart."""

    bucket: str
    label: str

    def __post_init__(self) -> None:
        if self.bucket not in dict(CATEGORIES):
            raise ValidationError(f"Unknown requirements list {self.bucket!r}.")


def _something_due() -> ColumnElement[bool]:
    # The same accounts as "has rows in the index" (see lib.requirement_index.codes_of), read
    # from the row being scanned instead of probing the index for each one.
    return or_(ConnectedAccount.currently_due_count > 0, ConnectedAccount.past_due_count > 0,
               ConnectedAccount.eventually_due_count > 0,
               ConnectedAccount.pending_verification_count > 0)


def _deadline_cutoff(within_days: int | None, now: datetime) -> datetime | None:
    """Deadlines before this are "within N days" (overdue ones too: they are the most urgent)."""
    if within_days is None:
        return None
    if within_days < 0:
        raise ValidationError("The number of days must not be negative.")
    return now + timedelta(days=within_days)


def _scope(statement: Select[Any], within_days: int | None, now: datetime,
           asked: list[str] | None = None, bucket: str | None = None) -> Select[Any]:
    statement = statement.where(_something_due())
    cutoff = _deadline_cutoff(within_days, now)
    if cutoff is not None:
        statement = statement.where(ConnectedAccount.current_deadline < cutoff)
    if asked is not None:
        statement = statement.where(ConnectedAccount.id.in_(
            select(RequirementCode.account_id).where(RequirementCode.bucket == bucket,
                                                     RequirementCode.code.in_(asked))))
    return statement


def _codes_for(session: Session, requirement: RequirementFilter | None) -> list[str] | None:
    """The codes of ``requirement``'s list that read as its label (seeks on the index)."""
    if requirement is None:
        return None
    codes = session.scalars(select(RequirementCode.code)
                            .where(RequirementCode.bucket == requirement.bucket).distinct())
    return [c for c in codes if requirement_label(str(c)) == requirement.label]


def _not_contacted(statement: Select[Any], days: int | None, now: datetime) -> Select[Any]:
    """Only freelancers no outreach email was recorded for in the last ``days`` (issue 20)."""
    if days is None:
        return statement
    if days < 0:
        raise ValidationError("The number of days must not be negative.")
    return statement.where(~exists().where(
        OutreachContact.freelancer_id == Freelancer.id,
        OutreachContact.created_at >= now - timedelta(days=days)))


def _due_not_contacted(statement: Select[Any], days: int | None,
                       now: datetime) -> Select[Any]:
    """Due now (currently or past due: what an email is about) and not contacted lately."""
    if days is None:
        return statement
    statement = statement.where(or_(ConnectedAccount.currently_due_count > 0,
                                    ConnectedAccount.past_due_count > 0))
    return _not_contacted(statement, days, now)


def _joined(*columns: Any) -> Select[Any]:
    return select(*columns).select_from(ConnectedAccount).join(
        Freelancer, Freelancer.stripe_account_id == ConnectedAccount.stripe_id)


def _row_select() -> Select[Any]:
    return _joined(
        Freelancer.id, Freelancer.name, Freelancer.email, Freelancer.connection_method,
        ConnectedAccount.stripe_id, ConnectedAccount.type, ConnectedAccount.status,
        ConnectedAccount.current_deadline, ConnectedAccount.disabled_reason,
        ConnectedAccount.requirements,
    ).order_by(ConnectedAccount.current_deadline.asc().nulls_last(), Freelancer.name,
               Freelancer.id)


def _to_row(values: Any) -> RequirementDueRow:
    (fid, name, email, method, account_id, kind, status, deadline, reason, requirements) = values
    requirements = requirements or {}
    codes = {key: [str(c) for c in requirements.get(key) or []] for key, _ in CATEGORIES}
    return RequirementDueRow(
        freelancer_id=int(fid), name=name, email=email, stripe_account_id=account_id,
        account_type=kind, status=status, deadline=deadline, disabled_reason=reason,
        codes=codes,
        remediation=remediation(
            account_type=kind, connection_method=method, status=status,
            due_now=bool(codes["currently_due"] or codes["past_due"]),
            eventually_due=bool(codes["eventually_due"])),
    )


def list_requirements_due(
    session: Session, *, operator: Operator, within_days: int | None = None,
    limit: int = 50, offset: int = 0, now: datetime | None = None,
    requirement: RequirementFilter | None = None,
    not_contacted_days: int | None = None,
) -> RequirementsPage:
    """One page of accounts with something to provide, soonest deadline first (only those
    asked for ``requirement`` when given).

    ``not_contacted_days``: only currently or past due accounts whose freelancer was not
    emailed about them (``lib.outreach``) in that many days: the ones to chase next.
    """
    authorize(operator, Action.VIEW_REQUIREMENTS, session=session)
    check_page(limit, offset, maximum=MAX_PAGE)
    moment = now or utcnow()
    asked = _codes_for(session, requirement)
    bucket = requirement.bucket if requirement is not None else None
    cutoff = _deadline_cutoff(within_days, moment)
    if not_contacted_days is None:
        # Exact from the summary (issue 22): the same accounts as the index's, once each.
        pair = EVERY_ACCOUNT if requirement is None else (requirement.bucket, requirement.label)
        total, at_least = _label_counts(session, cutoff, pair).get(pair, 0), False
    else:
        # Who was emailed lately is not summarised: count up to the cap instead of scanning.
        matching = _due_not_contacted(
            _scope(_joined(ConnectedAccount.id), within_days, moment, asked, bucket),
            not_contacted_days, moment)
        total, at_least = count_capped(session, matching, cap=COUNT_CAP)
    rows = session.execute(_due_not_contacted(
        _scope(_row_select(), within_days, moment, asked, bucket), not_contacted_days, moment)
        .limit(limit).offset(offset))
    return RequirementsPage([_to_row(r) for r in rows], total, limit, offset, at_least)


def iter_export_rows(
    session: Session, *, operator: Operator, within_days: int | None = None,
    now: datetime | None = None, requirement: RequirementFilter | None = None,
) -> Iterator[dict[str, Any]]:
    """Every row of the filtered list as export dicts (account, labels, remediation)."""
    authorize(operator, Action.EXPORT, session=session)
    statement = _scope(_row_select(), within_days, now or utcnow(),
                       _codes_for(session, requirement),
                       requirement.bucket if requirement is not None else None
                       ).limit(MAX_EXPORT)
    for values in session.execute(statement.execution_options(yield_per=EXPORT_CHUNK)):
        yield _to_row(values).export()


def _label_counts(session: Session, cutoff: datetime | None,
                  only: tuple[str, str] | None = None) -> dict[tuple[str, str], int]:
    """Accounts per (list, label) from the ``requirements`` summary (issue 22), with every
    account in the index once under :data:`EVERY_ACCOUNT`; only the ``only`` pair when given.

    With a deadline cutoff, the whole days before it come from the summary and the cutoff's own
    day from the index (an account's codes share one deadline, so the two parts never count an
    account twice).
    """
    where = None if only is None else {"k1": (only[0],), "k2": (only[1],)}
    counts: dict[tuple[str, str], int] = {}
    if cutoff is None:
        rows = read(session, KIND, group=("k1", "k2"), where=where)
    else:
        midnight = datetime.combine(cutoff.astimezone(UTC).date(), time(), tzinfo=UTC)
        rows = read(session, KIND, first_day="0000-00-01", before_day=day_of(midnight),
                    group=("k1", "k2"), where=where)
        partial: dict[int, list[tuple[str, str, datetime | None]]] = {}
        statement = (select(RequirementCode.account_id, RequirementCode.bucket,
                            RequirementCode.code, RequirementCode.deadline)
                     .where(RequirementCode.deadline >= midnight,
                            RequirementCode.deadline < cutoff))
        if only is not None and only != EVERY_ACCOUNT:
            statement = statement.where(RequirementCode.bucket == only[0])
        for account_id, bucket, code, deadline in session.execute(statement):
            partial.setdefault(int(account_id), []).append((str(bucket), str(code), deadline))
        for found in partial.values():
            for _, _, bucket, label, _ in keys_of(found):
                if only is None or (bucket, label) == only:
                    counts[(bucket, label)] = counts.get((bucket, label), 0) + 1
    for row in rows:
        counts[(row.k1, row.k2)] = counts.get((row.k1, row.k2), 0) + row.n
    return counts


def requirement_counts(
    session: Session, *, operator: Operator, within_days: int | None = None,
    now: datetime | None = None,
) -> list[RequirementCount]:
    """Accounts asked for each requirement (plain label), per category (see
    :func:`_label_counts`: each account counted once per label)."""
    authorize(operator, Action.VIEW_REQUIREMENTS, session=session)
    counts = _label_counts(session, _deadline_cutoff(within_days, now or utcnow()))
    names = dict(CATEGORIES)
    rank = {name: index for index, (_, name) in enumerate(CATEGORIES)}
    result = [RequirementCount(names[bucket], label, accounts, bucket)
              for (bucket, label), accounts in counts.items() if bucket in names and accounts]
    return sorted(result, key=lambda r: (rank[r.category], -r.accounts, r.label))
