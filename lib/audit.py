"""The append-only audit log: who did what, with which input, and what came of it.

``record`` adds an entry to the caller's transaction, so the entry commits or rolls back with
the action it describes. ``record_now`` commits at once in its own transaction: for refusals and
failures whose caller is about to roll back (a refused action must still leave a trace).
On SQLite call it before the caller has flushed any write (one writer at a time).
``record_refusal`` is what ``lib.roles.authorize`` uses for every refused action: its own
transaction too, deferred to the end of the caller's transaction when the caller already holds
SQLite's write lock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from lib.logging_setup import mask_secrets
from lib.models import AuditLog
from lib.roles import Operator

logger = logging.getLogger(__name__)

_MAX_VALUE = 500


def _text(value: str, limit: int) -> str:
    """Masked, truncated, and without NUL (PostgreSQL's text and JSONB cannot hold U+0000: a
    refusal of input that carried one must still be recorded, not fail on it)."""
    return mask_secrets(value).replace("\x00", "\\x00")[:limit]


def _clean(value: Any) -> Any:
    """Keep the input readable and free of secrets (strings are masked and truncated)."""
    if isinstance(value, str):
        return _text(value, _MAX_VALUE)
    if isinstance(value, Mapping):
        return {_text(str(k), 100): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value][:50]
    if value is None or isinstance(value, bool | int):
        return value
    return _text(str(value), _MAX_VALUE)


def _entry(
    *, actor: Operator | str | None, action: str, result: str, target: str | None,
    input: Mapping[str, Any] | None, detail: str | None, idempotency_key: str | None,
    stripe_request_id: str | None,
) -> AuditLog:
    if isinstance(actor, Operator) and actor.username:
        name, role = actor.username, actor.role_label
    else:
        # None (or a nameless operator) is someone not signed in: still an entry, never a crash.
        name, role = actor if isinstance(actor, str) and actor else "anonymous", None
    return AuditLog(
        actor=name[:200], actor_role=role, action=action, target=target, result=result,
        input=_clean(dict(input or {})), detail=_text(detail, 2000) if detail else None,
        idempotency_key=idempotency_key, stripe_request_id=stripe_request_id,
    )


def record(
    session: Session, *, actor: Operator | str | None, action: str, result: str,
    target: str | None = None, input: Mapping[str, Any] | None = None,
    detail: str | None = None, idempotency_key: str | None = None,
    stripe_request_id: str | None = None,
) -> AuditLog:
    """Add an audit entry to the caller's transaction."""
    entry = _entry(actor=actor, action=action, result=result, target=target, input=input,
                   detail=detail, idempotency_key=idempotency_key,
                   stripe_request_id=stripe_request_id)
    session.add(entry)
    return entry


def record_now(factory: sessionmaker[Session], **fields: Any) -> None:
    """Commit an audit entry in its own transaction (survives the caller's rollback)."""
    with factory.begin() as session:
        record(session, **fields)


#: ``result`` of every refusal written by :func:`record_refusal`.
REFUSED = "refused:permission_denied"


def refusal_action(action: str) -> str:
    """The audit ``action`` of a refused role action (``"export"`` -> ``"authorize.export"``)."""
    return f"authorize.{action}"


def _holds_sqlite_write_lock(session: Session) -> bool:
    """True when the caller's session may hold SQLite's write lock.

    ``lib.db`` emits BEGIN itself (IMMEDIATE for ``factory.begin()``, which takes the
    lock at once), so an open transaction on the driver connection may hold the lock: a second
    writer would wait the whole ``busy_timeout`` for a lock released only when the caller ends.
    A deferred transaction that has only read counts too; its entry is merely written later.
    """
    if session.get_bind().dialect.name != "sqlite" or not session.in_transaction():
        return False
    if session.in_nested_transaction():
        return True
    driver = session.connection().connection.driver_connection
    return bool(getattr(driver, "in_transaction", False))


def _write_refusal(target: Session, fields: dict[str, Any]) -> None:
    """Commit the entry on its own; a failure is logged, never raised over the refusal."""
    try:
        # The engine, never the caller's connection: sharing it would share (and be rolled
        # back with) the caller's transaction.
        with Session(bind=target.get_bind().engine) as own, own.begin():
            record(own, **fields)
    except SQLAlchemyError:
        logger.exception("could not audit the refusal of %s to %s", fields["actor"],
                         fields["action"])


def record_refusal(
    session: Session | None, *, actor: Operator | str, action: str,
    detail: str, target: str | None = None, input: Mapping[str, Any] | None = None,
    result: str = REFUSED,
) -> None:
    """Audit a refused action so that the entry survives the caller's rollback.

    With the caller's session (a function holding a factory opens one) it commits at once in
    a second session on the same engine, unless the caller already writes on SQLite: then it
    commits as soon as the caller's transaction ends (commit, rollback or close), when the lock
    is free. ``None`` (no database at hand) only logs.
    """
    fields: dict[str, Any] = {"actor": actor, "action": action, "result": result,
                              "target": target, "input": input, "detail": detail}
    logger.warning("refused: %s", detail)
    if session is None:
        return
    if _holds_sqlite_write_lock(session):
        _write_when_ended(session, fields)
        return
    _write_refusal(session, fields)


def _write_when_ended(session: Session, fields: dict[str, Any]) -> None:
    root = session.get_transaction()
    written = False

    def _after_end(_session: Session, transaction: SessionTransaction) -> None:
        nonlocal written
        # Savepoints end inside the caller's transaction; only the outermost releases the lock.
        if written or transaction is not root:
            return
        written = True
        _write_refusal(session, fields)

    event.listen(session, "after_transaction_end", _after_end)
