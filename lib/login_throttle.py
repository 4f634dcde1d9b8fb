"""Failed-login rate limiting for the dashboard, kept in the audit log so every replica agrees.

Why the audit log and not a counter in memory
    The dashboard may run as several Streamlit replicas behind a load balancer; a counter in one
    process would give an attacker N tries per replica. Every failed login is already an audit
    entry (``auth.login_failed``), so the throttle counts those rows: one source of truth, shared
    by all replicas, and the evidence of an attack is the same row that enforces the limit.

What is counted
    * per username (normalised: trimmed, lower-case): failures in the last ``window`` since that
      user's last successful login, so a user who got in is not locked by their earlier typos;
    * per client (the address Streamlit saw): failures in the last ``window``, whatever the
      username, so one client cannot spray passwords across many usernames. The per-client limit
      is higher, because a proxy can put many honest people behind one address; an unknown
      client (None) is not limited per client.
    Refused attempts while locked are audited as ``auth.login_locked`` and do not extend the lock.

Concurrency: two replicas checking at the same instant can each let one more attempt through
(count, then insert); the limit is off by at most the number of simultaneous attempts, which
does not help a brute force. Functions take the caller's session and never commit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lib import audit
from lib.db import utcnow
from lib.models import AuditLog

LOGIN_OK = "auth.login"
LOGIN_FAILED = "auth.login_failed"
LOGIN_LOCKED = "auth.login_locked"
LOGOUT = "auth.logout"

_MAX_NAME = 200
_MAX_CLIENT = 100


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """How many failures in how long lock a username or a client out."""

    max_failures_per_username: int = 5
    max_failures_per_client: int = 20
    window: timedelta = timedelta(minutes=15)


DEFAULT_POLICY = ThrottlePolicy()


@dataclass(frozen=True, slots=True)
class ThrottleDecision:
    """Whether a login attempt may be checked now; ``retry_after`` when it may not."""

    allowed: bool
    retry_after: timedelta | None = None

    @property
    def message(self) -> str:
        """What the login page says: no counts, no hint whether the username exists."""
        if self.allowed:
            return ""
        minutes = max(1, math.ceil((self.retry_after or timedelta()).total_seconds() / 60))
        return (f"Too many failed sign-in attempts. Try again in {minutes} minute"
                f"{'s' if minutes != 1 else ''}, or ask an admin for help.")


def normalise_username(text: str | None) -> str:
    """The key failures are counted under (``' Admin '`` and ``'admin'`` count together)."""
    return (text or "").strip().lower()[:_MAX_NAME]


def client_target(client: str | None) -> str | None:
    """The audit ``target`` naming a client address, or None when it is unknown."""
    value = (client or "").strip()[:_MAX_CLIENT]
    return f"client:{value}" if value else None


def _last_success(session: Session, username: str) -> datetime | None:
    return session.scalar(
        select(func.max(AuditLog.occurred_at))
        .where(AuditLog.action == LOGIN_OK, AuditLog.actor == username)
    )


def _failures(session: Session, *, since: datetime, actor: str | None = None,
              target: str | None = None) -> tuple[int, datetime | None]:
    statement = select(func.count(), func.min(AuditLog.occurred_at)).where(
        AuditLog.action == LOGIN_FAILED, AuditLog.occurred_at >= since)
    if actor is not None:
        statement = statement.where(AuditLog.actor == actor)
    if target is not None:
        statement = statement.where(AuditLog.target == target)
    count, oldest = session.execute(statement).one()
    return int(count or 0), oldest


def check_login_allowed(
    session: Session, *, username: str, client: str | None,
    policy: ThrottlePolicy = DEFAULT_POLICY, now: datetime | None = None,
) -> ThrottleDecision:
    """May this username, from this client, try a password right now?"""
    moment = now or utcnow()
    cutoff = moment - policy.window
    name = normalise_username(username)
    retry_after: timedelta | None = None

    success = _last_success(session, name)
    since = max(cutoff, success) if success is not None else cutoff
    count, oldest = _failures(session, since=since, actor=name)
    if count >= policy.max_failures_per_username and oldest is not None:
        retry_after = oldest + policy.window - moment

    target = client_target(client)
    if target is not None:
        count, oldest = _failures(session, since=cutoff, target=target)
        if count >= policy.max_failures_per_client and oldest is not None:
            wait = oldest + policy.window - moment
            retry_after = max(retry_after, wait) if retry_after is not None else wait

    if retry_after is None:
        return ThrottleDecision(allowed=True)
    return ThrottleDecision(allowed=False, retry_after=max(retry_after, timedelta(seconds=1)))


def record_login_failed(session: Session, *, username: str, client: str | None) -> None:
    """Audit a wrong username or password (this row is what the throttle counts)."""
    audit.record(session, actor=normalise_username(username) or "(blank)", action=LOGIN_FAILED,
                 result="failed", target=client_target(client),
                 detail="wrong username or password")


def record_login_locked(session: Session, *, username: str, client: str | None,
                        decision: ThrottleDecision) -> None:
    """Audit an attempt refused without checking the password."""
    audit.record(session, actor=normalise_username(username) or "(blank)", action=LOGIN_LOCKED,
                 result="refused:locked", target=client_target(client),
                 input={"retry_after_seconds": int((decision.retry_after or timedelta())
                                                   .total_seconds())})


def record_login_ok(session: Session, *, username: str, role_label: str | None,
                    client: str | None) -> None:
    """Audit a successful login (it also resets the per-username failure count)."""
    audit.record(session, actor=normalise_username(username), action=LOGIN_OK, result="ok",
                 target=client_target(client), input={"roles": role_label or ""})


def record_logout(session: Session, *, username: str, client: str | None) -> None:
    """Audit a logout."""
    audit.record(session, actor=normalise_username(username), action=LOGOUT, result="ok",
                 target=client_target(client))


def last_logout(session: Session, *, username: str) -> datetime | None:
    """When ``username`` last logged out anywhere (None: never).

    A logout ends every session of that user: cookies issued and sessions started before it
    are no longer honoured ("log out everywhere"), whatever a browser kept.
    """
    return session.scalar(
        select(func.max(AuditLog.occurred_at)).where(
            AuditLog.actor == normalise_username(username), AuditLog.action == LOGOUT)
    )
