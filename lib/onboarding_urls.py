"""The refresh and return URLs of hosted onboarding links: short-lived, single-purpose, bound.

Stripe sends the freelancer's browser to an Account Link's ``refresh_url`` (the link expired or
was opened twice) and ``return_url`` (they left onboarding) without any login of ours, so whoever
holds such a URL acts as the freelancer. It stays in the browser's history, on a shared machine,
in an email scanner's log. Left unbound it minted onboarding links for ever and, once the
freelancer had disconnected, created and attached a new Express account whose bank details the
holder would enter. Stripe asks platforms to authenticate the user before issuing a new link.

So each URL we hand Stripe carries one signed value (HMAC with ``JWT_SECRET``) naming:

- its **purpose** (refresh or return): one is never accepted as the other;
- the **connection attempt** (the Account Link) it was issued for;
- the freelancer's **connection generation** at that moment (see :func:`connection_generation`):
  a disconnect ends every URL issued before it;
- its **expiry**, :data:`ONBOARDING_URL_LIFETIME` after issue.

And it is **spent once**: :func:`spend` is a conditional UPDATE on the attempt, so a replay (or a
second tab) finds it used. A URL that fails any of this acts on nothing and sends the browser to
sign in to the payment settings, where a new link is issued behind the freelancer's login.
A spend whose Stripe call then fails is released, so a reload after a Stripe outage still works.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from lib import audit
from lib.db import utcnow
from lib.dml import rowcount
from lib.errors import ConnectOpsError
from lib.models import ConnectionAttempt, ConnectionMethod, Freelancer
from lib.settings import Settings
from lib.tokens import sign_value, unsign_value

logger = logging.getLogger(__name__)

#: Long enough for one sitting of Stripe's onboarding (the Account Link itself lives minutes);
#: short enough that a URL found later in a history or a log is dead.
ONBOARDING_URL_LIFETIME = timedelta(hours=1)
#: Longer than any value we sign (three integers and a 32-character signature).
MAX_SIGNED_LENGTH = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class UrlPurpose(enum.StrEnum):
    REFRESH = "refresh"
    RETURN = "return"


class StaleOnboardingUrl(ConnectOpsError):
    """A refresh/return URL that may not act: expired, used, or from before a disconnect."""

    code = "stale_onboarding_url"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SignedAttempt:
    """What a correctly signed refresh/return URL names (not yet checked against the database)."""

    attempt_id: int
    generation: int
    expires_at: datetime
    purpose: UrlPurpose


@dataclass(frozen=True, slots=True)
class SpentUrl:
    """A URL spent for its attempt: who it acts for, and on which account."""

    attempt_id: int
    freelancer_id: int
    account_id: str
    purpose: UrlPurpose
    spent_at: datetime


def connection_generation(freelancer: Freelancer) -> int:
    """Which connection of the freelancer this is: it changes with every disconnect.

    The time of the last disconnect in whole microseconds (0 before any); exact on SQLite and
    PostgreSQL, which both keep microseconds.
    """
    at = freelancer.disconnected_at
    return 0 if at is None else (at - _EPOCH) // timedelta(microseconds=1)


def _secret(settings: Settings) -> str:
    settings.require("JWT_SECRET")
    assert settings.jwt_secret is not None
    return settings.jwt_secret.get_secret_value()


def _signing_purpose(purpose: UrlPurpose) -> str:
    return f"onboarding-{purpose.value}-url"


def sign_attempt(
    settings: Settings, *, attempt_id: int, generation: int, purpose: UrlPurpose,
    now: datetime | None = None,
) -> str:
    """The signed ``attempt`` value of a refresh or return URL."""
    expires = int(((now or utcnow()) + ONBOARDING_URL_LIFETIME).timestamp())
    return sign_value(f"{attempt_id}.{generation}.{expires}", secret=_secret(settings),
                      purpose=_signing_purpose(purpose))


def read_signed_attempt(
    settings: Settings, signed: str | None, *, purpose: UrlPurpose,
) -> SignedAttempt | None:
    """What the value names if we signed it for ``purpose``; None for anything else."""
    if not signed or len(signed) > MAX_SIGNED_LENGTH or settings.jwt_secret is None:
        return None
    value = unsign_value(signed, secret=settings.jwt_secret.get_secret_value(),
                         purpose=_signing_purpose(purpose))
    parts = value.split(".") if value else []
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    attempt_id, generation, expires = (int(p) for p in parts)
    return SignedAttempt(attempt_id=attempt_id, generation=generation, purpose=purpose,
                         expires_at=datetime.fromtimestamp(expires, tz=UTC))


_MESSAGES = {
    "expired": "This onboarding link has expired.",
    "already_used": "This onboarding link was already used.",
    "disconnected": "This onboarding link was issued before the Stripe account was disconnected.",
    "account_changed": "This onboarding link is for an account that is no longer connected.",
    "unknown_attempt": "This onboarding link is unknown.",
}


def _stale_reason(session: Session, url: SignedAttempt, now: datetime
                  ) -> tuple[str | None, ConnectionAttempt | None]:
    attempt = session.get(ConnectionAttempt, url.attempt_id)
    if attempt is None or attempt.method != ConnectionMethod.ACCOUNT_LINK.value:
        return "unknown_attempt", None
    if now >= url.expires_at:
        return "expired", attempt
    freelancer = session.get(Freelancer, attempt.freelancer_id)
    if freelancer is None or connection_generation(freelancer) != url.generation:
        return "disconnected", attempt
    if attempt.stripe_account_id is None or freelancer.stripe_account_id != attempt.stripe_account_id:
        return "account_changed", attempt
    return None, attempt


def _column(purpose: UrlPurpose) -> InstrumentedAttribute[datetime | None]:
    return (ConnectionAttempt.refresh_used_at if purpose is UrlPurpose.REFRESH
            else ConnectionAttempt.return_used_at)


def spend(
    factory: sessionmaker[Session], url: SignedAttempt, *, now: datetime | None = None,
) -> SpentUrl:
    """Spend the URL for its attempt, or raise :class:`StaleOnboardingUrl` (audited).

    Committed on its own before the caller calls Stripe, like an OAuth state: two requests with
    one URL cannot both act.
    """
    moment = now or utcnow()
    with factory.begin() as session:
        reason, attempt = _stale_reason(session, url, moment)
        if reason is None:
            assert attempt is not None
            column = _column(url.purpose)
            spent = session.execute(
                update(ConnectionAttempt)
                .where(ConnectionAttempt.id == attempt.id, column.is_(None))
                .values({column.key: moment})
                .execution_options(synchronize_session=False)
            )
            if not rowcount(spent):
                reason = "already_used"
        target = f"freelancer:{attempt.freelancer_id}" if attempt is not None else None
        if reason is not None:
            # In this same committed transaction: the refusal is what an operator looks for when
            # a freelancer says "the link sent me to sign in".
            audit.record(session, actor=f"onboarding-{url.purpose.value}-url",
                         action=f"connect.onboarding_{url.purpose.value}",
                         result=f"refused:{reason}", target=target,
                         input={"attempt_id": url.attempt_id}, detail=_MESSAGES[reason])
        else:
            assert attempt is not None and attempt.stripe_account_id is not None
            result = SpentUrl(attempt_id=attempt.id, freelancer_id=attempt.freelancer_id,
                              account_id=attempt.stripe_account_id, purpose=url.purpose,
                              spent_at=moment)
    if reason is not None:
        logger.info("onboarding %s URL for attempt %s refused: %s", url.purpose.value,
                    url.attempt_id, reason)
        raise StaleOnboardingUrl(_MESSAGES[reason], reason=reason)
    return result


def release(factory: sessionmaker[Session], spent: SpentUrl) -> None:
    """Give a spent URL back (its Stripe call failed): a reload may try again."""
    column = _column(spent.purpose)
    with factory.begin() as session:
        session.execute(
            update(ConnectionAttempt)
            .where(ConnectionAttempt.id == spent.attempt_id, column == spent.spent_at)
            .values({column.key: None})
            .execution_options(synchronize_session=False)
        )
