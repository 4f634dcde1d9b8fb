"""The local mirror of connected accounts: one upsert that late or duplicate data cannot regress.

Every write carries the time the account was *fetched* from Stripe; a row is only overwritten by
a fetch at least as recent (``synced_at``). The upsert is a single ``INSERT … ON CONFLICT DO
UPDATE … WHERE`` on SQLite and PostgreSQL, so a webhook and a sync racing on one account settle
in the database, not in Python.

The requirement index (``lib.requirement_index``) follows every write in the same transaction;
a write the ``synced_at`` guard refuses touches nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, func, literal_column, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from lib.account_status import deadline_of, derive_status, transfers_capability
from lib.db import utcnow
from lib.models import ConnectedAccount
from lib.requirement_index import refresh_accounts

_PROMOTED_UPDATE = (
    "livemode", "type", "country", "email", "default_currency", "charges_enabled",
    "payouts_enabled", "details_submitted", "transfers_capability", "requirements",
    "future_requirements", "disabled_reason", "current_deadline", "currently_due_count",
    "past_due_count", "eventually_due_count", "pending_verification_count", "status",
    "stripe_created", "raw", "synced_at",
)


def _count(requirements: Mapping[str, Any], key: str) -> int:
    value = requirements.get(key)
    return len(value) if isinstance(value, list) else 0


def account_row_values(account: Mapping[str, Any], *, fetched_at: datetime) -> dict[str, Any]:
    """The mirror's column values for a Stripe account dict."""
    requirements = dict(account.get("requirements") or {})
    future = dict(account.get("future_requirements") or {})
    created = account.get("created")
    return {
        "stripe_id": str(account["id"]),
        "livemode": bool(account.get("livemode")),
        "type": account.get("type"),
        "country": account.get("country"),
        "email": account.get("email"),
        "default_currency": account.get("default_currency"),
        "charges_enabled": bool(account.get("charges_enabled")),
        "payouts_enabled": bool(account.get("payouts_enabled")),
        "details_submitted": bool(account.get("details_submitted")),
        "transfers_capability": transfers_capability(account),
        "requirements": requirements,
        "future_requirements": future,
        "disabled_reason": requirements.get("disabled_reason") or None,
        "current_deadline": deadline_of(account),
        "currently_due_count": _count(requirements, "currently_due"),
        "past_due_count": _count(requirements, "past_due"),
        "eventually_due_count": _count(requirements, "eventually_due"),
        "pending_verification_count": _count(requirements, "pending_verification"),
        "status": derive_status(account).value,
        "stripe_created": datetime.fromtimestamp(int(created), tz=UTC) if created else None,
        "raw": dict(account),
        "synced_at": fetched_at,
    }


#: Every column an upsert writes (``id`` comes from its sequence, ``deauthorized_at`` is kept).
_INSERTED = ("stripe_id", *_PROMOTED_UPDATE)


def _upsert_statement(dialect: str) -> Any:
    """``INSERT … ON CONFLICT (stripe_id) DO UPDATE … WHERE synced_at <= excluded.synced_at``.

    SQLite takes the rows as parameter sets (SQLAlchemy batches them as multi-row ``VALUES``
    from one cached compilation). PostgreSQL takes the page as one JSONB parameter expanded by
    ``jsonb_populate_recordset`` into the table's own row type: psycopg otherwise parses a
    2,200-placeholder statement and adapts every value in Python for each page (130 of the
    ~400 µs per row, bench/sync.py), and the server parses the JSON either way.
    """
    statement = _UPSERTS.get(dialect)
    if statement is None:
        table = ConnectedAccount.__table__
        if dialect == "postgresql":
            page = func.jsonb_populate_recordset(
                literal_column(f"NULL::{table.name}"), bindparam("rows", type_=JSONB)
            ).table_valued(*_INSERTED).alias("page")
            statement = postgresql.insert(table).from_select(
                list(_INSERTED), select(*[page.c[name] for name in _INSERTED]))
        else:
            statement = sqlite.insert(table)
        statement = _UPSERTS[dialect] = statement.on_conflict_do_update(
            index_elements=[table.c.stripe_id],
            set_={name: statement.excluded[name] for name in _PROMOTED_UPDATE},
            where=table.c.synced_at <= statement.excluded.synced_at,
        ).returning(table.c.stripe_id)
    return statement


_UPSERTS: dict[str, Any] = {}


def _as_json(row: dict[str, Any]) -> dict[str, Any]:
    # Aware UTC datetimes as ISO 8601 (with the offset), which timestamptz reads back exactly.
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def upsert_account(
    session: Session, *, account: Mapping[str, Any], fetched_at: datetime | None = None
) -> bool:
    """Insert or refresh the mirror of ``account``; False when a newer fetch is already stored."""
    return upsert_accounts(session, accounts=[account], fetched_at=fetched_at) == 1


def upsert_accounts(
    session: Session, *, accounts: Sequence[Mapping[str, Any]], fetched_at: datetime | None = None
) -> int:
    """``upsert_account`` for a whole page in one statement; how many rows were written.

    Same guard row by row (``synced_at``); the others already had newer data. Building the rows
    into the statement (``.values(rows)``) compiled a new 2,200-parameter statement every page,
    which cost more than the database work (bench/sync.py); see :func:`_upsert_statement`.
    A skipped conflict returns no row (rowcount is unreliable with RETURNING on psycopg).
    """
    at = fetched_at or utcnow()
    # Stripe pages never repeat an id, but one statement must not touch a row twice (PG refuses).
    rows = list({str(a["id"]): account_row_values(a, fetched_at=at) for a in accounts}.values())
    # In id order: two writers upserting overlapping accounts lock the rows in the same order
    # (a page and a concurrent refresh never wait on each other in a cycle).
    rows.sort(key=lambda row: row["stripe_id"])
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    statement = _upsert_statement(dialect)
    if dialect == "postgresql":
        written = list(session.scalars(statement, {"rows": [_as_json(r) for r in rows]}))
    else:
        written = list(session.scalars(statement, rows))
    if written:
        # Core bypasses the ORM's flush hooks: keep the requirement index in this transaction,
        # for the page at once (it writes only for accounts whose codes or deadline changed).
        refresh_accounts(session=session, stripe_ids=written)
    return len(written)


def get_account(session: Session, *, stripe_id: str) -> ConnectedAccount | None:
    """The mirrored account, or None."""
    return session.scalars(
        select(ConnectedAccount).where(ConnectedAccount.stripe_id == stripe_id)
    ).one_or_none()


def mark_deauthorized(session: Session, *, stripe_id: str, at: datetime | None = None) -> None:
    """Record that the platform lost access to ``stripe_id`` (the raw object is kept)."""
    row = get_account(session, stripe_id=stripe_id)
    if row is not None and row.deauthorized_at is None:
        row.deauthorized_at = at or utcnow()
