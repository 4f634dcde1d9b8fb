"""Reading freelancers and their connected accounts for the Accounts page.

Built for 100,000 accounts: filters are SQL ``WHERE`` clauses on indexed promoted columns, the
list selects only the columns it shows (never the raw JSON), paging is server-side over a
stable ``ORDER BY name, id`` that the ``ix_freelancers_name`` index serves, and the count skips
the join when no filter needs the mirror. A page therefore costs the same two queries whatever
the table size.

Paging is by keyset: the next page is the rows *after* the last row shown (``name, id``), the
previous one the rows *before* the first, the last page the rows from the end backwards, so the
database seeks the index to the page instead of walking (and joining) every row before it with
an OFFSET: page 1,000 costs what page 1 costs. ``id`` breaks ties between equal names, so no row
is skipped or shown twice. An offset is still served for a page number typed in. The export runs the very same ``WHERE`` clause
(so it is exactly what the filters show) over every page, streamed in chunks and capped at
:data:`MAX_EXPORT` rows.

Status is the promoted ``connected_accounts.status`` of the freelancer's *current* account;
a freelancer with no account is ``NOT_CONNECTED`` and one connected but not yet mirrored is
``PENDING`` (as ``lib.connect_flow.connection_status`` says).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, ScalarResult, Select, and_, case, false, func, or_, select
from sqlalchemy.orm import Session

from lib.account_status import ConnectionStatus, disabled_reason_label, requirement_label
from lib.errors import NotFoundError, ValidationError
from lib.index_scan import distinct_by_seeks
from lib.models import ConnectedAccount, ConnectionAttempt, Freelancer, Payout
from lib.money import minor_to_display
from lib.paging import check_page, count_capped
from lib.roles import Action, Operator, authorize
from lib.summaries.store import Ask, read_many

MAX_PAGE = 500
MAX_EXPORT = 100_000
#: Rows fetched per round trip while streaming an export.
EXPORT_CHUNK = 2_000
#: How much history the detail view shows (newest first).
HISTORY_LIMIT = 50


class DueFilter(enum.StrEnum):
    ANY = "any"
    DUE = "due"
    PAST_DUE = "past_due"
    NOTHING_DUE = "nothing_due"


@dataclass(frozen=True, slots=True)
class AccountFilter:
    """What the Accounts page filters on; empty means "any"."""

    statuses: tuple[str, ...] = ()
    due: DueFilter = DueFilter.ANY
    country: str | None = None
    connected_since: datetime | None = None
    search: str = ""


@dataclass(frozen=True, slots=True)
class AccountRow:
    freelancer_id: int
    name: str
    email: str
    status: str
    stripe_account_id: str | None
    account_type: str | None
    country: str | None
    charges_enabled: bool
    payouts_enabled: bool
    requirements_due: int
    past_due: int
    deadline: datetime | None
    connected_at: datetime | None
    last_synced: datetime | None


#: Column order of the table and of the CSV export.
EXPORT_COLUMNS: tuple[str, ...] = tuple(AccountRow.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class AccountCursor:
    """A row's place in the table's order (name, then id): where a keyset page starts or ends."""

    name: str
    freelancer_id: int


@dataclass(frozen=True, slots=True)
class AccountPage:
    rows: list[AccountRow]
    total: int
    limit: int
    offset: int
    has_next: bool = False
    has_previous: bool = False
    #: The filters had no summary to count from, so counting stopped at ``COUNT_CAP``:
    #: "more than" ``total`` rows.
    total_is_lower_bound: bool = False

    @property
    def has_more(self) -> bool:
        return self.has_next

    @property
    def first(self) -> AccountCursor | None:
        """The first row's place: ``before=`` it is the previous page."""
        return AccountCursor(self.rows[0].name, self.rows[0].freelancer_id) if self.rows else None

    @property
    def last(self) -> AccountCursor | None:
        """The last row's place: ``after=`` it is the next page."""
        return (AccountCursor(self.rows[-1].name, self.rows[-1].freelancer_id)
                if self.rows else None)


# ---- the one WHERE clause --------------------------------------------------------------------

_STATUS = case(
    (Freelancer.stripe_account_id.is_(None), ConnectionStatus.NOT_CONNECTED.value),
    (ConnectedAccount.id.is_(None), ConnectionStatus.PENDING.value),
    else_=ConnectedAccount.status,
)

