"""The requirement index: ``requirement_codes`` rows derived from the accounts' requirement lists.

Why a derived table
    The Requirements page counts, per requirement, the accounts Stripe asks for it. Read from
    ``connected_accounts.requirements`` that means expanding every account's JSON lists on every
    load (about 1.9 s at 100,000 accounts on SQLite); this table holds one row per (account,
    bucket, code) with the account's deadline, so the counts are a GROUP BY over a covering index.

What the table says
    An account has rows exactly when it is some freelancer's current account (the page lists no
    other) and has something due: one per code in each of its lists :data:`BUCKETS`
    (:func:`codes_of`), each carrying the account's ``current_deadline``.

History
    Every refresh that rewrites an attached account's rows also writes one
    ``requirement_changes`` row: the codes added and removed per list and the deadline before
    and after, stamped with the account's fetch time. That is how a freelancer's timeline (and
    the requirement ageing report) sees requirements over time, not only today's. Detaching
    writes none (the disconnection is its own event); attaching writes what Stripe asked for
    at connection. :func:`rebuild` writes none: it restates the present, nothing changed.

What keeps it true, in the transaction that changes the answer
    - ``lib.accounts.upsert_account`` writes through Core (no ORM events), so it calls
      :func:`refresh_accounts` itself after a write its ``synced_at`` guard let through.
    - Every ORM flush that adds or deletes an account, changes its requirements or deadline, or
      attaches, detaches or deletes a freelancer is followed by the same refresh (the flush hooks
      below), so ``lib.connect_flow.detach``, the test factories, the demo seed and any later ORM
      path stay in step without having to remember it.
    - A refresh compares the stored rows with the wanted ones and writes nothing when they agree.
    - Bulk loads that bypass both (Core inserts of synthetic data) call :func:`rebuild` once.

Concurrency
    On PostgreSQL a refresh reads the account row ``FOR UPDATE`` — the lock the upsert's
    ``ON CONFLICT DO UPDATE`` holds — so a refresh never decides from a mirror another transaction
    is rewriting. The flush hook takes that lock *before* the flush writes the freelancer row,
    keeping the account-then-freelancer lock order of the upsert paths (no deadlock between a
    callback and a deauthorization). SQLite has a single writer.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Result, delete, event, insert, inspect, select, text
from sqlalchemy import Row as SQLRow
from sqlalchemy.orm import Session, UOWTransaction

from lib.db import utcnow
from lib.models import (
    ConnectedAccount,
    Freelancer,
    RequirementChange,
    RequirementCode,
    SummaryCount,
    SummaryDelta,
)
from lib.summaries import requirements as summary_requirements
from lib.summaries import store as summary_store
from lib.summaries.keys import Key

logger = logging.getLogger(__name__)

#: The requirement lists the Requirements page shows (``requirements[bucket]``).
BUCKETS: tuple[str, ...] = ("past_due", "currently_due", "eventually_due",
                            "pending_verification")
#: Accounts per statement (keeps IN lists and inserts small on both databases).
CHUNK = 500
#: Accounts read per round trip by :func:`rebuild`.
REBUILD_BATCH = 2_000

_ACCOUNTS = ConnectedAccount.__table__
_FREELANCERS = Freelancer.__table__
_CODES = RequirementCode.__table__
_CHANGES = RequirementChange.__table__
_PENDING = "requirement_index_pending"


def codes_of(requirements: Mapping[str, Any] | None) -> set[tuple[str, str]]:
    """(bucket, code) for every code in the account's four lists.

    Every non-null element counts, as text (as the page shows it), so an account has rows
    exactly when one of its promoted ``*_count`` columns (the lists' lengths) is positive
    (Stripe's lists hold codes, never nulls).
    """
    found: set[tuple[str, str]] = set()
    for bucket in BUCKETS:
        value = (requirements or {}).get(bucket)
        if isinstance(value, list):
            found.update((bucket, str(code)) for code in value if code is not None)
    return found


Row = tuple[str, str, datetime | None]


def _wanted(requirements: Mapping[str, Any] | None, deadline: datetime | None) -> set[Row]:
    return {(bucket, code, deadline) for bucket, code in codes_of(requirements)}


def _insert_rows(account_id: int, rows: Iterable[Row]) -> list[dict[str, Any]]:
    return [{"account_id": account_id, "bucket": bucket, "code": code, "deadline": deadline}
            for bucket, code, deadline in sorted(rows, key=lambda r: (r[0], r[1]))]


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start:start + CHUNK]


_DELETE_AND_COUNT = text(
    f"WITH counted AS ({summary_store.POSTGRES_ADD}) "
    "DELETE FROM requirement_codes WHERE account_id = ANY(CAST(:stale AS bigint[]))")


def _refresh(connection: Connection, stripe_ids: Iterable[str]) -> int:
    """Make the rows of ``stripe_ids`` what their mirrors say; the number of accounts rewritten.

    Each attached account whose codes or deadline changed also gets a ``requirement_changes``
    row (what was added and removed): the history a freelancer's timeline shows.
    """
    changed = 0
    for chunk in _chunks(sorted(set(stripe_ids))):
        wanted: dict[int, set[Row]] = {}
        owners: dict[int, tuple[int, str | None, datetime | None]] = {}
        statement = (
            select(_ACCOUNTS.c.id, _ACCOUNTS.c.requirements, _ACCOUNTS.c.current_deadline,
                   _FREELANCERS.c.id, _ACCOUNTS.c.status, _ACCOUNTS.c.synced_at)
            .select_from(_ACCOUNTS)
            .outerjoin(_FREELANCERS, _FREELANCERS.c.stripe_account_id == _ACCOUNTS.c.stripe_id)
            .where(_ACCOUNTS.c.stripe_id.in_(chunk))
            .with_for_update(of=_ACCOUNTS)
        )
        # Core columns carry no Python types; the row's are the models' (owner: outer join).
        accounts: Result[int, dict[str, Any], datetime | None, int | None, str, datetime] = (
            connection.execute(statement))
        for account_id, requirements, deadline, owner, status, synced_at in accounts:
            wanted[account_id] = _wanted(requirements, deadline) if owner is not None else set()
            if owner is not None:
                owners[account_id] = (owner, status, synced_at)
        if not wanted:
            continue
        stored: dict[int, set[Row]] = {account_id: set() for account_id in wanted}
        codes: Result[int, str, str, datetime | None] = connection.execute(
            select(_CODES.c.account_id, _CODES.c.bucket, _CODES.c.code, _CODES.c.deadline)
            .where(_CODES.c.account_id.in_(list(wanted))))
        for account_id, bucket, code, deadline in codes:
            stored[account_id].add((bucket, code, deadline))
        stale = [account_id for account_id, rows in wanted.items() if rows != stored[account_id]]
        if not stale:
            continue
        summary_changes: Counter[Key] = Counter()
        for account_id in stale:
            summary_changes.update(summary_store.changes_between(
                summary_requirements.keys_of(stored[account_id]),
                summary_requirements.keys_of(wanted[account_id])))
        changes = {k: (n, 0) for k, n in summary_changes.items()}
        if connection.dialect.name == "postgresql":
            # The label counts' deltas ride on the DELETE's round trip (one of an account
            # upsert's few: issue 22's cost per write).
            connection.execute(_DELETE_AND_COUNT,
                               {"stale": stale, **summary_store.delta_arrays(changes)})
        else:
            connection.execute(delete(_CODES).where(_CODES.c.account_id.in_(stale)))
            summary_store.add(connection, changes)
        fresh = [row for account_id in stale for row in _insert_rows(account_id, wanted[account_id])]
        if fresh:
            connection.execute(insert(_CODES), fresh)
        history = [change for account_id in stale if account_id in owners
                   for change in _change(account_id, owners[account_id], stored[account_id],
                                         wanted[account_id])]
        if history:
            connection.execute(insert(_CHANGES), history)
        changed += len(stale)
    return changed


def _by_bucket(rows: Iterable[Row]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for bucket, code, _ in rows:
        found.setdefault(bucket, []).append(code)
    return {bucket: sorted(codes) for bucket, codes in sorted(found.items())}


def _change(account_id: int, owner: tuple[int, str | None, datetime | None], before: set[Row],
            after: set[Row]) -> list[dict[str, Any]]:
    """The history row for one account whose rows go from ``before`` to ``after`` (or none).

    Detaching (``after`` empty because no freelancer holds the account) never gets here: only
    attached accounts are passed. Attaching is a change from nothing: what Stripe asked for when
    the freelancer connected.
    """
    freelancer_id, status, observed_at = owner
    old_codes = {(bucket, code) for bucket, code, _ in before}
    new_codes = {(bucket, code) for bucket, code, _ in after}
    old_deadline = next(iter(before))[2] if before else None
    new_deadline = next(iter(after))[2] if after else None
    added = [row for row in after if (row[0], row[1]) not in old_codes]
    removed = [row for row in before if (row[0], row[1]) not in new_codes]
    if not added and not removed and old_deadline == new_deadline:
        return []
    return [{"account_id": account_id, "freelancer_id": freelancer_id,
             "observed_at": observed_at or utcnow(), "status": status,
             "deadline": new_deadline, "previous_deadline": old_deadline,
             "added": _by_bucket(added), "removed": _by_bucket(removed)}]


def refresh_accounts(*, session: Session, stripe_ids: Iterable[str]) -> int:
    """Bring these accounts' rows in line with their mirrors (no write when they already are).

    Returns how many accounts' rows were rewritten.
    """
    return _refresh(session.connection(), stripe_ids)


def rebuild(*, session: Session, summaries: bool = True) -> int:
    """Rebuild the whole table from the stored accounts, in batches; the number of rows written.

    The per-label counts are recounted too, unless ``summaries`` is False (migration 0004 runs
    before the summary tables exist; 0013 creates and fills them).
    """
    connection = session.connection()
    connection.execute(delete(_CODES))
    written = 0
    last_id = 0
    while True:
        batch: Sequence[SQLRow[int, dict[str, Any], datetime | None]] = connection.execute(
            select(_ACCOUNTS.c.id, _ACCOUNTS.c.requirements, _ACCOUNTS.c.current_deadline)
            .select_from(_ACCOUNTS)
            .join(_FREELANCERS, _FREELANCERS.c.stripe_account_id == _ACCOUNTS.c.stripe_id)
            .where(_ACCOUNTS.c.id > last_id)
            .order_by(_ACCOUNTS.c.id)
            .limit(REBUILD_BATCH)
        ).all()
        if not batch:
            break
        last_id = batch[-1][0]
        rows = [row for account_id, requirements, deadline in batch
                for row in _insert_rows(account_id, _wanted(requirements, deadline))]
        if rows:
            connection.execute(insert(_CODES), rows)
            written += len(rows)
    logger.info("requirement index rebuilt: %d rows", written)
    if summaries:
        rebuild_summary(connection)
    return written


def rebuild_summary(connection: Connection) -> None:
    """The per-label counts (issue 22) recounted from the index just rebuilt."""
    for table in (SummaryCount.__table__, SummaryDelta.__table__):
        connection.execute(delete(table).where(table.c.kind == summary_requirements.KIND))
    summary_store.add(connection, {k: (n, 0) for k, n in
                                   summary_requirements.recount(connection).items()})


def _summary_part(connection: Connection, account_ids: Sequence[int]) -> Counter[Key]:
    """What these accounts' rows add to the per-label counts (read before they are deleted:
    a foreign key's cascade may delete them during the flush)."""
    rows: dict[int, list[Row]] = {}
    for chunk in _chunks(sorted(account_ids)):
        codes: Result[int, str, str, datetime | None] = connection.execute(
            select(_CODES.c.account_id, _CODES.c.bucket, _CODES.c.code, _CODES.c.deadline)
            .where(_CODES.c.account_id.in_(chunk)))
        for account_id, bucket, code, deadline in codes:
            rows.setdefault(account_id, []).append((bucket, code, deadline))
    part: Counter[Key] = Counter()
    for found in rows.values():
        part.update(summary_requirements.keys_of(found))
    return part


# ---- following ORM writes --------------------------------------------------------------------

_ACCOUNT_FIELDS = ("requirements", "current_deadline", "stripe_id")


def _old_account_id(session: Session, freelancer: Freelancer) -> str | None:
    """The account the database still links ``freelancer`` to (before this flush)."""
    state = inspect(freelancer)
    if state.key is None:
        return None
    return session.connection().execute(
        select(_FREELANCERS.c.stripe_account_id).where(_FREELANCERS.c.id == freelancer.id)
    ).scalar_one_or_none()


def _touched(session: Session) -> tuple[set[str], set[int]]:
    """Accounts whose rows this flush may change: (stripe ids, ids of deleted accounts)."""
    stripe_ids: set[str] = set()
    deleted: set[int] = set()
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, Freelancer):
            if obj in session.new:
                stripe_ids.add(obj.stripe_account_id or "")
            elif obj in session.deleted:
                stripe_ids.add(_old_account_id(session, obj) or "")
            else:
                history = inspect(obj).attrs.stripe_account_id.history
                if history.has_changes():
                    stripe_ids.update(v or "" for v in history.added)
                    # The old value is only in the history if it was loaded before the change.
                    stripe_ids.add(_old_account_id(session, obj) or "")
        elif isinstance(obj, ConnectedAccount):
            if obj in session.deleted:
                deleted.add(obj.id)
            elif obj in session.new:
                stripe_ids.add(obj.stripe_id)
            else:
                attrs = inspect(obj).attrs
                for name in _ACCOUNT_FIELDS:
                    history = getattr(attrs, name).history
                    if history.has_changes():
                        stripe_ids.add(obj.stripe_id)
                        stripe_ids.update(v for v in history.deleted if name == "stripe_id")
    stripe_ids.discard("")
    return stripe_ids, deleted


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _context: UOWTransaction, _instances: object) -> None:
    stripe_ids, deleted = _touched(session)
    if not stripe_ids and not deleted:
        return
    connection = session.connection()
    if stripe_ids and connection.dialect.name == "postgresql":
        # Account row first, then the freelancer row the flush writes: the upsert's lock order.
        for chunk in _chunks(sorted(stripe_ids)):
            connection.execute(select(_ACCOUNTS.c.id).where(_ACCOUNTS.c.stripe_id.in_(chunk))
                               .order_by(_ACCOUNTS.c.id).with_for_update())
    pending_ids, pending_deleted, leaving = session.info.get(_PENDING, (set(), set(), Counter()))
    new_deleted = deleted - pending_deleted
    if new_deleted:
        leaving = leaving + _summary_part(connection, sorted(new_deleted))
    session.info[_PENDING] = (pending_ids | stripe_ids, pending_deleted | deleted, leaving)


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _context: UOWTransaction) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending is None:
        return
    stripe_ids, deleted, leaving = pending
    connection = session.connection()
    summary_store.add(connection, {k: (-n, 0) for k, n in leaving.items()})
    for chunk in _chunks(sorted(deleted)):
        # The foreign key cascades too; this also holds where foreign keys are off.
        connection.execute(delete(_CODES).where(_CODES.c.account_id.in_(chunk)))
    _refresh(connection, stripe_ids)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
