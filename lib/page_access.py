"""Revoking a freelancer's payment-settings links and sessions.

``python -m server.links`` signs a link that opens the freelancer's payment settings without a
password: whoever holds it is that freelancer until it expires (30 minutes by default, at most
24 hours), and the session it opens lasts 8 hours. A link sent to the wrong address, forwarded,
or kept by a mail scanner must be stoppable before then. Every link and session carries the
freelancer's ``page_access_generation``; :func:`revoke_page_access` raises it, so every link and
session issued before stops working at once (the page checks it on every request).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlencode

from sqlalchemy import update
from sqlalchemy.orm import Session

from lib import audit
from lib.errors import NotFoundError
from lib.models import Freelancer
from lib.roles import Operator, Role
from lib.settings import Settings
from lib.tokens import issue_token

#: Where a payment-settings link lands on the companion (``server/pages.py``).
LOGIN_PATH = "/freelancer/login"


def payment_settings_link(settings: Settings, freelancer_id: int, lifetime: timedelta, *,
                          generation: int = 0, link_id: str | None = None,
                          now: datetime | None = None) -> str:
    """The signed link to ``freelancer_id``'s payment settings on the companion.

    ``generation`` is the freelancer's current page-access generation (an older one is refused:
    revoked); ``link_id`` makes it single use (an outreach email's link, ``lib.outreach``).
    """
    settings.require("JWT_SECRET")
    assert settings.jwt_secret is not None
    token = issue_token(secret=settings.jwt_secret.get_secret_value(),
                        subject=str(freelancer_id), role=Role.FREELANCER, lifetime=lifetime,
                        page_generation=generation, link_id=link_id, now=now)
    return f"{settings.backend_url.rstrip('/')}{LOGIN_PATH}?{urlencode({'token': token})}"


def page_access_generation(session: Session, *, freelancer_id: int) -> int:
    """The generation new links and sessions of this freelancer carry."""
    freelancer = session.get(Freelancer, freelancer_id)
    if freelancer is None:
        raise NotFoundError(f"Freelancer {freelancer_id} does not exist.")
    return int(freelancer.page_access_generation or 0)


def revoke_page_access(session: Session, *, freelancer_id: int, actor: Operator | str) -> int:
    """End every payment-settings link and session of the freelancer; the new generation."""
    page_access_generation(session, freelancer_id=freelancer_id)  # exists, or NotFoundError
    session.execute(
        update(Freelancer).where(Freelancer.id == freelancer_id)
        .values(page_access_generation=Freelancer.page_access_generation + 1)
        .execution_options(synchronize_session=False)
    )
    session.expire_all()
    generation = page_access_generation(session, freelancer_id=freelancer_id)
    audit.record(session, actor=actor, action="freelancer.page_links_revoke", result="revoked",
                 target=f"freelancer:{freelancer_id}", input={"generation": generation})
    return generation
