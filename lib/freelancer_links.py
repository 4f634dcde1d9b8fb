"""A link that signs a freelancer in to their payment settings, issued from the desk.

Finance sends it to a freelancer whose bank payout failed, so they can fix their bank details
(the outreach issue will email it). It is the same link ``python -m server.links`` prints: the
companion's ``/freelancer/login`` with a short-lived freelancer token, traded for a session
cookie at once. Whoever holds it is that freelancer until it expires, so it is issued on
demand (never listed in advance), short-lived, only for the freelancer's own address, and
every issue is audited with who asked for whom.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from lib import audit, page_access
from lib.db import utcnow
from lib.errors import ConfigurationError, ValidationError
from lib.freelancers import get_freelancer
from lib.page_access import LOGIN_PATH as LOGIN_PATH  # the companion's sign-in path
from lib.roles import Action, Operator, authorize
from lib.settings import Settings

#: Where the freelancer lands once signed in (``server.pages.SETTINGS_PATH``).
SETTINGS_PATH = "/freelancer/payment-settings"
DEFAULT_LIFETIME = timedelta(hours=24)
MAX_LIFETIME = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class SettingsLink:
    freelancer_id: int
    email: str
    url: str
    expires_at: datetime


def payment_settings_page(settings: Settings) -> str:
    """The payment-settings page itself (asks the freelancer to sign in with a link)."""
    return f"{settings.backend_url.rstrip('/')}{SETTINGS_PATH}"


def payment_settings_link(
    session: Session, *, operator: Operator, settings: Settings, freelancer_id: int,
    lifetime: timedelta = DEFAULT_LIFETIME, reason: str = "bank payout failed",
) -> SettingsLink:
    """A signed sign-in link to ``freelancer_id``'s payment settings; audited."""
    authorize(operator, Action.SEND_SETTINGS_LINK, session=session,
              target=f"freelancer:{freelancer_id}")
    if not timedelta(minutes=1) <= lifetime <= MAX_LIFETIME:
        raise ValidationError("A payment-settings link lasts between 1 minute and 24 hours.")
    if settings.jwt_secret is None:
        raise ConfigurationError(
            "JWT_SECRET is not set for the dashboard: it signs freelancer links. Set the "
            "companion's JWT_SECRET here too, or run `python -m server.links "
            f"{freelancer_id}` where it is set.")
    freelancer = get_freelancer(session, freelancer_id=freelancer_id)
    # Bound to the freelancer's page-access generation (issue 19): `server.links --revoke`
    # raises it, which ends this link too.
    generation = page_access.page_access_generation(session, freelancer_id=freelancer.id)
    url = page_access.payment_settings_link(settings, freelancer.id, lifetime,
                                            generation=generation)
    expires_at = utcnow() + lifetime
    audit.record(session, actor=operator, action="freelancer.settings_link", result="issued",
                 target=f"freelancer:{freelancer.id}",
                 input={"reason": reason, "minutes": int(lifetime.total_seconds() // 60)})
    return SettingsLink(freelancer.id, freelancer.email, url, expires_at)