_ON_ACCOUNT = Freelancer.stripe_account_id == ConnectedAccount.stripe_id


def _status_clause(statuses: tuple[str, ...]) -> ColumnElement[bool]:
    unknown = set(statuses) - set(ConnectionStatus._value2member_map_)
    if unknown:
        raise ValidationError(f"Unknown status {sorted(unknown)[0]!r}.")
    clauses: list[ColumnElement[bool]] = []
    if ConnectionStatus.NOT_CONNECTED.value in statuses:
        clauses.append(Freelancer.stripe_account_id.is_(None))
    mirrored = [s for s in statuses if s != ConnectionStatus.NOT_CONNECTED.value]
    if mirrored:
        # Plain IN on the indexed column; the CASE above only decides the unmirrored edge.
        clauses.append(and_(Freelancer.stripe_account_id.is_not(None),
                            ConnectedAccount.status.in_(mirrored)))
    if ConnectionStatus.PENDING.value in statuses:
        clauses.append(and_(Freelancer.stripe_account_id.is_not(None),
                            ConnectedAccount.id.is_(None)))
    return or_(*clauses) if clauses else false()


def _like_pattern(text: str) -> str:
    return "%" + text.replace("%", "").replace("_", "").lower() + "%"


def _search_clause(text: str) -> ColumnElement[bool] | None:
    needle = text.strip()
    if not needle:
        return None
    if needle.startswith("acct_"):
        # Account ids are unique and indexed: equality, not a scan.
        return Freelancer.stripe_account_id == needle
    pattern = _like_pattern(needle)
    return or_(func.lower(Freelancer.name).like(pattern),
               func.lower(Freelancer.email).like(pattern))


def _needs_mirror(filters: AccountFilter) -> bool:
    return bool(filters.statuses or filters.due is not DueFilter.ANY or filters.country)


def _where(statement: Select[Any], filters: AccountFilter) -> Select[Any]:
    if filters.statuses:
        statement = statement.where(_status_clause(filters.statuses))
    if filters.due is DueFilter.DUE:
        statement = statement.where(Freelancer.stripe_account_id.is_not(None),
                                    ConnectedAccount.currently_due_count > 0)
    elif filters.due is DueFilter.PAST_DUE:
        statement = statement.where(Freelancer.stripe_account_id.is_not(None),
                                    ConnectedAccount.past_due_count > 0)
    elif filters.due is DueFilter.NOTHING_DUE:
        statement = statement.where(
            func.coalesce(ConnectedAccount.currently_due_count, 0) == 0,
            func.coalesce(ConnectedAccount.past_due_count, 0) == 0)
    if filters.country:
        code = filters.country.strip().upper()
        statement = statement.where(or_(
            ConnectedAccount.country == code,
            and_(ConnectedAccount.id.is_(None), Freelancer.country == code)))
    if filters.connected_since is not None:
        statement = statement.where(Freelancer.stripe_account_id.is_not(None),
                                    Freelancer.connected_at >= filters.connected_since)
    searched = _search_clause(filters.search)
    if searched is not None:
        statement = statement.where(searched)
    return statement


def _list_select() -> Select[Any]:
    return (
        select(
            Freelancer.id, Freelancer.name, Freelancer.email, _STATUS,
            Freelancer.stripe_account_id, ConnectedAccount.type,
            func.coalesce(ConnectedAccount.country, Freelancer.country),
            func.coalesce(ConnectedAccount.charges_enabled, False),
            func.coalesce(ConnectedAccount.payouts_enabled, False),
            func.coalesce(ConnectedAccount.currently_due_count, 0),
            func.coalesce(ConnectedAccount.past_due_count, 0),
            ConnectedAccount.current_deadline, Freelancer.connected_at,
            ConnectedAccount.synced_at,
        )
        .select_from(Freelancer)
        .outerjoin(ConnectedAccount, _ON_ACCOUNT)
    )


