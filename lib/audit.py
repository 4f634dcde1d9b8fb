"""The append-only audit log: who did what, with which input, and what came of it.

``record`` adds an entry to the caller's transaction, so the entry commits or rolls back with
the action it describes. ``record_now`` commits at once in its own transaction: for refusals and
failures whose caller is about to roll back (a refused action must still leave a trace).
On SQLite call it before the caller has flushed any write (one writer at a time).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from lib.logging_setup import mask_secrets
from lib.models import AuditLog
from lib.roles import Operator

logger = logging.getLogger(__name__)

_MAX_VALUE = 500


def _clean(value: Any) -> Any:
    """Keep the input readable and free of secrets (strings are masked and truncated)."""
    if isinstance(value, str):
        return mask_secrets(value)[:_MAX_VALUE]
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value][:50]
    if value is None or isinstance(value, bool | int):
        return value
    return str(value)[:_MAX_VALUE]


def _entry(
    *, actor: Operator | str, action: str, result: str, target: str | None,
    input: Mapping[str, Any] | None, detail: str | None, idempotency_key: str | None,
    stripe_request_id: str | None,
) -> AuditLog:
    if isinstance(actor, Operator):
        name, role = actor.username, actor.role_label
    else:
        name, role = actor, None
    return AuditLog(
        actor=name[:200], actor_role=role, action=action, target=target, result=result,
        input=_clean(dict(input or {})), detail=mask_secrets(detail)[:2000] if detail else None,
        idempotency_key=idempotency_key, stripe_request_id=stripe_request_id,
    )


def record(
    session: Session, *, actor: Operator | str, action: str, result: str,
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


def record_now(session_factory: sessionmaker[Session], **fields: Any) -> None:
    """Commit an audit entry in its own transaction (survives the caller's rollback)."""
    with session_factory.begin() as session:
        record(session, **fields)
