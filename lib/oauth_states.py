"""OAuth ``state`` tokens: CSRF protection that is also the lock around the code exchange.

Only the SHA-256 of a token is stored. :func:`consume_state` is one conditional UPDATE
(``… WHERE consumed_at IS NULL AND expires_at > now``): on SQLite and PostgreSQL alike exactly
one caller can win it. The callback commits that consumption *before* it exchanges the code,
because Stripe revokes a connection whose code is exchanged twice: a refreshed callback page, a
double hit or two racing requests must find the state already spent.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.orm import Session

from lib.db import utcnow
from lib.dml import rowcount
from lib.models import OAuthState

STATE_LIFETIME = timedelta(hours=1)
#: Spent and expired states are kept this long (a replayed callback still finds them spent),
#: then purged by the worker's ``purge_oauth_states`` job.
PURGE_AFTER = timedelta(days=1)
#: 32 bytes of entropy; URL-safe base64 is 43 characters.
STATE_BYTES = 32
MAX_STATE_LENGTH = 200


def hash_state(token: str) -> str:
    """The stored form of a state token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def issue_state(
    session: Session, *, freelancer_id: int, issued_by: str, attempt_id: int | None,
    now: datetime | None = None,
) -> str:
    """Create a state for ``freelancer_id``; returns the token (never stored in clear)."""
    token = secrets.token_urlsafe(STATE_BYTES)
    issued = now or utcnow()
    session.add(
        OAuthState(
            state_hash=hash_state(token), freelancer_id=freelancer_id, attempt_id=attempt_id,
            issued_by=issued_by, created_at=issued, expires_at=issued + STATE_LIFETIME,
        )
    )
    session.flush()
    return token


@dataclass(frozen=True, slots=True)
class ConsumedState:
    freelancer_id: int
    attempt_id: int | None


def consume_state(session: Session, *, token: str, now: datetime | None = None) -> ConsumedState | None:
    """Spend ``token`` if it is known, unexpired and unused; None otherwise. Race-safe."""
    if not token or len(token) > MAX_STATE_LENGTH:
        return None
    moment = now or utcnow()
    statement = (
        update(OAuthState)
        .where(
            OAuthState.state_hash == hash_state(token),
            OAuthState.consumed_at.is_(None),
            OAuthState.expires_at > moment,
        )
        .values(consumed_at=moment)
        .returning(OAuthState.freelancer_id, OAuthState.attempt_id)
        .execution_options(synchronize_session=False)
    )
    row = session.execute(statement).first()
    return ConsumedState(freelancer_id=row[0], attempt_id=row[1]) if row else None


def purge_states(session: Session, *, now: datetime | None = None,
                 retain: timedelta = PURGE_AFTER) -> int:
    """Delete states spent or expired more than ``retain`` ago; returns how many.

    Neither can ever be consumed again, so deleting them changes no outcome: a callback
    carrying a purged state is refused as unknown, exactly as a spent one is.
    """
    cutoff = (now or utcnow()) - retain
    result = session.execute(
        delete(OAuthState)
        .where(or_(OAuthState.consumed_at < cutoff, OAuthState.expires_at < cutoff))
        .execution_options(synchronize_session=False))
    return int(rowcount(result) or 0)