def _to_row(values: Any) -> AccountRow:
    (fid, name, email, status, account_id, kind, country, charges, payouts, due, past_due,
     deadline, connected_at, synced_at) = values
    return AccountRow(
        freelancer_id=int(fid), name=name, email=email, status=str(status),
        stripe_account_id=account_id, account_type=kind, country=country,
        charges_enabled=bool(charges), payouts_enabled=bool(payouts),
        requirements_due=int(due), past_due=int(past_due), deadline=deadline,
        connected_at=connected_at if account_id else None,
        last_synced=synced_at if account_id else None,
    )


def _ordered(statement: Select[Any]) -> Select[Any]:
    return statement.order_by(Freelancer.name, Freelancer.id)


def _after(cursor: AccountCursor) -> ColumnElement[bool]:
    # The plain range on name is what the index seeks to; the OR only breaks ties by id.
    return and_(Freelancer.name >= cursor.name,
                or_(Freelancer.name > cursor.name, Freelancer.id > cursor.freelancer_id))


def _before(cursor: AccountCursor) -> ColumnElement[bool]:
    return and_(Freelancer.name <= cursor.name,
                or_(Freelancer.name < cursor.name, Freelancer.id < cursor.freelancer_id))


# ---- the filtered total ------------------------------------------------------------------------

#: Filters the summaries cannot count (a search, a country, a date) are counted this far only.
COUNT_CAP = 10_000


def _from_summaries(session: Session, filters: AccountFilter) -> int | None:
    """The exact total from the ``freelancers`` and ``accounts`` summaries (issue 22), or None
    when the filters go beyond status and due (which those summaries are keyed by)."""
    if filters.country or filters.connected_since is not None or filters.search.strip():
        return None
    if filters.statuses:
        _status_clause(filters.statuses)  # the same refusal of an unknown status
    rows = read_many(session, [Ask("people", "freelancers", group=("k1",)),
                               Ask("accounts", "accounts", group=("k1", "k2", "k3"))])
    unconnected = sum(r.n for r in rows["people"] if r.k1 == "0")
    connected = sum(r.n for r in rows["people"] if r.k1 == "1")
    unmirrored = connected - sum(r.n for r in rows["accounts"])
    wanted = set(filters.statuses)
    total = 0
    for row in rows["accounts"]:
        due, past_due = row.k2 == "1", row.k3 == "1"
        if wanted and row.k1 not in wanted:
            continue
        if ((filters.due is DueFilter.DUE and not due)
                or (filters.due is DueFilter.PAST_DUE and not past_due)
                or (filters.due is DueFilter.NOTHING_DUE and (due or past_due))):
            continue
        total += row.n
    if filters.due in (DueFilter.ANY, DueFilter.NOTHING_DUE):
        if not wanted or ConnectionStatus.NOT_CONNECTED.value in wanted:
            total += unconnected
        if not wanted or ConnectionStatus.PENDING.value in wanted:
            total += unmirrored
    return total


def _total(session: Session, filters: AccountFilter) -> tuple[int, bool]:
    """(total, whether it is only a lower bound)."""
    exact = _from_summaries(session, filters)
    if exact is not None:
        return exact, False
    matching = select(Freelancer.id).select_from(Freelancer)
    if _needs_mirror(filters):
        matching = matching.outerjoin(ConnectedAccount, _ON_ACCOUNT)
    return count_capped(session, _where(matching, filters), cap=COUNT_CAP)


# ---- public reads ----------------------------------------------------------------------------


def list_accounts(
    session: Session, *, operator: Operator, filters: AccountFilter | None = None,
    limit: int = 50, offset: int = 0, after: AccountCursor | None = None,
    before: AccountCursor | None = None, from_end: bool = False,
) -> AccountPage:
    """One page of freelancers with their account state, by name, plus the filtered total.

    The page is the ``limit`` rows ``after`` a row, ``before`` a row, at the end (``from_end``),
    or ``offset`` rows in. The first three seek the name index, so any page costs what the first
    costs; an offset walks (and joins) every row it skips, for a page number typed in.
    """
    authorize(operator, Action.VIEW_ACCOUNTS, session=session)
    check_page(limit, offset, maximum=MAX_PAGE)
    if sum((after is not None, before is not None, from_end, offset > 0)) > 1:
        raise ValidationError("A page starts at one place: an offset, after or before a row, "
                              "or the end.")
    chosen = filters or AccountFilter()
    total, at_least = _total(session, chosen)
    statement = _where(_list_select(), chosen)
    if after is not None:
        statement = statement.where(_after(after))
    if before is not None:
        statement = statement.where(_before(before))
    backwards = before is not None or from_end
    if backwards:
        statement = statement.order_by(Freelancer.name.desc(), Freelancer.id.desc())
    else:
        statement = _ordered(statement)
    if offset:
        statement = statement.offset(offset)
    # One row more than shown says whether another page follows, without a second query.
    fetched = session.execute(statement.limit(limit + 1)).all()
    more = len(fetched) > limit
    shown = list(fetched[:limit])
    if backwards:
        shown.reverse()
        has_next, has_previous = before is not None, more
    else:
        has_next, has_previous = more, after is not None or offset > 0
    return AccountPage(rows=[_to_row(r) for r in shown], total=int(total), limit=limit,
                       offset=offset, has_next=has_next, has_previous=has_previous,
                       total_is_lower_bound=at_least)


def iter_export_rows(
    session: Session, *, operator: Operator, filters: AccountFilter | None = None,
) -> Iterator[dict[str, Any]]:
    """Every row the filters show (all pages, same order), streamed, at most MAX_EXPORT."""
    authorize(operator, Action.EXPORT, session=session)
    statement = _ordered(_where(_list_select(), filters or AccountFilter())).limit(MAX_EXPORT)
    result = session.execute(statement.execution_options(yield_per=EXPORT_CHUNK))
    for values in result:
        yield asdict(_to_row(values))


def export_rows(
    session: Session, *, operator: Operator, filters: AccountFilter | None = None,
) -> list[dict[str, Any]]:
    """The same as :func:`iter_export_rows`, as a list."""
    return list(iter_export_rows(session, operator=operator, filters=filters))


def country_options(session: Session, *, operator: Operator) -> list[str]:
    """Countries present among accounts and freelancers (for the filter's choices)."""
    authorize(operator, Action.VIEW_ACCOUNTS, session=session)
    # Each side one index seek per country (a few hundred at most), not a read of every
    # account and freelancer.
    mirrored = distinct_by_seeks(ConnectedAccount.country, name="account_countries")
    declared = distinct_by_seeks(Freelancer.country, name="declared_countries")
    union = select(mirrored.c.value).union(select(declared.c.value)).subquery()
    countries: ScalarResult[str | None] = session.scalars(select(union.c.value))
    return sorted(str(c) for c in countries if c)


# ---- one account in detail -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequirementItem:
    category: str
    code: str
    label: str


@dataclass(frozen=True, slots=True)
class AttemptRow:
    id: int
    started_at: datetime
    method: str
    issued_by: str
    outcome: str
    failure_reason: str | None
    returned_at: datetime | None
    finished_at: datetime | None
    stripe_account_id: str | None


@dataclass(frozen=True, slots=True)
class PayoutHistoryRow:
    id: int
    created_at: datetime
    amount: str
    currency: str
    amount_minor: int
    status: str
    stripe_transfer_id: str | None
    description: str
    requested_by: str


@dataclass(frozen=True, slots=True)
class AccountDetail:
    freelancer_id: int
    name: str
    email: str
    status: str
    stripe_account_id: str | None
    connection_method: str | None
    connected_at: datetime | None
    disconnected_at: datetime | None
    account_type: str | None
    country: str | None
    charges_enabled: bool
    payouts_enabled: bool
    details_submitted: bool
    deadline: datetime | None
    disabled_reason: str | None
    disabled_reason_label: str | None
    last_synced: datetime | None
    requirements: list[RequirementItem] = field(default_factory=list)
    capabilities: dict[str, str] = field(default_factory=dict)
    attempts: list[AttemptRow] = field(default_factory=list)
    payouts: list[PayoutHistoryRow] = field(default_factory=list)
    payouts_total: int = 0


#: (Stripe list, how the page names it), most urgent first.
REQUIREMENT_CATEGORIES: tuple[tuple[str, str, str], ...] = (
    ("requirements", "past_due", "Past due"),
    ("requirements", "currently_due", "Currently due"),
    ("requirements", "pending_verification", "Pending verification"),
    ("future_requirements", "currently_due", "Due later (future requirements)"),
    ("requirements", "eventually_due", "Eventually due"),
)


def requirement_items(
    requirements: dict[str, Any] | None, future: dict[str, Any] | None
) -> list[RequirementItem]:
    """Every requirement in plain words with its code; a code listed twice shows once."""
    sources = {"requirements": requirements or {}, "future_requirements": future or {}}
    items: list[RequirementItem] = []
    seen: set[str] = set()
    for source, key, category in REQUIREMENT_CATEGORIES:
        codes = sources[source].get(key)
        for code in codes if isinstance(codes, list) else []:
            if str(code) in seen:
                continue
            seen.add(str(code))
            items.append(RequirementItem(category, str(code), requirement_label(str(code))))
    return items


def _capabilities(raw: dict[str, Any] | None) -> dict[str, str]:
    value = (raw or {}).get("capabilities")
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def account_detail(session: Session, *, operator: Operator, freelancer_id: int) -> AccountDetail:
    """A freelancer, the current account's requirements and capabilities, and their history."""
    authorize(operator, Action.VIEW_ACCOUNTS, session=session)
    found = session.execute(
        select(Freelancer, ConnectedAccount)
        .outerjoin(ConnectedAccount, _ON_ACCOUNT)
        .where(Freelancer.id == freelancer_id)
    ).first()
    if found is None:
        raise NotFoundError(f"Freelancer {freelancer_id} does not exist.")
    freelancer, account = found
    attempts = session.scalars(
        select(ConnectionAttempt).where(ConnectionAttempt.freelancer_id == freelancer_id)
        .order_by(ConnectionAttempt.started_at.desc(), ConnectionAttempt.id.desc())
        .limit(HISTORY_LIMIT)
    )
    payouts = session.scalars(
        select(Payout).where(Payout.freelancer_id == freelancer_id)
        .order_by(Payout.created_at.desc(), Payout.id.desc()).limit(HISTORY_LIMIT)
    )
    payouts_total = session.scalar(  # COUNT(*): read from ix_payouts_freelancer_id alone
        select(func.count()).select_from(Payout)
        .where(Payout.freelancer_id == freelancer_id)) or 0
    connected = freelancer.stripe_account_id is not None
    mirror = account if connected else None
    if not connected:
        status = ConnectionStatus.NOT_CONNECTED.value
    else:
        status = mirror.status if mirror is not None else ConnectionStatus.PENDING.value
    return AccountDetail(
        freelancer_id=freelancer.id, name=freelancer.name, email=freelancer.email,
        status=status, stripe_account_id=freelancer.stripe_account_id,
        connection_method=freelancer.connection_method, connected_at=freelancer.connected_at,
        disconnected_at=freelancer.disconnected_at,
        account_type=mirror.type if mirror else None,
        country=(mirror.country if mirror else None) or freelancer.country,
        charges_enabled=bool(mirror and mirror.charges_enabled),
        payouts_enabled=bool(mirror and mirror.payouts_enabled),
        details_submitted=bool(mirror and mirror.details_submitted),
        deadline=mirror.current_deadline if mirror else None,
        disabled_reason=mirror.disabled_reason if mirror else None,
        disabled_reason_label=disabled_reason_label(mirror.disabled_reason) if mirror else None,
        last_synced=mirror.synced_at if mirror else None,
        requirements=requirement_items(mirror.requirements, mirror.future_requirements)
        if mirror else [],
        capabilities=_capabilities(mirror.raw) if mirror else {},
        attempts=[
            AttemptRow(id=a.id, started_at=a.started_at, method=a.method, issued_by=a.issued_by,
                       outcome=a.outcome, failure_reason=a.failure_reason,
                       returned_at=a.returned_at, finished_at=a.finished_at,
                       stripe_account_id=a.stripe_account_id)
            for a in attempts
        ],
        payouts=[
            PayoutHistoryRow(id=p.id, created_at=p.created_at,
                             amount=minor_to_display(p.amount_minor, p.currency),
                             currency=p.currency.upper(), amount_minor=p.amount_minor,
                             status=p.status, stripe_transfer_id=p.stripe_transfer_id,
                             description=p.description, requested_by=p.requested_by)
            for p in payouts
        ],
        payouts_total=int(payouts_total),
    )
